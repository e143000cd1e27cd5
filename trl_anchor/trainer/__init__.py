"""Trainers, each in its own module next to its config (as in `trl.trainer`)."""

from .reward_config import AnchorGaussianRewardConfig
from .reward_trainer import AnchorGaussianRewardTrainer, DataCollatorForAnchoredPreference

__all__ = ["AnchorGaussianRewardConfig", "AnchorGaussianRewardTrainer", "DataCollatorForAnchoredPreference"]
