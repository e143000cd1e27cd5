"""HelpSteer3 preference (`nvidia/HelpSteer3`, config `preference`, CC-BY-4.0): multi-domain, multilingual,
multi-turn comparisons with up to three individual annotator scores each.

`individual_preference` lists each annotator's `score` (−3 … 3: < 0 response 1 better, > 0 response 2 better, 0 about
the same) and `reasoning`; the soft label is the share of annotators preferring a response, a tie counting ½. The
`context` is already a list of chat messages, so the output is always conversational.
"""

import os

import numpy as np
from datasets import Dataset

from ._common import FilterReport, load_source, pair_columns, require_columns

HELPSTEER3_ID = "nvidia/HelpSteer3"
REQUIRED_COLUMNS = ("context", "response1", "response2", "individual_preference")
VALID_SCORES = range(-3, 4)


def _votes(cells, report: FilterReport):
    votes = np.zeros((len(cells), 3))
    for row, judgements in enumerate(cells):
        for judgement in judgements or []:
            score = judgement.get("score") if isinstance(judgement, dict) else None
            if score is None or score not in VALID_SCORES:
                report.adjust("invalid_judgements_ignored", f"row {row} score={score!r}")
                continue
            votes[row, 0 if score < 0 else 1 if score > 0 else 2] += 1
    return votes[:, 0], votes[:, 1], votes[:, 2]


def _check_context(context, row: int) -> list:
    if (
        not isinstance(context, list)
        or not context
        or not all(isinstance(m, dict) and "role" in m and "content" in m for m in context)
    ):
        raise ValueError(f"Row {row}: HelpSteer3 `context` must be a non-empty list of {{role, content}} messages.")
    return [{"role": m["role"], "content": m["content"]} for m in context]


def load_helpsteer3(
    source: "str | os.PathLike | Dataset" = HELPSTEER3_ID,
    *,
    split: str = "train",
    drop_ties: bool = True,
    domains: tuple[str, ...] | None = None,
    return_report: bool = False,
):
    """HelpSteer3 preference pairs with soft labels from `individual_preference`.

    Args:
        source: `"nvidia/HelpSteer3"` (loaded with config `"preference"`), a local json/jsonl/parquet file of that
            config, or a loaded `Dataset`.
        split: `"train"` or `"validation"`.
        drop_ties: drop (and count) pairs whose soft label is exactly 0.5.
        domains: keep only these `domain` values (e.g. `("general", "stem")`); the others are counted as filtered.
        return_report: also return the `FilterReport`.

    Returns:
        A conversational `Dataset` with `prompt` (the context messages), `chosen`/`rejected` (assistant turns),
        `soft_label`, `num_judgements`, `domain`, `language`.

    Example:

    ```python
    >>> pairs = load_helpsteer3(split="validation", domains=("general",))  # doctest: +SKIP
    ```
    """
    on_hub = isinstance(source, str) and not os.path.exists(source)
    data = load_source(source, split=split, name="preference") if on_hub else load_source(source, split=split)
    require_columns(data, REQUIRED_COLUMNS, "The HelpSteer3 preference config")
    report = FilterReport(f"HelpSteer3 preference ({split})", total=len(data))
    metadata = {name: data[name] for name in ("domain", "language") if name in data.column_names}
    if domains is not None:
        if "domain" not in data.column_names:
            raise ValueError("`domains` needs a `domain` column.")
        outside = np.array([d not in domains for d in data["domain"]], dtype=bool)
        if outside.any():
            report.drop("domain_not_selected", count=int(outside.sum()))
        data = data.select(np.flatnonzero(~outside))
        metadata = {name: data[name] for name in metadata}
    columns = pair_columns(
        [_check_context(c, row) for row, c in enumerate(data["context"])],
        data["response1"],
        data["response2"],
        _votes(data["individual_preference"], report),
        report,
        ids=[f"row {i}" for i in range(len(data))],
        drop_ties=drop_ties,
        conversational=True,
        metadata=metadata,
    )
    dataset = Dataset.from_dict(columns)
    return (dataset, report) if return_report else dataset
