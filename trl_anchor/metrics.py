"""Calibration metrics of pairwise preference probabilities against soft labels (numpy, shared by the trainer's
evaluation loop and `trl_anchor.pipelines.evaluation`)."""

import numpy as np

_EPS = 1e-12


def _as_arrays(probs, labels) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs, dtype=np.float64).reshape(-1)
    labels = np.asarray(labels, dtype=np.float64).reshape(-1)
    if probs.shape != labels.shape:
        raise ValueError(f"Got {probs.size} probabilities for {labels.size} labels.")
    return probs, labels


def brier_score(probs, labels) -> float:
    """Mean squared difference between predicted `P(chosen ≻ rejected)` and the soft label."""
    probs, labels = _as_arrays(probs, labels)
    return float(np.mean((probs - labels) ** 2))


def soft_cross_entropy(probs, labels) -> float:
    """Mean `−p log P − (1 − p) log(1 − P)` (probabilities clipped at 1e-12 only here, for reporting)."""
    probs, labels = _as_arrays(probs, labels)
    probs = np.clip(probs, _EPS, 1 - _EPS)
    return float(np.mean(-(labels * np.log(probs) + (1 - labels) * np.log1p(-probs))))


def calibration_bins(probs, labels, num_bins: int = 10) -> dict[str, np.ndarray]:
    """Equal-width bins of predicted probability: per bin the count, mean prediction and mean soft label."""
    probs, labels = _as_arrays(probs, labels)
    index = np.minimum((probs * num_bins).astype(int), num_bins - 1)
    count = np.bincount(index, minlength=num_bins).astype(np.float64)
    safe = np.maximum(count, 1.0)
    return {
        "edges": np.linspace(0.0, 1.0, num_bins + 1),
        "count": count,
        "mean_prob": np.bincount(index, weights=probs, minlength=num_bins) / safe,
        "mean_label": np.bincount(index, weights=labels, minlength=num_bins) / safe,
    }


def expected_calibration_error(probs, labels, num_bins: int = 10) -> float:
    """ECE: count-weighted mean |mean prediction − mean soft label| over equal-width probability bins."""
    bins = calibration_bins(probs, labels, num_bins)
    weight = bins["count"] / max(bins["count"].sum(), 1.0)
    return float(np.sum(weight * np.abs(bins["mean_prob"] - bins["mean_label"])))


def preference_accuracy(probs, labels) -> float:
    """Share of pairs whose predicted side (`P(chosen ≻ rejected) > ½`) is the majority side of the soft label; a pair
    labelled exactly ½ counts ½. With hard labels (all 1) this is TRL's accuracy, `mean(r_chosen > r_rejected)`.

    The one accuracy of trl-anchor: the trainer's `accuracy`/`eval_accuracy`, `evaluate_reward_model` and model cards.
    """
    probs, labels = _as_arrays(probs, labels)
    hit = np.where(labels == 0.5, 0.5, ((probs > 0.5) == (labels > 0.5)).astype(np.float64))
    return float(np.mean(hit))


def pairwise_metrics(probs, labels, num_bins: int = 10) -> dict[str, float]:
    """Accuracy (`preference_accuracy`: the majority side of the soft label, ties count ½), Brier, soft CE and ECE."""
    probs, labels = _as_arrays(probs, labels)
    return {
        "accuracy": preference_accuracy(probs, labels),
        "brier": brier_score(probs, labels),
        "soft_ce": soft_cross_entropy(probs, labels),
        "ece": expected_calibration_error(probs, labels, num_bins),
    }


def average_ranks(values) -> np.ndarray:
    """Ranks 1..n with ties sharing their average rank (as `scipy.stats.rankdata(method="average")`)."""
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(values.size, dtype=np.float64)
    ranks[order] = np.arange(1, values.size + 1)
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return sums[inverse] / counts[inverse]


def spearman(x, y) -> float:
    """Spearman rank correlation with average ranks for ties; NaN when either input is constant."""
    rx, ry = average_ranks(x), average_ranks(y)
    if rx.size != ry.size:
        raise ValueError(f"Got {rx.size} and {ry.size} values; Spearman needs paired samples.")
    if np.std(rx) == 0 or np.std(ry) == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])
