"""Calibration metrics of pairwise preference probabilities against soft labels, and rank statistics (Spearman,
Kendall τ-b, partial rank correlation, discrimination AUC); numpy, shared by the trainer's evaluation loop,
`trl_anchor.pipelines.evaluation` and the studies."""

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


def vote_spread(counts) -> np.ndarray:
    """Standard deviation of the class index (0..K) under each row's vote distribution: 0 when everyone agrees (the
    spread of 1–3 caption votes is the same number).

    Example:

    ```python
    >>> vote_spread([[4, 0, 0], [2, 0, 2]]).tolist()
    [0.0, 1.0]
    ```
    """
    counts = np.asarray(counts, dtype=np.float64)
    dist = counts / counts.sum(-1, keepdims=True)
    classes = np.arange(counts.shape[-1], dtype=np.float64)
    mean = dist @ classes
    spread = np.sqrt((dist * (classes[None, :] - mean[:, None]) ** 2).sum(-1))
    # Equal spreads from different vote totals ([1, 0, 1] and [3, 0, 3]) must tie exactly for rank correlations.
    return np.round(spread, 12)


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


def kendall_tau_b(x, y, block: int = 512) -> float:
    """Kendall τ-b rank correlation (ties corrected), as `scipy.stats.kendalltau(x, y, variant="b")`.

    Exact, O(n²) over blocks of `block` rows (fine for a few thousand values); NaN when either input is constant.

    Example:

    ```python
    >>> round(kendall_tau_b([1, 2, 3, 4], [1, 3, 2, 4]), 4)
    0.6667
    ```
    """
    x, y = _paired(x, y, "Kendall τ")
    concordance = tied_x = tied_y = 0.0
    for start in range(0, x.size, block):
        rows = slice(start, min(start + block, x.size))
        later = np.arange(x.size)[None, :] > np.arange(rows.start, rows.stop)[:, None]  # each pair once
        sx = np.sign(x[None, :] - x[rows, None]) * later
        sy = np.sign(y[None, :] - y[rows, None]) * later
        concordance += float((sx * sy).sum())
        tied_x += float(np.count_nonzero(sx))  # pairs not tied in x
        tied_y += float(np.count_nonzero(sy))
    if tied_x == 0 or tied_y == 0:
        return float("nan")
    return float(concordance / np.sqrt(tied_x * tied_y))


def rank_residuals(values, control, degree: int = 1) -> np.ndarray:
    """The ranks of `values` minus their least-squares fit (with intercept) on a polynomial of degree `degree` in the
    rank of `control` (several controls: an `(n, k)` array, one polynomial each): what the ranks of `values` say
    beyond the control. `partial_spearman` correlates two of these; their variance share measures how much of
    `values` the control explains.

    Example:

    ```python
    >>> rank_residuals([1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 30.0, 40.0]).round(12).tolist()
    [0.0, 0.0, 0.0, 0.0]
    ```
    """
    values = np.asarray(values, dtype=np.float64).reshape(-1)
    control = np.asarray(control, dtype=np.float64).reshape(values.size, -1)
    if not np.isfinite(control).all():
        raise ValueError("partial Spearman: the control variable has NaN or infinite values.")
    if degree < 1:
        raise ValueError(f"`degree` must be ≥ 1, got {degree}.")
    columns = [np.ones(values.size)]
    for k in range(control.shape[1]):
        rank = average_ranks(control[:, k])
        scaled = (rank - rank.mean()) / max(rank.std(), 1e-12)  # well-conditioned powers
        columns += [scaled**d for d in range(1, degree + 1)]
    design = np.column_stack(columns)
    ranks = average_ranks(values)
    coef, *_ = np.linalg.lstsq(design, ranks, rcond=None)
    return ranks - design @ coef


def partial_spearman(x, y, control, degree: int = 1) -> float:
    """Partial rank correlation of `x` and `y` controlling for `control`: the Pearson correlation of the ranks of `x`
    and `y` after each is regressed (least squares, with intercept) on a polynomial of degree `degree` in the rank of
    `control` (`rank_residuals`; several controls: an `(n, k)` array, one polynomial each).

    `degree=1` is the classic partial Spearman correlation
    `(r_xy − r_xz r_yz) / √((1 − r_xz²)(1 − r_yz²))`; a higher degree also removes a non-monotone dependence on the
    control (e.g. the spread of 1–3 votes, which peaks at a mean of 2). This is the one implementation the evaluation,
    the model cards, the caption benchmark and the caption study use.

    Example:

    ```python
    >>> z = np.arange(10.0)
    >>> round(partial_spearman(z + [0, 1] * 5, z + [1, 0] * 5, z), 3)  # same trend, opposite wiggles
    -0.947
    ```
    """
    x, y = _paired(x, y, "partial Spearman")
    rx, ry = rank_residuals(x, control, degree), rank_residuals(y, control, degree)
    if np.allclose(rx, 0.0) or np.allclose(ry, 0.0):
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def discrimination_auc(higher, lower) -> float:
    """Probability that a score of `higher` exceeds a score of `lower` over all cross pairs (ties count ½): the
    ROC AUC of the scores for telling the two sets apart.

    Example:

    ```python
    >>> discrimination_auc([3.0, 2.0], [1.0, 2.0])
    0.875
    ```
    """
    higher = np.asarray(higher, dtype=np.float64).reshape(-1)
    lower = np.asarray(lower, dtype=np.float64).reshape(-1)
    if higher.size == 0 or lower.size == 0:
        raise ValueError("discrimination_auc needs at least one score in each set.")
    if not (np.isfinite(higher).all() and np.isfinite(lower).all()):
        raise ValueError("discrimination_auc: scores must be finite.")
    diff = higher[:, None] - lower[None, :]
    return float(np.mean((diff > 0) + 0.5 * (diff == 0)))


def _paired(x, y, what: str) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if x.size != y.size:
        raise ValueError(f"{what}: got {x.size} and {y.size} values; it needs paired samples.")
    if x.size < 2:
        raise ValueError(f"{what}: needs at least two paired values, got {x.size}.")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError(f"{what}: inputs must be finite (got NaN or infinite values).")
    return x, y
