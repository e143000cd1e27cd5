"""σ against observed disagreement, for `evaluate_reward_model`: raw and partial rank correlations.

Which measures of disagreement a dataset supports:

- **vote spread** (`chosen_anchor_counts`/`rejected_anchor_counts`): the standard deviation of each response's votes.
  On an ordered 1–3 scale the spread is almost a function of the crowd's mean (few "funny" votes means little spread),
  so the raw Spearman ρ(σ, spread) mostly says whether σ moves with μ. `sigma_partial_vote_spread` is the partial rank
  correlation given the crowd mean (`trl_anchor.metrics.partial_spearman`): does σ track the disagreement that is left
  at a given mean? That is the figure to publish.
- **reference columns** (`disagreement_columns`, e.g. a synthetic set's true σ): raw Spearman, and with
  `disagreement_mean_columns` (e.g. the true μ) the partial correlation given them.
- **soft labels** of pairs judged by several annotators: `1 − |2p − 1|` per pair, correlated with the pair's σ. When
  the soft labels are computed from two independent vote distributions (caption-contest pairs: `p = P(vote_c >
  vote_r) + ½ P(tie)` of the two captions' counts), a label near ½ says that the two means are close, not that people
  disagree about the pair; that measure is then left out, with a note.
"""

import os

import numpy as np

from ..anchors import ANCHOR_FORMS, ANCHOR_WEIGHT, check_counts, check_finite_scores
from ..data.caption_contest_pairs import pairwise_soft_labels
from ..metrics import partial_spearman, spearman, vote_spread

SIGMA_METRICS = (
    "sigma_spearman_soft_label",
    "sigma_spearman_vote_spread",
    "sigma_partial_vote_spread",
)


def soft_label_disagreement(soft_labels) -> np.ndarray:
    """`1 − |2p − 1|`: 1 when people split evenly (p = ½), 0 when they agree (p ∈ {0, 1})."""
    return 1.0 - np.abs(2.0 * np.asarray(soft_labels, dtype=np.float64) - 1.0)


def add_disagreement_metrics(result, dataset, chosen, rejected, disagreement_columns, mean_columns) -> None:
    """Add the σ–disagreement correlations the dataset supports to `result.metrics` (and their data, for the
    scatter plot, to `result.disagreement`); see the module docstring."""
    labels = result.pairs["soft_label"]
    counts = _vote_counts(dataset, result)
    if counts is not None and _labels_from_vote_distributions(labels, counts):
        result.notes.append(
            "Soft labels are computed from the two responses' independent vote distributions: a label near ½ means "
            "close means, not disagreement about the pair, so σ is compared with the vote spread (given the crowd "
            "mean) instead of the soft labels."
        )
    elif np.ptp(soft_label_disagreement(labels)) > 0:
        _add(result, "soft_label", result.pairs["pair_std"], soft_label_disagreement(labels))
    else:
        result.notes.append("Soft labels carry no disagreement (all equal), so σ is not correlated with them.")
    if counts is not None:
        rows, sides, vote_counts = counts
        sigma = np.where(sides == 0, chosen.std[rows], rejected.std[rows])
        crowd_mean = vote_counts @ np.arange(vote_counts.shape[1]) / vote_counts.sum(1)
        _add(result, "vote_spread", sigma, vote_spread(vote_counts), crowd_mean, "the crowd's mean vote")
    if disagreement_columns is not None:
        reference = _columns(dataset, disagreement_columns, "disagreement_columns")
        control = None if mean_columns is None else _columns(dataset, mean_columns, "disagreement_mean_columns")
        name = os.path.commonprefix([c[::-1] for c in disagreement_columns])[::-1].strip("_") or "reference"
        sigma = np.concatenate([chosen.std, rejected.std])
        _add(result, name, sigma, reference, control, None if mean_columns is None else "/".join(mean_columns))


def _add(result, name, sigma, disagreement, control=None, control_name=None) -> None:
    result.disagreement[name] = {"sigma": sigma, "disagreement": disagreement}
    result.metrics[f"sigma_spearman_{name}"] = spearman(sigma, disagreement)
    if control is not None:
        result.disagreement[name]["control"] = control
        result.metrics[f"sigma_partial_{name}"] = partial_spearman(sigma, disagreement, control)
        result.notes.append(f"sigma_partial_{name}: partial Spearman ρ of σ and {name} given {control_name}.")


def _columns(dataset, columns, argument: str) -> np.ndarray:
    missing = [c for c in columns if c not in dataset.column_names]
    if missing:
        raise ValueError(f"`{argument}` {missing} are not in the dataset (columns: {dataset.column_names}).")
    values = np.concatenate([np.asarray(dataset[c], dtype=np.float64) for c in columns])
    check_finite_scores(values, "/".join(columns))
    return values


def _vote_counts(dataset, result):
    """`(row, side, counts)` of every response with vote counts (0 chosen / 1 rejected), or `None` without them."""
    columns = ANCHOR_FORMS["counts"]
    if not all(c in dataset.column_names for c in columns):
        return None
    rows, sides, counts = [], [], []
    for side, column in enumerate(columns):
        values = dataset[column]
        anchored = anchored_rows(values, dataset)
        side_counts = np.asarray([values[i] for i in anchored], dtype=np.float64).reshape(anchored.size, -1)
        check_counts(side_counts, side_counts.shape[1] - 1, column, anchored)
        rows.append(anchored)
        sides.append(np.full(anchored.size, side))
        counts.append(side_counts)
    skipped = 2 * len(dataset) - sum(r.size for r in rows)
    if skipped:
        result.notes.append(f"Vote spread: {skipped} responses without vote counts left out.")
    return np.concatenate(rows), np.concatenate(sides), np.concatenate(counts)


def _labels_from_vote_distributions(labels, counts) -> bool:
    """Whether every soft label is `P(vote_c > vote_r) + ½ P(tie)` of its pair's two vote distributions."""
    rows, sides, vote_counts = counts
    if vote_counts.shape[1] != 3 or rows.size != 2 * len(labels):
        return False
    chosen, rejected = np.empty((len(labels), 3)), np.empty((len(labels), 3))
    chosen[rows[sides == 0]] = vote_counts[sides == 0]
    rejected[rows[sides == 1]] = vote_counts[sides == 1]
    return bool(np.allclose(pairwise_soft_labels(chosen, rejected), labels, rtol=0.0, atol=1e-6))


def anchored_rows(values: list, dataset) -> np.ndarray:
    """Rows whose anchor cell (of the column `values`) is filled and whose `anchor_weight` (if any) is positive."""
    weights = dataset[ANCHOR_WEIGHT] if ANCHOR_WEIGHT in dataset.column_names else [1.0] * len(values)
    return np.asarray(
        [i for i, (v, w) in enumerate(zip(values, weights, strict=True)) if v is not None and w is not None and w > 0],
        dtype=int,
    )
