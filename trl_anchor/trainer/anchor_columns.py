"""The trainer's view of a preference dataset's soft labels and anchors.

`AnchorGaussianRewardTrainer._prepare_dataset` validates the optional columns (`soft_label`, `margin`, anchors in one
of the forms of `trl_anchor.anchors.ANCHOR_FORMS`, `anchor_weight`) and rewrites every anchor form as count vectors
over the K + 1 classes (`chosen_anchor_targets`/`rejected_anchor_targets`), which is what the ordinal likelihood
consumes. Every check names the column and the row it failed on.
"""

import numpy as np
import torch
from accelerate.logging import get_logger
from datasets import Dataset, IterableDataset
from trl.data_utils import get_dataset_column_names

from ..anchors import (
    ANCHOR_FORMS,
    ANCHOR_WEIGHT,
    check_classes,
    check_counts,
    check_finite_scores,
    classes_from_scores,
    thresholds_from_scores,
    validate_thresholds,
)
from ..losses import class_counts

logger = get_logger(__name__)

SOFT_LABEL = "soft_label"
# Anchors of every form are rewritten as count vectors over the K + 1 classes under these internal names, distinct
# from the user-facing `*_anchor_counts`, so preparing an already prepared dataset (e.g. in `evaluate`) recomputes the
# same targets instead of seeing two anchor forms.
CHOSEN_COUNTS, REJECTED_COUNTS = "chosen_anchor_targets", "rejected_anchor_targets"


def check_not_empty(dataset, dataset_name: str) -> None:
    if isinstance(dataset, Dataset) and len(dataset) == 0:
        raise ValueError(f"The {dataset_name} dataset is empty: it has no preference pairs.")


def check_no_missing_text(dataset, dataset_name: str) -> None:
    # TRL would fail deep inside tokenization on a `None` response, without saying which row.
    if not isinstance(dataset, Dataset):
        return
    for column in ("prompt", "chosen", "rejected"):
        if column in dataset.column_names:
            missing = [i for i, value in enumerate(dataset[column]) if value is None]
            if missing:
                raise ValueError(
                    f"Column `{column}` of the {dataset_name} dataset is empty (None) at rows {missing[:10]}"
                    f"{' …' if len(missing) > 10 else ''}; drop or fill those pairs."
                )


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


def resolve_thresholds(train_dataset, form: str | None, args) -> list[float] | None:
    """The anchor thresholds τ of a run: explicit, `"auto"` (percentiles of the anchored train scores), or, when not
    given, K evenly spaced values in [-1, 1] with K declared (`anchor_num_thresholds`) or fixed by count vectors."""
    if form is None:
        return None
    thresholds = args.anchor_thresholds
    if thresholds == "auto" and form != "score":
        raise ValueError(
            "`anchor_thresholds='auto'` needs external scores (`chosen_score`/`rejected_score`); the dataset gives "
            f"anchors as {form}s. Pass explicit thresholds."
        )
    if thresholds is None and form != "score":
        num = _declared_num_thresholds(train_dataset, form, args.anchor_num_thresholds)
        thresholds = np.linspace(-1.0, 1.0, num).tolist() if num > 1 else [0.0]
        logger.info(f"Anchor thresholds default to {thresholds} (they set the unit of μ and σ).")
    if thresholds is None or thresholds == "auto":
        if isinstance(train_dataset, IterableDataset):
            raise ValueError("`anchor_thresholds='auto'` needs a map-style train dataset; pass explicit values.")
        thresholds = thresholds_from_scores(anchored_scores(train_dataset), args.anchor_percentiles)
        logger.info(f"Anchor thresholds at percentiles {args.anchor_percentiles} of train scores: {thresholds}")
    thresholds = validate_thresholds(thresholds)
    if args.anchor_num_thresholds not in (None, len(thresholds)):
        raise ValueError(
            f"`anchor_num_thresholds={args.anchor_num_thresholds}` but there are {len(thresholds)} thresholds "
            f"{thresholds}."
        )
    return thresholds


def _declared_num_thresholds(train_dataset, form: str, declared: int | None) -> int:
    # The number of classes is part of the anchor scale, never a property of which classes a train set happens to
    # contain: count vectors have K + 1 entries; class indices need K to be declared.
    if form == "counts":
        return count_vector_thresholds(train_dataset)
    if declared is None:
        raise ValueError(
            "Class anchors (`chosen_anchor`/`rejected_anchor` in 0..K) need the number of thresholds K: set "
            "`anchor_thresholds` (e.g. [-1.0, 1.0] for classes 0..2) or `anchor_num_thresholds` (K evenly spaced "
            "thresholds in [-1, 1])."
        )
    return declared


def anchor_keep_mask(dataset, args) -> np.ndarray | None:
    """The train pairs that keep their anchors for `anchor_fraction` < 1, drawn with `anchor_seed` (or `seed`)."""
    if args.anchor_fraction >= 1.0:
        return None
    if not isinstance(dataset, Dataset):
        raise ValueError("`anchor_fraction` < 1 needs a map-style train dataset.")
    rng = np.random.default_rng(args.seed if args.anchor_seed is None else args.anchor_seed)
    keep = np.zeros(len(dataset), dtype=bool)
    keep[rng.permutation(len(dataset))[: int(round(args.anchor_fraction * len(dataset)))]] = True
    logger.info(f"anchor_fraction={args.anchor_fraction}: {int(keep.sum())}/{len(dataset)} train pairs keep anchors.")
    return keep


def count_vector_thresholds(dataset) -> int:
    """K of count anchors: their vectors hold K + 1 counts (checked on every row by `check_counts`)."""
    chosen, _ = ANCHOR_FORMS["counts"]
    first = next((row for row in dataset if row[chosen] is not None), None)
    if first is None:
        raise ValueError(
            f"Column `{chosen}` is empty on every row, so the number of anchor classes is unknown; give count vectors "
            "on the anchored rows, or drop the anchor columns to train without anchors."
        )
    return len(first[chosen]) - 1


def anchored_scores(dataset) -> np.ndarray:
    chosen, rejected = ANCHOR_FORMS["score"]
    weights = dataset[ANCHOR_WEIGHT] if ANCHOR_WEIGHT in dataset.column_names else None
    if weights is not None:  # a missing weight is checked (and named) when the columns are standardised
        weights = [0.0 if w is None else w for w in weights]
    scores, rows = [], []
    for col in (chosen, rejected):
        values = dataset[col]
        kept = [i for i, v in enumerate(values) if v is not None and (weights is None or weights[i] > 0)]
        scores += [values[i] for i in kept]
        rows += kept
    array = _numbers(scores, f"{chosen}/{rejected}", np.asarray(rows), "train")
    check_finite_scores(array, f"{chosen}/{rejected}")
    return array


def standardize_batch(batch, indices, form, thresholds, has_weight, dataset_name, keep):
    rows = np.asarray(indices)
    n = len(rows)
    soft = _numbers(batch.get(SOFT_LABEL, [1.0] * n), SOFT_LABEL, rows, dataset_name)
    bad = np.flatnonzero(~((soft >= 0.0) & (soft <= 1.0)))  # also catches NaN
    if bad.size:
        raise ValueError(
            f"Column `{SOFT_LABEL}` of the {dataset_name} dataset must lie in [0, 1]; row {rows[bad[0]]} has "
            f"{soft[bad[0]]}."
        )
    out = {SOFT_LABEL: soft.tolist()}
    if "margin" in batch:
        margin = _numbers(batch["margin"], "margin", rows, dataset_name)
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
            scores = _numbers(values, column, rows_on, dataset_name)
            check_finite_scores(scores, column, rows_on)
            counts[anchored] = np.eye(num + 1)[classes_from_scores(scores, thresholds)]
        elif form == "class":
            classes = _numbers(values, column, rows_on, dataset_name)
            check_classes(classes, num, column, rows_on)
            counts[anchored] = class_counts(torch.as_tensor(classes), num).numpy()
        else:
            array = _count_vectors(values, num, column, rows_on, dataset_name)
            check_counts(array, num, column, rows_on)
            counts[anchored] = array
        out[target] = counts.tolist()
    out[ANCHOR_WEIGHT] = weight.tolist()
    return out


def _numbers(values, column: str, rows: np.ndarray, dataset_name: str) -> np.ndarray:
    """`values` as float64, or an error naming the column and the first row that is not a number."""
    try:
        return np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        pass
    for row, value in zip(rows, values, strict=True):
        try:
            float(value)
        except (TypeError, ValueError):
            raise ValueError(
                f"Column `{column}` of the {dataset_name} dataset must hold numbers; row {row} has {value!r}."
            ) from None
    raise ValueError(f"Column `{column}` of the {dataset_name} dataset must hold numbers.")


def _count_vectors(values, num: int, column: str, rows: np.ndarray, dataset_name: str) -> np.ndarray:
    """Count vectors as a `(n, K + 1)` array; a row of another length (ragged lists) or with non-numbers is named."""
    for row, value in zip(rows, values, strict=True):
        if not isinstance(value, (list, tuple, np.ndarray)) or len(value) != num + 1:
            raise ValueError(
                f"Column `{column}` of the {dataset_name} dataset must hold {num + 1} counts per row ({num} "
                f"thresholds); row {row} has {value!r}."
            )
    return _numbers(values, column, rows, dataset_name).reshape(len(values), num + 1)


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
    weight = _numbers([np.nan if w is None else w for w in batch[ANCHOR_WEIGHT]], ANCHOR_WEIGHT, rows, dataset_name)
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
