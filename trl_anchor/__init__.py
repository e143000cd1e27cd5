"""trl-anchor: anchor-guided variance-aware (Gaussian) reward modeling for Hugging Face TRL.

The public API is importable from here; submodules load on first use (as TRL does), so `import trl_anchor` stays
fast in every process `accelerate launch` starts. The package is laid out by layer:

- `losses`, `anchors`, `metrics`: the pure math every other layer reuses;
- `models`: `GaussianRewardModel` and padding-free packing;
- `trainer`: each trainer with its config;
- `rewards`: reward transforms, batched scoring and the RL reward wrappers (GRPO/RLOO, PPO);
- `pipelines`: anchor labelling, evaluation, best-of-N, model cards;
- `serving`: the HTTP reward-model server (`trl-anchor serve`) and its clients;
- `data`: dataset adapters and the synthetic generator;
- `scripts`: the `trl-anchor` CLI commands;
- `studies`: research studies (simulation, caption study); runnable from the CLI, not part of this namespace.
"""

import importlib
import warnings
from typing import TYPE_CHECKING

from ._deprecated import DEPRECATED_NAMES, install_module_aliases

__version__ = "0.1.0"

_EXPORTS = {
    "AnchorIdentifiabilityWarning": "anchors",
    "thresholds_from_scores": "anchors",
    "CaptionContestData": "data",
    "load_caption_contest": "data",
    "load_helpsteer2": "data",
    "load_helpsteer3": "data",
    "load_multipref": "data",
    "load_personal_llm": "data",
    "split_by_group": "data",
    "SyntheticPreferenceConfig": "data.synthetic",
    "load_vision_prefer": "data.vision_prefer",
    "make_synthetic_preferences": "data.synthetic",
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
    "GaussianRewardModel": "models",
    "GaussianRewardModelOutput": "models",
    "load_reward_model": "models.loading",
    "CLIPImageRewardModel": "models.modeling_image_gaussian",
    "GaussianCLIPImageRewardModel": "models.modeling_image_gaussian",
    "AnchorLabelingResult": "pipelines.anchor_labeling",
    "label_anchors": "pipelines.anchor_labeling",
    "BestOfNPipeline": "pipelines.best_of_n",
    "BestOfNReport": "pipelines.best_of_n",
    "best_of_n_curve": "pipelines.best_of_n",
    "best_of_n_expectation": "pipelines.best_of_n",
    "build_model_card": "pipelines.cards",
    "update_model_card": "pipelines.cards",
    "EvaluationResult": "pipelines.evaluation",
    "evaluate_reward_model": "pipelines.evaluation",
    "RewardBenchResult": "pipelines.rewardbench",
    "evaluate_rewardbench": "pipelines.rewardbench",
    "GaussianRewardFunction": "rewards",
    "PPORewardModel": "rewards",
    "RewardScores": "rewards",
    "RewardTransform": "rewards",
    "record_reward_statistics": "rewards",
    "score_responses": "rewards",
    "score_images": "rewards.image_scoring",
    "RemoteRewardFunction": "serving",
    "RewardClient": "serving",
    "ServeConfig": "serving",
    "AnchorGaussianRewardConfig": "trainer",
    "AnchorGaussianRewardTrainer": "trainer",
    "DataCollatorForAnchoredPreference": "trainer",
    "IRLSFTConfig": "trainer",
    "IRLSFTTrainer": "trainer",
    "MultiAttributeRewardConfig": "trainer.multi_attribute_config",
    "MultiAttributeRewardTrainer": "trainer.multi_attribute_trainer",
    "ImageRewardConfig": "trainer.image_reward_config",
    "ImageRewardTrainer": "trainer.image_reward_trainer",
}
__all__ = sorted(_EXPORTS)

install_module_aliases(__name__)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    elif name in DEPRECATED_NAMES:
        module = DEPRECATED_NAMES[name]
        warnings.warn(
            f"`trl_anchor.{name}` is a research study, no longer exported from `trl_anchor`; import it from "
            f"`trl_anchor.{module}`. The old name will be removed in trl-anchor 0.3.",
            FutureWarning,
            stacklevel=2,
        )
        return getattr(importlib.import_module(f".{module}", __name__), name)
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:
    from .anchors import AnchorIdentifiabilityWarning, thresholds_from_scores
    from .data import (
        CaptionContestData,
        load_caption_contest,
        load_helpsteer2,
        load_helpsteer3,
        load_multipref,
        load_personal_llm,
        split_by_group,
    )
    from .data.synthetic import SyntheticPreferenceConfig, make_synthetic_preferences
    from .data.vision_prefer import load_vision_prefer
    from .losses import (
        gaussian_preference_log_probs,
        ordinal_anchor_nll,
        ordinal_log_probs,
        soft_bt_loss,
        soft_probit_loss,
    )
    from .metrics import brier_score, expected_calibration_error, pairwise_metrics, soft_cross_entropy, spearman
    from .models import GaussianRewardModel, GaussianRewardModelOutput
    from .models.loading import load_reward_model
    from .models.modeling_image_gaussian import CLIPImageRewardModel, GaussianCLIPImageRewardModel
    from .pipelines.anchor_labeling import AnchorLabelingResult, label_anchors
    from .pipelines.best_of_n import BestOfNPipeline, BestOfNReport, best_of_n_curve, best_of_n_expectation
    from .pipelines.cards import build_model_card, update_model_card
    from .pipelines.evaluation import EvaluationResult, evaluate_reward_model
    from .pipelines.rewardbench import RewardBenchResult, evaluate_rewardbench
    from .rewards import (
        GaussianRewardFunction,
        PPORewardModel,
        RewardScores,
        RewardTransform,
        record_reward_statistics,
        score_responses,
    )
    from .rewards.image_scoring import score_images
    from .serving import RemoteRewardFunction, RewardClient, ServeConfig
    from .trainer import (
        AnchorGaussianRewardConfig,
        AnchorGaussianRewardTrainer,
        DataCollatorForAnchoredPreference,
        IRLSFTConfig,
        IRLSFTTrainer,
    )
    from .trainer.image_reward_config import ImageRewardConfig
    from .trainer.image_reward_trainer import ImageRewardTrainer
    from .trainer.multi_attribute_config import MultiAttributeRewardConfig
    from .trainer.multi_attribute_trainer import MultiAttributeRewardTrainer
