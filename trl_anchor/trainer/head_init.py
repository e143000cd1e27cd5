"""Data-driven initialisation of fresh reward heads (`init_heads_from_anchors`).

Before step 0 the trainer sets the heads it created so that every response starts at the normal N(μ₀, σ₀²) whose
anchor class shares equal the train anchors' (`trl_anchor.anchor_marginal`): the mean head's weights at 0 and its
bias at μ₀, the variance head's weights at 0 (as created) and its bias at `softplus⁻¹(σ₀² − floor)`. A mean head
without a bias (GPT-2, Llama, Qwen `score`) cannot hold μ₀: its weights start at 0 (μ = 0) and μ₀ is recorded as
`config.gaussian_reward["anchor_mean_offset"]`, which the anchor likelihood, class probabilities, expected-class
rewards and evaluation add to μ (a constant shift, so preferences, rankings and RL rewards built from μ are
unchanged, and a plain `AutoModelForSequenceClassification` still returns the head's μ). A frozen mean head (PEFT
without it in `modules_to_save`) keeps its random weights, and σ₀ is fitted alone at μ₀ = 0.

Only heads that were initialised rather than loaded are touched (`GaussianRewardModel.fresh_heads`): a trained
Gaussian model keeps its heads, and a plain model passed in keeps its mean head and its fresh variance head (its μ
scale is unknown before a forward pass). The parameters are written through every PEFT copy (`modules_to_save`) and,
under DeepSpeed ZeRO-3, inside `GatheredParameters(..., modifier_rank=0)` so the partitioned values change everywhere.
"""

import contextlib
import math

import numpy as np
import torch
from accelerate.logging import get_logger
from accelerate.utils import is_peft_model
from datasets import Dataset
from transformers.integrations import is_deepspeed_zero3_enabled

from ..anchor_marginal import class_shares, fit_marginal, fit_std_at_mean, marginal_shares
from ..anchors import ANCHOR_WEIGHT
from ..models.modeling_gaussian import GaussianRewardModel, reward_head
from .anchor_columns import CHOSEN_COUNTS, REJECTED_COUNTS

logger = get_logger(__name__)


def initialize_heads_from_data(model, train_dataset, thresholds, args, groups=None) -> None:
    """Record the anchor class shares of a prepared train dataset (its count vectors and weights) in
    `config.gaussian_reward["anchor_class_shares"]` (evaluation's base-rate reference) and, with
    `args.init_heads_from_anchors`, start the fresh heads there (`initialize_heads`), recording μ₀ and σ₀. With
    anchor `groups` (`trl_anchor.trainer.anchor_groups.AnchorGroups`) the heads start at their fitted μ₀ and σ₀,
    around which every train group's offset moves its base rate, and the groups' settings are recorded too."""
    if not isinstance(train_dataset, Dataset):
        if args.init_heads_from_anchors:
            logger.warning("init_heads_from_anchors needs a map-style train dataset to count anchor classes; skipped.")
        return
    counts = np.concatenate([np.asarray(train_dataset[CHOSEN_COUNTS]), np.asarray(train_dataset[REJECTED_COUNTS])])
    weights = np.tile(np.asarray(train_dataset[ANCHOR_WEIGHT], dtype=np.float64), 2)
    if not ((weights > 0) & (counts.sum(-1) > 0)).any():
        # No response carries an anchor (e.g. `anchor_fraction=0`): no base rate; the heads keep μ₀ = 0, σ₀ = 1.
        return
    shares = class_shares(counts, weights, normalize=args.normalize_anchor_counts)
    base = model.get_base_model() if is_peft_model(model) else model
    base.record_training_settings(anchor_class_shares=shares.tolist())
    if groups is not None:
        base.record_training_settings(**groups.settings(args.anchor_group_column))
    start = None if groups is None else (groups.mean, groups.std)
    initial = initialize_heads(model, shares, thresholds, start) if args.init_heads_from_anchors else None
    if initial is not None:
        base.record_training_settings(**initial)


def initialize_heads(model, shares, thresholds, start: tuple[float, float] | None = None) -> dict | None:
    """Start the fresh heads of `model` at the (μ₀, σ₀) matching the anchor class `shares` (or at `start`, fitted by
    the caller); the record of what was set (for `config.gaussian_reward`), or `None` when no head was fresh."""
    base = model.get_base_model() if is_peft_model(model) else model
    fresh = getattr(base, "fresh_heads", set()) if isinstance(base, GaussianRewardModel) else set()
    if "variance" not in fresh or "mean" not in fresh:
        logger.info("init_heads_from_anchors: the model's heads were loaded, not created; they are kept as they are.")
        return None
    # A mean head that will not train (LoRA without it in `modules_to_save`) keeps its random weights: zeroed, μ could
    # never vary, so it keeps μ₀ = 0 and σ₀ is fitted alone.
    trainable = any(p.requires_grad for p in _reward_head(base).parameters())
    mean_heads = _copies(_reward_head(base)) if trainable else []
    variance_heads = _copies(base.variance_head)
    if trainable:
        mean, std = start if start is not None else fit_marginal(shares, thresholds)
    else:
        mean, std = 0.0, fit_std_at_mean(shares, thresholds, 0.0)
    # Without a bias the head cannot hold μ₀; the anchors read μ + μ₀ instead (`anchor_mean_offset`).
    offset = mean if any(head.bias is None for head in mean_heads) else 0.0
    floor = base.variance_head.variance_floor
    variance_bias = _inverse_softplus(max(std * std - floor, floor))
    params = [p for head in mean_heads + variance_heads for p in head.parameters()]
    with _gathered(params), torch.no_grad():
        # Created but since changed (a PEFT adapter loaded onto a fresh base, or set by hand): keep it.
        if not all(_at_creation(head) for head in variance_heads):
            logger.info("init_heads_from_anchors: the variance head is not at its created values; heads are kept.")
            return None
        for head in mean_heads:
            head.weight.zero_()
            if head.bias is not None:
                head.bias.fill_(mean - offset)
        for head in variance_heads:
            head.weight.zero_()
            head.bias.fill_(variance_bias)
    base.fresh_heads = set()  # initialised once: a second trainer on the same instance keeps these values
    predicted = marginal_shares(mean, std, thresholds)
    logger.info(
        f"init_heads_from_anchors: heads start at μ₀ = {mean:.4g}, σ₀ = {std:.4g}; predicted anchor class shares "
        f"{predicted.round(4).tolist()} (train anchors: {[round(float(s), 4) for s in shares]})"
        + ("" if trainable else "; the mean head is frozen, so μ₀ = 0 and σ₀ is fitted alone")
        + (f"; the mean head has no bias, so the anchors read μ + {offset:.4g} (anchor_mean_offset)" if offset else "")
    )
    return {"initial_mean": mean, "initial_std": std, "anchor_mean_offset": offset}


def _reward_head(base):
    # PEFT's `modules_to_save` wraps `score`/`classifier`; the wrapper forwards attribute access to the active copy,
    # so look the head up by name on the unwrapped module tree.
    head = getattr(base, "score", None)
    head = head if head is not None else base.classifier
    return head if hasattr(head, "modules_to_save") else reward_head(base)


def _copies(module) -> list[torch.nn.Module]:
    """A module and, when PEFT wraps it (`modules_to_save`), its original and every adapter's trainable copy."""
    if hasattr(module, "modules_to_save"):
        copies = [module.original_module, *module.modules_to_save.values()]
        return [getattr(copy, "out_proj", copy) for copy in copies]
    return [module]


def _at_creation(head) -> bool:
    created = _inverse_softplus(1.0 - head.variance_floor)  # `VarianceHead.reset_parameters`: σ² = 1, zero weights
    return bool((head.weight == 0).all()) and abs(float(head.bias) - created) < 1e-6


def _gathered(params):
    if not is_deepspeed_zero3_enabled():
        return contextlib.nullcontext()
    import deepspeed

    return deepspeed.zero.GatheredParameters(params, modifier_rank=0)


def _inverse_softplus(y: float) -> float:
    return y + math.log(-math.expm1(-y))
