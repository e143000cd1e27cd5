"""trl-anchor: anchor-guided variance-aware (Gaussian) reward modeling for Hugging Face TRL."""

__version__ = "0.1.0"

from .anchors import AnchorIdentifiabilityWarning, thresholds_from_scores
from .losses import (
    gaussian_preference_log_probs,
    ordinal_anchor_nll,
    ordinal_log_probs,
    soft_bt_loss,
    soft_probit_loss,
)
from .metrics import brier_score, expected_calibration_error, pairwise_metrics, soft_cross_entropy
from .modeling import GaussianRewardModel, GaussianRewardModelOutput
from .reward_config import AnchorGaussianRewardConfig
from .reward_trainer import AnchorGaussianRewardTrainer, DataCollatorForAnchoredPreference
from .scoring import RewardScores, score_responses


__all__ = [
    "AnchorGaussianRewardConfig",
    "AnchorGaussianRewardTrainer",
    "AnchorIdentifiabilityWarning",
    "DataCollatorForAnchoredPreference",
    "GaussianRewardModel",
    "GaussianRewardModelOutput",
    "RewardScores",
    "brier_score",
    "expected_calibration_error",
    "gaussian_preference_log_probs",
    "ordinal_anchor_nll",
    "ordinal_log_probs",
    "pairwise_metrics",
    "score_responses",
    "soft_bt_loss",
    "soft_cross_entropy",
    "soft_probit_loss",
    "thresholds_from_scores",
]
