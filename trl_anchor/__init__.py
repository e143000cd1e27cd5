"""trl-anchor: anchor-guided variance-aware (Gaussian) reward modeling for Hugging Face TRL."""

__version__ = "0.1.0"

from .anchor_labeling import AnchorLabelingResult, label_anchors
from .anchors import AnchorIdentifiabilityWarning, thresholds_from_scores
from .best_of_n import BestOfNPipeline, BestOfNReport, best_of_n_curve, best_of_n_expectation
from .caption_benchmark import run_caption_benchmark
from .cards import build_model_card, update_model_card
from .data import (
    CaptionContestData,
    load_caption_contest,
    load_helpsteer2,
    load_helpsteer3,
    load_multipref,
    load_personal_llm,
    split_by_group,
)
from .evaluation import (
    EvaluationResult,
    RewardBenchResult,
    evaluate_reward_model,
    evaluate_rewardbench,
    load_reward_model,
)
from .losses import (
    gaussian_preference_log_probs,
    ordinal_anchor_nll,
    ordinal_log_probs,
    soft_bt_loss,
    soft_probit_loss,
)
from .metrics import brier_score, expected_calibration_error, pairwise_metrics, soft_cross_entropy, spearman
from .modeling import GaussianRewardModel, GaussianRewardModelOutput
from .ppo import PPORewardModel
from .reward_config import AnchorGaussianRewardConfig
from .reward_functions import GaussianRewardFunction
from .reward_trainer import AnchorGaussianRewardTrainer, DataCollatorForAnchoredPreference
from .rewards import RewardTransform, record_reward_statistics
from .scoring import RewardScores, score_responses
from .simulation import MLPRewardModel, SimulationConfig, SimulationWorld, run_simulation
from .synthetic import SyntheticPreferenceConfig, make_synthetic_preferences


__all__ = [
    "AnchorGaussianRewardConfig",
    "AnchorGaussianRewardTrainer",
    "AnchorIdentifiabilityWarning",
    "AnchorLabelingResult",
    "BestOfNPipeline",
    "BestOfNReport",
    "CaptionContestData",
    "DataCollatorForAnchoredPreference",
    "EvaluationResult",
    "GaussianRewardFunction",
    "GaussianRewardModel",
    "GaussianRewardModelOutput",
    "MLPRewardModel",
    "PPORewardModel",
    "RewardBenchResult",
    "RewardScores",
    "RewardTransform",
    "SimulationConfig",
    "SimulationWorld",
    "SyntheticPreferenceConfig",
    "best_of_n_curve",
    "best_of_n_expectation",
    "brier_score",
    "build_model_card",
    "evaluate_reward_model",
    "evaluate_rewardbench",
    "expected_calibration_error",
    "gaussian_preference_log_probs",
    "label_anchors",
    "load_caption_contest",
    "load_helpsteer2",
    "load_helpsteer3",
    "load_multipref",
    "load_personal_llm",
    "load_reward_model",
    "make_synthetic_preferences",
    "ordinal_anchor_nll",
    "ordinal_log_probs",
    "pairwise_metrics",
    "record_reward_statistics",
    "run_caption_benchmark",
    "run_simulation",
    "score_responses",
    "soft_bt_loss",
    "soft_cross_entropy",
    "soft_probit_loss",
    "spearman",
    "split_by_group",
    "thresholds_from_scores",
    "update_model_card",
]
