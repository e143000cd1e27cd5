"""Anchors relative to a group's base rate (`anchor_group_column`).

Crowds differ: one caption contest's voters find most entries unfunny, another's are lenient; one annotator pool rates
everything higher. A pair's preference compares two responses of one group, so it says nothing about the group's base
rate, but absolute anchors make μ carry it, and on a group the model has never seen μ then carries a guess (from the
prompt) that can cost more likelihood than everything μ learned within groups.

With `anchor_group_column`, every train group gets an offset `δ_g` of its latent rewards, fitted before step 0 from
the group's anchor class shares together with one σ₀ (`trl_anchor.anchor_marginal.fit_grouped_marginal`: group g's
responses look like N(μ₀ + δ_g, σ₀²) to its anchors), and the anchor likelihood of a response of group g is that of
`μ + δ_g`. μ then learns differences within groups around the train-wide base rate μ₀ (at the heads' start, μ ≡ μ₀,
the anchor term is stationary), and σ the spread around a group's own base rate. Groups the model has not been
trained on (eval data, new prompts) have an unknown offset: their anchor class probabilities use `σ² + s²`, with
`s²` the weighted variance of the train offsets (`anchor_group_variance`, recorded in `config.gaussian_reward`),
which is the normal predictive distribution when group offsets are drawn around 0 with that variance. Eval pairs of a
train group keep its offset.
"""

import json
from dataclasses import dataclass, field

import numpy as np
import torch
from accelerate.logging import get_logger
from datasets import Dataset
from trl.data_utils import get_dataset_column_names

from ..anchor_marginal import class_shares, fit_grouped_marginal
from ..anchors import ANCHOR_WEIGHT
from .anchor_columns import CHOSEN_COUNTS, REJECTED_COUNTS

logger = get_logger(__name__)

# Per pair: the offset of its group's latent rewards, and the variance its anchors add for a group not trained on.
ANCHOR_OFFSET, ANCHOR_GROUP_VARIANCE = "anchor_offset", "anchor_group_variance"


@dataclass
class AnchorGroups:
    """The fitted base rates of the train groups: offsets `δ_g` around μ₀, the shared σ₀, and `variance`, the
    offsets' variance `s²` (each group weighted as in the fit, by its anchored responses)."""

    mean: float
    std: float
    offsets: dict[str, float] = field(default_factory=dict)
    variance: float = 0.0

    @classmethod
    def fit(cls, dataset, column: str, thresholds, normalize: bool = True) -> "AnchorGroups":
        """Fit the groups of a prepared train dataset (anchor count vectors and weights in place)."""
        _check_usable(dataset, column, "train")
        keys = [group_key(value) for value in dataset[column]]
        counts = np.concatenate([np.asarray(dataset[CHOSEN_COUNTS]), np.asarray(dataset[REJECTED_COUNTS])])
        weights = np.tile(np.asarray(dataset[ANCHOR_WEIGHT], dtype=np.float64), 2)
        anchored = (weights > 0) & (counts.sum(-1) > 0)
        if not anchored.any():
            raise ValueError("`anchor_group_column` is set but no train response carries an anchor.")
        # One pass over the anchored responses sorted by group (not one scan of the data per group: prompts as
        # groups can number in the tens of thousands).
        group_of, rows = np.unique(np.tile(np.asarray(keys, dtype=object), 2)[anchored], return_inverse=True)
        order = np.argsort(rows, kind="stable")
        bounds = np.flatnonzero(np.diff(rows[order])) + 1
        counts, weights = counts[anchored][order], weights[anchored][order]
        slices = np.split(np.arange(len(order)), bounds)
        shares = np.stack([class_shares(counts[rows_g], weights[rows_g], normalize) for rows_g in slices])
        sizes = np.array([weights[rows_g].sum() for rows_g in slices])
        names = [str(name) for name in group_of]
        mean, std, offsets = fit_grouped_marginal(shares, sizes, thresholds)
        variance = float(np.sum(sizes * offsets**2) / sizes.sum())
        groups = cls(mean, std, dict(zip(names, offsets.tolist(), strict=True)), variance)
        unanchored = len(set(keys) - set(names))
        logger.info(
            f"anchor_group_column={column!r}: {len(names)} train groups, σ₀ = {std:.4g} around their own base rates, "
            f"offsets with std {np.sqrt(groups.variance):.4g} (range {offsets.min():.3g} … {offsets.max():.3g})"
            + (f"; {unanchored} groups without anchors keep offset 0" if unanchored else "")
        )
        return groups

    def add_offsets(self, dataset, column: str, dataset_name: str):
        """`dataset` with `anchor_offset` (a train group's offset, 0 for other groups) and `anchor_group_variance`
        (0 for a train group, `s²` for another; such pairs are counted)."""
        _check_usable(dataset, column, dataset_name)
        keys = [group_key(value) for value in dataset[column]]
        offsets = [self.offsets.get(key, 0.0) for key in keys]
        unseen = {key for key in keys if key not in self.offsets}
        if unseen:
            logger.info(
                f"{len(unseen)} groups of the {dataset_name} dataset ({sum(k in unseen for k in keys)} pairs) are "
                "not train groups: their anchors are scored as a new group's (σ² + s², offset 0)."
            )
        extra = [self.variance if key in unseen else 0.0 for key in keys]
        return dataset.add_column(ANCHOR_OFFSET, offsets).add_column(ANCHOR_GROUP_VARIANCE, extra)

    def settings(self, column: str) -> dict:
        """What `config.gaussian_reward` records: scoring a new group's anchors needs the offsets' variance."""
        return {
            "anchor_group_column": column,
            "anchor_groups": len(self.offsets),
            "anchor_group_variance": self.variance,
        }


def group_key(value) -> str:
    """A group value as a dictionary key: text as it is, anything else (ids, conversations) as JSON."""
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _check_usable(dataset, column: str, dataset_name: str) -> None:
    if not isinstance(dataset, Dataset):
        raise ValueError("`anchor_group_column` needs map-style datasets (the groups are fitted before training).")
    if column not in get_dataset_column_names(dataset):
        raise ValueError(
            f"`anchor_group_column={column!r}` but the {dataset_name} dataset has no column `{column}` (columns: "
            f"{dataset.column_names})."
        )
    missing = [i for i, value in enumerate(dataset[column]) if value is None]
    if missing:
        raise ValueError(
            f"Column `{column}` (`anchor_group_column`) of the {dataset_name} dataset is empty (None) at rows "
            f"{missing[:10]}; every pair needs a group."
        )


def anchor_mean_std(outputs, inputs, mean_offset: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """μ and σ of a batch's responses (chosen rows, then rejected) as their anchors see them: `μ + μ₀ + δ_g`, with
    `mean_offset` μ₀ the start a mean head without a bias could not hold (`anchor_mean_offset`, see
    `trl_anchor.trainer.head_init`) and δ_g the pair's group offset, and `σ² + s²` for a group not trained on. Without
    anchor groups or offset, the model's own."""
    if ANCHOR_OFFSET not in inputs:
        return (outputs.mean + mean_offset if mean_offset else outputs.mean), outputs.std
    offset, extra = inputs[ANCHOR_OFFSET].repeat(2), inputs[ANCHOR_GROUP_VARIANCE].repeat(2)
    mean, variance = outputs.mean.to(offset.dtype), outputs.variance.to(offset.dtype)
    return mean + (offset + mean_offset), torch.sqrt(variance + extra)
