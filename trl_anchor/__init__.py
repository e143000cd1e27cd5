"""trl-anchor: anchor-guided variance-aware (Gaussian) reward modeling for Hugging Face TRL.

The public API is importable from here; submodules load on first use (as TRL does), so `import trl_anchor` stays
fast in every process `accelerate launch` starts.
"""

import importlib
from typing import TYPE_CHECKING


__version__ = "0.1.0"

_EXPORTS = {
    "AnchorLabelingResult": "anchor_labeling",
    "label_anchors": "anchor_labeling",
    "AnchorIdentifiabilityWarning": "anchors",
    "thresholds_from_scores": "anchors",
    "BestOfNPipeline": "best_of_n",
    "BestOfNReport": "best_of_n",
    "best_of_n_curve": "best_of_n",
    "best_of_n_expectation": "best_of_n",
    "run_caption_benchmark": "caption_benchmark",
    "CaptionStudyConfig": "caption_study",
    "run_caption_study": "caption_study",
    "build_model_card": "cards",
    "update_model_card": "cards",
    "CaptionContestData": "data",
    "load_caption_contest": "data",
    "load_helpsteer2": "data",
    "load_helpsteer3": "data",
    "load_multipref": "data",
    "load_personal_llm": "data",
    "split_by_group": "data",
    "EvaluationResult": "evaluation",
    "RewardBenchResult": "evaluation",
    "evaluate_reward_model": "evaluation",
    "evaluate_rewardbench": "evaluation",
    "load_reward_model": "evaluation",
    "gaussian_preference_log_probs": "losses",
    "ordinal_anchor_nll": "losses",
    "ordinal_log_probs": "losses",
    "soft_bt_loss": "losses",
    "soft_probit_loss": "losses",
    "brier_score": "metrics",
    "expected_calibration_error": "metrics",
    "pairwise_metrics": "metrics",
    "soft_cross_entropy": "metrics",
    "spearman": "metrics",
    "GaussianRewardModel": "modeling",
    "GaussianRewardModelOutput": "modeling",
    "PPORewardModel": "ppo",
    "AnchorGaussianRewardConfig": "reward_config",
    "GaussianRewardFunction": "reward_functions",
    "AnchorGaussianRewardTrainer": "reward_trainer",
    "DataCollatorForAnchoredPreference": "reward_trainer",
    "RewardTransform": "rewards",
    "record_reward_statistics": "rewards",
    "RewardScores": "scoring",
    "score_responses": "scoring",
    "MLPRewardModel": "simulation",
    "SimulationConfig": "simulation",
    "SimulationWorld": "simulation",
    "run_simulation": "simulation",
    "SyntheticPreferenceConfig": "synthetic",
    "make_synthetic_preferences": "synthetic",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:
    from .anchor_labeling import AnchorLabelingResult, label_anchors
    from .anchors import AnchorIdentifiabilityWarning, thresholds_from_scores
    from .best_of_n import BestOfNPipeline, BestOfNReport, best_of_n_curve, best_of_n_expectation
    from .caption_benchmark import run_caption_benchmark
    from .caption_study import CaptionStudyConfig, run_caption_study
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
