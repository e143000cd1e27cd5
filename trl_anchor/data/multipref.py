"""MultiPref (`allenai/multipref`, ODC-BY): every comparison was judged by two crowdworkers and two domain experts.

Each annotation's `overall_pref` is one of `A-is-clearly-better`, `A-is-slightly-better`, `Tie`,
`B-is-slightly-better`, `B-is-clearly-better`; the soft label is the share of annotators preferring a response (a tie
counts ½), and the response most annotators prefer becomes `chosen`.
"""

import os
from collections.abc import Sequence

import numpy as np
from datasets import Dataset

from ._common import FilterReport, load_source, pair_columns, require_columns

MULTIPREF_ID = "allenai/multipref"
ANNOTATOR_GROUPS = {"normal": "normal_worker_annotations", "expert": "expert_worker_annotations"}
PREFERENCE_FIELDS = ("overall_pref", "helpful_pref", "truthful_pref", "harmless_pref")
LABELS = {
    "A-is-clearly-better": 0,
    "A-is-slightly-better": 0,
    "B-is-clearly-better": 1,
    "B-is-slightly-better": 1,
    "Tie": 2,
}
REQUIRED_COLUMNS = ("comparison_id", "prompt_id", "text", "completion_a", "completion_b")


def _votes(data: Dataset, groups: Sequence[str], field: str, report: FilterReport):
    """Votes for A / B / tie per comparison; empty labels are counted and skipped, unknown labels raise."""
    votes = np.zeros((len(data), 3))
    for group in groups:
        for row, annotations in enumerate(data[ANNOTATOR_GROUPS[group]]):
            for annotation in annotations or []:
                label = annotation.get(field) if isinstance(annotation, dict) else None
                if label is None or (isinstance(label, str) and not label.strip()):
                    report.adjust("empty_labels_ignored", f"row {row} ({group})")
                    continue
                if label not in LABELS:
                    raise ValueError(
                        f"Row {row} ({data['comparison_id'][row]}): unknown MultiPref `{field}` label {label!r} in "
                        f"`{ANNOTATOR_GROUPS[group]}`; expected one of {sorted(LABELS)}."
                    )
                votes[row, LABELS[label]] += 1
    return votes[:, 0], votes[:, 1], votes[:, 2]


def load_multipref(
    source: "str | os.PathLike | Dataset" = MULTIPREF_ID,
    *,
    split: str = "train",
    annotators: Sequence[str] = ("normal", "expert"),
    preference_field: str = "overall_pref",
    drop_ties: bool = True,
    conversational: bool = True,
    return_report: bool = False,
):
    """MultiPref comparisons in the trainer's column spec, soft labels from the annotators' `overall_pref`.

    Args:
        source: `"allenai/multipref"`, a local json/jsonl/parquet file with its schema, or a loaded `Dataset`.
        split: Hub split (MultiPref ships one, `"train"`; use `split_by_group(ds, "prompt_id")` for held-out prompts).
        annotators: which judges vote: `"normal"` (crowdworkers), `"expert"` (domain experts), or both.
        preference_field: `overall_pref` or one aspect (`helpful_pref`, `truthful_pref`, `harmless_pref`).
        drop_ties: drop (and count) pairs whose soft label is exactly 0.5 (e.g. a 2–2 split).
        conversational: chat messages (`prompt` = the user turn) or plain text.
        return_report: also return the `FilterReport`.

    Returns:
        A `Dataset` with `prompt`, `chosen`, `rejected`, `soft_label`, `chosen_model`, `rejected_model`,
        `num_judgements` and the metadata `comparison_id`, `prompt_id`, `source`, `category`.

    Example:

    ```python
    >>> pairs = load_multipref(annotators=("expert",))  # doctest: +SKIP
    >>> pairs[0]["soft_label"] >= 0.5  # doctest: +SKIP
    True
    ```
    """
    unknown = [g for g in annotators if g not in ANNOTATOR_GROUPS]
    if unknown or not annotators:
        raise ValueError(f"`annotators` must be a non-empty subset of {sorted(ANNOTATOR_GROUPS)}, got {annotators}.")
    if preference_field not in PREFERENCE_FIELDS:
        raise ValueError(f"`preference_field` must be one of {PREFERENCE_FIELDS}, got {preference_field!r}.")
    data = load_source(source, split=split)
    require_columns(data, (*REQUIRED_COLUMNS, *(ANNOTATOR_GROUPS[g] for g in annotators)), "MultiPref")
    report = FilterReport(f"MultiPref ({'+'.join(annotators)}, {preference_field})", total=len(data))
    metadata = {
        name: data[name] for name in ("comparison_id", "prompt_id", "source", "category") if name in data.column_names
    }
    models = ("model_a", "model_b")
    sides = [{"model": data[m]} for m in models] if set(models) <= set(data.column_names) else [None, None]
    columns = pair_columns(
        data["text"],
        data["completion_a"],
        data["completion_b"],
        _votes(data, annotators, preference_field, report),
        report,
        ids=data["comparison_id"],
        drop_ties=drop_ties,
        conversational=conversational,
        first_side=sides[0],
        second_side=sides[1],
        metadata=metadata,
    )
    dataset = Dataset.from_dict(columns)
    return (dataset, report) if return_report else dataset
