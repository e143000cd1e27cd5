"""HelpSteer2's rated responses as multi-attribute training rows for `MultiAttributeRewardTrainer`.

The main subset (`load_dataset("nvidia/HelpSteer2")`, splits `train`/`validation`) rates every response 0–4 on
helpfulness, correctness, coherence, complexity and verbosity (the annotators' rounded mean). The `disagreements`
subset (`data_dir="disagreements"`) lists each annotator's rating instead; a list becomes the rounded mean (half up,
as the main subset) plus `<attribute>_std`, the annotators' population standard deviation, against which a model's
σ_a can be compared. Rows keep a missing rating as None; ratings outside 0–4 raise an error naming row and column.
"""

import math
import os

import numpy as np
from datasets import Dataset, DatasetDict

from ._common import FilterReport, load_source, require_columns
from .helpsteer2 import ATTRIBUTES, HELPSTEER2_ID, SPLIT_NAMES, parse_helpsteer2_prompt

MAX_RATING = 4


def load_helpsteer2_rated(
    source: "str | os.PathLike | Dataset" = HELPSTEER2_ID,
    *,
    split: str | None = None,
    data_dir: str | None = None,
    conversational: bool = True,
    return_report: bool = False,
):
    """HelpSteer2 rated responses: columns `prompt`, `response` and one 0–4 rating (or None) per attribute.

    Args:
        source: `"nvidia/HelpSteer2"`, a local json/jsonl/parquet file of the main or `disagreements` subset, or a
            loaded `Dataset`.
        split: `"train"` or `"validation"` (Hub only; a local file is one split); `None` gives a `DatasetDict` of
            both for the Hub and the file's rows otherwise.
        data_dir: Hub sub-directory, e.g. `"disagreements"` (default: the main subset).
        conversational: prompt as chat messages (multi-turn prompts split at their markers) and response as one
            assistant message, or plain text.
        return_report: also return the `FilterReport` (missing ratings per attribute).

    Example:

    ```python
    >>> rated = load_helpsteer2(subset="rated", split="train")  # doctest: +SKIP
    >>> rated.column_names  # doctest: +SKIP
    ['prompt', 'response', 'helpfulness', 'correctness', 'coherence', 'complexity', 'verbosity']
    ```
    """
    on_hub = isinstance(source, str) and not os.path.exists(source)
    if on_hub and split is None:
        parts = {name: load_helpsteer2_rated(source, split=name, data_dir=data_dir, conversational=conversational,
                                             return_report=True) for name in ("train", "validation")}
        dataset = DatasetDict({name: part[0] for name, part in parts.items()})
        return (dataset, [part[1] for part in parts.values()]) if return_report else dataset
    if on_hub:
        if split not in SPLIT_NAMES:
            raise ValueError(f"`split` must be 'train', 'validation' or None, got {split!r}.")
        data = load_source(source, split=SPLIT_NAMES[split], data_dir=data_dir)
    else:
        data = load_source(source, split=None)
    require_columns(data, ("prompt", "response", *ATTRIBUTES), "The HelpSteer2 rated subset")
    report = FilterReport("HelpSteer2 ratings", total=len(data))
    columns: dict[str, list] = {
        "prompt": [parse_helpsteer2_prompt(p) if conversational else p for p in data["prompt"]],
        "response": [[{"role": "assistant", "content": r}] if conversational else r for r in data["response"]],
    }
    for attribute in ATTRIBUTES:
        cells = data[attribute]
        ratings, spreads = zip(*(_rating(cell, attribute, row) for row, cell in enumerate(cells)), strict=True)
        columns[attribute] = list(ratings)
        if any(isinstance(cell, list) for cell in cells):
            columns[f"{attribute}_std"] = list(spreads)
        missing = sum(r is None for r in ratings)
        if missing:
            report.adjust(f"missing_{attribute}_ratings_kept_as_None", count=missing)
    dataset = Dataset.from_dict(columns)
    report.kept = len(dataset)
    return (dataset, report) if return_report else dataset


def _rating(cell, attribute: str, row: int) -> tuple[int | None, float | None]:
    """(rating, annotator std) of one cell: a rating, None, or a list of annotators' ratings."""
    values = cell if isinstance(cell, list) else [cell]
    values = [v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    for value in values:
        if isinstance(value, bool) or not float(value).is_integer() or not 0 <= value <= MAX_RATING:
            raise ValueError(
                f"Row {row}: HelpSteer2 rating `{attribute}` must be an integer 0..{MAX_RATING}, got {value!r}."
            )
    if not values:
        return None, None
    return int(math.floor(np.mean(values) + 0.5)), float(np.std(values))
