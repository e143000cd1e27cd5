"""Anchor labels: thresholds, classes, counts, and the validation of a dataset's anchor columns.

An anchor says how many of the thresholds `τ_1 < … < τ_K` a response's latent reward exceeds. Datasets give it in one
of three forms per response (see `ANCHOR_FORMS`): a raw external score (thresholded here), a class index `0 … K`, or
counts over the `K + 1` ordered classes (e.g. crowd votes). All forms become count vectors for the loss.

A score is thresholded as in the paper, `A_k = 1{score ≥ τ_k}`: a score equal to a threshold reaches it. With discrete
scores (a 1–10 judge, a percentile that lands on an observed score) this decides the class of many responses.
"""

import math
import warnings
from collections.abc import Sequence

import numpy as np

ANCHOR_FORMS = {
    "score": ("chosen_score", "rejected_score"),
    "class": ("chosen_anchor", "rejected_anchor"),
    "counts": ("chosen_anchor_counts", "rejected_anchor_counts"),
}
ANCHOR_WEIGHT = "anchor_weight"
DEFAULT_PERCENTILES = (25.0, 75.0)


class AnchorIdentifiabilityWarning(UserWarning):
    """All anchor labels fall in one class, so they cannot fix the scale σ."""


def validate_thresholds(thresholds: Sequence[float]) -> list[float]:
    """Finite, strictly increasing thresholds as a list of floats."""
    values = [float(t) for t in thresholds]
    if not values:
        raise ValueError("`anchor_thresholds` is empty: give at least one threshold, or 'auto'.")
    bad = [t for t in values if not math.isfinite(t)]
    if bad:
        raise ValueError(f"`anchor_thresholds` must be finite, got {values}.")
    for k in range(1, len(values)):
        if not values[k] > values[k - 1]:
            raise ValueError(
                f"`anchor_thresholds` must be strictly increasing, got {values} "
                f"(τ_{k + 1} = {values[k]} ≤ τ_{k} = {values[k - 1]})."
            )
    return values


def parse_thresholds(value: "str | Sequence[float | str] | None") -> "list[float] | str | None":
    """`anchor_thresholds` as users write them: `None`, `"auto"`, a list of numbers, or text, as one comma-separated
    string (`"-1,1"`) or the words of a command line (`["-1", "1"]`, `["-1,1"]`); numbers are validated."""
    if value is None or value == "auto":
        return value
    words = [value] if isinstance(value, str) else list(value)
    if words == ["auto"]:
        return "auto"
    what = "`anchor_thresholds` must be 'auto' or numbers (a list, or comma-separated text such as '-1,1')"
    return validate_thresholds(parse_numbers(words, what))


def parse_numbers(words: "Sequence[float | str]", what: str) -> list[float]:
    """Numbers as a command line or a config gives them: numbers, words, or comma-separated words (`["-1,1"]`); a
    `ValueError` starting with `what` names the first part that is not a number."""
    values = []
    for word in words:
        for part in word.split(",") if isinstance(word, str) else [word]:
            try:
                values.append(float(part))
            except (TypeError, ValueError):
                raise ValueError(f"{what}; {part!r} in {list(words)!r} is not a number.") from None
    return values


def thresholds_from_scores(scores: Sequence[float], percentiles: Sequence[float] = DEFAULT_PERCENTILES) -> list[float]:
    """Thresholds at percentiles of external scores (the published recipe: 25th/75th of all train scores)."""
    array = np.asarray(scores, dtype=np.float64)
    check_finite_scores(array, "score")
    if array.size == 0:
        raise ValueError("Cannot resolve `anchor_thresholds='auto'`: there are no external scores.")
    percentiles = [float(p) for p in percentiles]
    if any(not 0 < p < 100 for p in percentiles):
        raise ValueError(f"`anchor_percentiles` must lie strictly between 0 and 100, got {percentiles}.")
    if any(b <= a for a, b in zip(percentiles, percentiles[1:], strict=False)):
        raise ValueError(f"`anchor_percentiles` must be strictly increasing, got {percentiles}.")
    thresholds = np.percentile(array, percentiles).tolist()
    try:
        return validate_thresholds(thresholds)
    except ValueError:
        raise ValueError(
            f"The external scores have percentiles {percentiles} = {thresholds}, which are not strictly increasing "
            "(too many tied scores); pass explicit `anchor_thresholds`."
        ) from None


def check_finite_scores(scores: np.ndarray, column: str, rows: np.ndarray | None = None) -> None:
    bad = np.flatnonzero(~np.isfinite(scores))
    if bad.size:
        where = bad if rows is None else rows[bad]
        raise ValueError(
            f"Column `{column}` has non-finite values (NaN/inf) at rows {where[:10].tolist()}"
            f"{' …' if bad.size > 10 else ''}: e.g. {scores[bad[0]]}."
        )


def classes_from_scores(scores: Sequence[float], thresholds: Sequence[float]) -> np.ndarray:
    """Anchor class = number of thresholds the score reaches, `Σ_k 1{score ≥ τ_k}` (a tie counts as reached).

    Example:

    ```python
    >>> classes_from_scores([2.0, 3.0, 8.0], thresholds=[3.0, 7.0])
    array([0, 1, 2])
    ```
    """
    # side="right" counts the thresholds ≤ score, i.e. those the score reaches.
    thresholds = np.asarray(thresholds, dtype=np.float64)
    return np.searchsorted(thresholds, np.asarray(scores, dtype=np.float64), side="right")


def check_classes(classes: np.ndarray, num_thresholds: int, column: str, rows: np.ndarray) -> None:
    bad = np.flatnonzero((classes < 0) | (classes > num_thresholds) | (classes != np.round(classes)))
    if bad.size:
        raise ValueError(
            f"Column `{column}` must hold integer anchor classes in 0..{num_thresholds} "
            f"({num_thresholds} thresholds); row {rows[bad[0]]} has {classes[bad[0]]}."
        )


def check_counts(counts: np.ndarray, num_thresholds: int, column: str, rows: np.ndarray) -> None:
    if counts.ndim != 2 or counts.shape[1] != num_thresholds + 1:
        raise ValueError(
            f"Column `{column}` must hold {num_thresholds + 1} counts per row ({num_thresholds} thresholds), "
            f"got shape {counts.shape[1:] if counts.ndim == 2 else counts.shape}."
        )
    bad = np.flatnonzero(~np.isfinite(counts).all(1))
    if bad.size:
        raise ValueError(f"Column `{column}` has NaN/inf counts at row {rows[bad[0]]}: {counts[bad[0]].tolist()}.")
    bad = np.flatnonzero((counts < 0).any(1))
    if bad.size:
        raise ValueError(f"Column `{column}` has negative counts at row {rows[bad[0]]}: {counts[bad[0]].tolist()}.")
    bad = np.flatnonzero(counts.sum(1) == 0)
    if bad.size:
        raise ValueError(
            f"Column `{column}` has all-zero counts at rows {rows[bad[:10]].tolist()}: an anchored response needs at "
            f"least one label (set `{ANCHOR_WEIGHT}` to 0 for rows without anchors)."
        )


def warn_if_unidentified(class_totals: np.ndarray) -> None:
    """Warn when every anchor label falls in a single class: then the anchors carry no scale information."""
    occupied = np.flatnonzero(class_totals > 0)
    if occupied.size == 1:
        warnings.warn(
            f"All anchor labels fall in class {int(occupied[0])}; with a single occupied class the anchors cannot "
            "identify σ (only its scale relative to the pairwise data). Check the thresholds or the anchor source.",
            AnchorIdentifiabilityWarning,
            stacklevel=3,
        )
