"""Trainers, each in its own module next to its config (as in `trl.trainer`)."""

from .irl_sft_config import IRLSFTConfig
from .irl_sft_trainer import IRLSFTTrainer
from .reward_config import AnchorGaussianRewardConfig
from .reward_trainer import AnchorGaussianRewardTrainer, DataCollatorForAnchoredPreference

__all__ = [
    "AnchorGaussianRewardConfig",
    "AnchorGaussianRewardTrainer",
    "DataCollatorForAnchoredPreference",
    "IRLSFTConfig",
    "IRLSFTTrainer",
]
