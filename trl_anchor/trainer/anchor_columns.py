"""The trainer's view of a preference dataset's soft labels and anchors.

`AnchorGaussianRewardTrainer._prepare_dataset` validates the optional columns (`soft_label`, `margin`, anchors in one
of the forms of `trl_anchor.anchors.ANCHOR_FORMS`, `anchor_weight`) and rewrites every anchor form as count vectors
over the K + 1 classes (`chosen_anchor_targets`/`rejected_anchor_targets`), which is what the ordinal likelihood
consumes. Every check names the column and the row it failed on.
"""

import numpy as np
import torch
from trl.data_utils import get_dataset_column_names

from ..anchors import (
    ANCHOR_FORMS,
    ANCHOR_WEIGHT,
    check_classes,
    check_counts,
    check_finite_scores,
    classes_from_scores,
)
from ..losses import class_counts

SOFT_LABEL = "soft_label"
# Anchors of every form are rewritten as count vectors over the K + 1 classes under these internal names, distinct
# from the user-facing `*_anchor_counts`, so preparing an already prepared dataset (e.g. in `evaluate`) recomputes the
# same targets instead of seeing two anchor forms.
CHOSEN_COUNTS, REJECTED_COUNTS = "chosen_anchor_targets", "rejected_anchor_targets"


def detect_anchor_form(dataset, dataset_name: str) -> str | None:
    columns = set(get_dataset_column_names(dataset))
    forms = []
    for form, (chosen, rejected) in ANCHOR_FORMS.items():
        present = {chosen, rejected} & columns
        if len(present) == 1:
            raise ValueError(
                f"The {dataset_name} dataset has `{present.pop()}` but not its pair; anchors need both "
                f"`{chosen}` and `{rejected}`."
            )
        if present:
            forms.append(form)
    if len(forms) > 1:
        raise ValueError(f"The {dataset_name} dataset gives anchors in several forms ({forms}); keep exactly one.")
    return forms[0] if forms else None


def count_vector_thresholds(dataset) -> int:
    """K of count anchors: their vectors hold K + 1 counts (checked on every row by `check_counts`)."""
    chosen, _ = ANCHOR_FORMS["counts"]
    first = next(row for row in dataset if row[chosen] is not None)
    return len(first[chosen]) - 1


def anchored_scores(dataset) -> np.ndarray:
    chosen, rejected = ANCHOR_FORMS["score"]
    weights = dataset[ANCHOR_WEIGHT] if ANCHOR_WEIGHT in dataset.column_names else None
    scores = []
    for col in (chosen, rejected):
        values = dataset[col]
        scores += [v for i, v in enumerate(values) if v is not None and (weights is None or weights[i] > 0)]
    array = np.asarray(scores, dtype=np.float64)
    check_finite_scores(array, f"{chosen}/{rejected}")
    return array


def standardize_batch(batch, indices, form, thresholds, has_weight, dataset_name, keep):
    rows = np.asarray(indices)
    n = len(rows)
    soft = np.asarray(batch.get(SOFT_LABEL, [1.0] * n), dtype=np.float64)
    bad = np.flatnonzero(~((soft >= 0.0) & (soft <= 1.0)))  # also catches NaN
    if bad.size:
        raise ValueError(
            f"Column `{SOFT_LABEL}` of the {dataset_name} dataset must lie in [0, 1]; row {rows[bad[0]]} has "
            f"{soft[bad[0]]}."
        )
    out = {SOFT_LABEL: soft.tolist()}
    if "margin" in batch:
        margin = np.asarray(batch["margin"], dtype=np.float64)
        check_finite_scores(margin, "margin", rows)
    if form is None:
        return out
    weight = anchor_weights(batch, rows, has_weight, form, dataset_name)
    if keep is not None:
        weight = weight * keep[rows]
    num = len(thresholds)
    for target, column in zip((CHOSEN_COUNTS, REJECTED_COUNTS), ANCHOR_FORMS[form], strict=True):
        counts = np.zeros((n, num + 1))
        anchored = weight > 0
        rows_on = rows[anchored]
        values = [batch[column][i] for i in np.flatnonzero(anchored)]
        if form == "score":
            scores = np.asarray(values, dtype=np.float64)
            check_finite_scores(scores, column, rows_on)
            counts[anchored] = np.eye(num + 1)[classes_from_scores(scores, thresholds)]
        elif form == "class":
            classes = np.asarray(values, dtype=np.float64)
            check_classes(classes, num, column, rows_on)
            counts[anchored] = class_counts(torch.as_tensor(classes), num).numpy()
        else:
            array = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
            check_counts(array, num, column, rows_on)
            counts[anchored] = array
        out[target] = counts.tolist()
    out[ANCHOR_WEIGHT] = weight.tolist()
    return out


def anchor_weights(batch, rows, has_weight, form, dataset_name) -> np.ndarray:
    columns = ANCHOR_FORMS[form]
    missing = np.array([any(batch[c][i] is None for c in columns) for i in range(len(rows))])
    if not has_weight:
        if missing.any():
            raise ValueError(
                f"Anchor columns {columns} of the {dataset_name} dataset are empty on some rows (first: row "
                f"{rows[np.flatnonzero(missing)[0]]}) and there is no `{ANCHOR_WEIGHT}` column. Add `{ANCHOR_WEIGHT}` "
                "(0 for pairs without anchors) so partially anchored data is explicit."
            )
        return np.ones(len(rows))
    weight = np.asarray([np.nan if w is None else w for w in batch[ANCHOR_WEIGHT]], dtype=np.float64)
    bad = np.flatnonzero(~(weight >= 0) | ~np.isfinite(weight))
    if bad.size:
        raise ValueError(f"Column `{ANCHOR_WEIGHT}` must be finite and ≥ 0; row {rows[bad[0]]} has {weight[bad[0]]}.")
    conflict = np.flatnonzero(missing & (weight > 0))
    if conflict.size:
        raise ValueError(
            f"Row {rows[conflict[0]]} of the {dataset_name} dataset has `{ANCHOR_WEIGHT}` > 0 but empty anchor "
            "columns."
        )
    return weight
