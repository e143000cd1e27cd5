"""Metrics of `AnchorGaussianRewardTrainer`, computed from one row of statistics per pair.

Each step gathers its pair rows with `gather_for_metrics`, which drops the samples accelerate repeats to fill the last
batch. One row per pair keeps every reward of every pair; gathering the concatenated (chosen, rejected) rewards would
cut the last batch to its first `remainder` values and lose its rejected rewards. Training reduces each step's rows
into TRL's `_metrics`; evaluation keeps the rows of the whole loop and computes exact dataset-level metrics at its end.
"""

import numpy as np
import torch

from ..losses import batch_anchor_loss, math_dtype
from ..metrics import pairwise_metrics, preference_accuracy

PAIR_COLUMNS = (
    "chosen_mean",
    "rejected_mean",
    "chosen_variance",
    "rejected_variance",
    "prob",  # P(chosen ≻ rejected) without the training margin
    "soft_label",
    "pair_loss",
    "chosen_anchor_loss",  # w · L_anchor, 0 for responses without anchors
    "rejected_anchor_loss",
    "chosen_anchored",
    "rejected_anchored",
    "chosen_anchor_correct",
    "rejected_anchor_correct",
)
_COLUMN = {name: i for i, name in enumerate(PAIR_COLUMNS)}


def pair_rows(values: dict[str, torch.Tensor]) -> torch.Tensor:
    """Stack per-pair tensors `(B,)` named as in `PAIR_COLUMNS` into rows `(B, C)` in the probability dtype (float64:
    probabilities near 0 or 1 keep their digits); missing columns are NaN."""
    reference = values["soft_label"]
    size, dtype = len(reference), math_dtype(reference.device)
    columns = [
        values[name].detach().reshape(size).to(dtype)
        if name in values
        else torch.full((size,), float("nan"), dtype=dtype, device=reference.device)
        for name in PAIR_COLUMNS
    ]
    return torch.stack(columns, dim=1)


def column(rows: np.ndarray, name: str) -> np.ndarray:
    return rows[:, _COLUMN[name]]


def metrics_from_rows(rows: np.ndarray, anchor_normalization: str | None, calibration: bool) -> dict[str, float]:
    """Metrics of the pairs in `rows`: TRL's reward statistics, the one accuracy (`preference_accuracy`), the pair
    loss, the spread (std across responses) of μ and of σ, the mean σ, the anchor loss and accuracy (when
    `anchor_normalization` is set), and Brier/soft CE/ECE with `calibration`."""
    mean = np.concatenate([column(rows, "chosen_mean"), column(rows, "rejected_mean")])
    probs, labels = column(rows, "prob"), column(rows, "soft_label")
    metrics = {
        "min_reward": float(mean.min()),
        "mean_reward": float(mean.mean()),
        "max_reward": float(mean.max()),
        "accuracy": preference_accuracy(probs, labels),
        "margin": float(np.mean(column(rows, "chosen_mean") - column(rows, "rejected_mean"))),
        "pair_loss": float(np.mean(column(rows, "pair_loss"))),
    }
    metrics["reward_spread"] = float(mean.std())  # std of μ across the responses of the batch (or eval set)
    variance = np.concatenate([column(rows, "chosen_variance"), column(rows, "rejected_variance")])
    if not np.isnan(variance).any():
        metrics["mean_std"] = float(np.sqrt(variance).mean())
        metrics["sigma_spread"] = float(np.sqrt(variance).std())
    if anchor_normalization is not None:
        sides = ("chosen", "rejected")
        weighted = torch.as_tensor(np.stack([column(rows, f"{side}_anchor_loss") for side in sides]))
        anchored = np.stack([column(rows, f"{side}_anchored") for side in sides])
        metrics["anchor_loss"] = batch_anchor_loss(weighted, torch.as_tensor(anchored), anchor_normalization).item()
        correct = sum(column(rows, f"{side}_anchor_correct").sum() for side in sides)
        if anchored.sum() > 0:
            metrics["anchor_accuracy"] = float(correct / anchored.sum())
    if calibration:
        calibrated = pairwise_metrics(probs, labels)
        metrics.update({key: calibrated[key] for key in ("brier", "soft_ce", "ece")})
    return metrics


def rewards_from_rows(rows: np.ndarray) -> dict[str, np.ndarray]:
    """μ and σ² of both responses, `P(chosen ≻ rejected)` (no margin) and the soft label of every pair, in order."""
    names = ("chosen_mean", "rejected_mean", "chosen_variance", "rejected_variance", "prob", "soft_label")
    return {name: column(rows, name).astype(np.float64) for name in names}


# σ counts as flat when its spread across responses stays below this fraction of its mean once this share of the
# training steps is done: the variance head then predicts one σ for every response (e.g. 0.0018 around 1.13 with
# heads at a backbone learning rate), and σ-aware scores rank exactly like μ.
FLAT_SIGMA_FRACTION = 0.01
FLAT_SIGMA_AFTER = 0.25


def flat_sigma_warning(window: dict[str, list[float]], step: int, max_steps: int) -> str | None:
    """The warning to give when the train metrics of a logging `window` show a σ that is not learning, else `None`."""
    if not window.get("sigma_spread") or not window.get("mean_std") or max_steps <= 0:
        return None
    if step < FLAT_SIGMA_AFTER * max_steps:
        return None
    spread, mean = float(np.mean(window["sigma_spread"])), float(np.mean(window["mean_std"]))
    if spread >= FLAT_SIGMA_FRACTION * mean:
        return None
    return (
        f"The variance head is not learning: after {step}/{max_steps} steps σ varies by {spread:.3g} (std across "
        f"responses) around {mean:.3g}, below {FLAT_SIGMA_FRACTION:.0%} of its mean, so every response gets the same "
        "σ. Raise `head_learning_rate` (or `head_learning_rate_multiplier`) or `anchor_lambda`."
    )
