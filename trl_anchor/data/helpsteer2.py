"""HelpSteer2 (`nvidia/HelpSteer2`, CC-BY-4.0): soft preference labels from the individual annotators, plus human
anchors from the per-response attribute ratings.

- The `preference` subset (`data_dir="preference"`) pairs two responses per prompt and keeps every annotator's strength
  in `all_preferences_unprocessed` (−3 … 3: < 0 response 1 better, > 0 response 2 better, 0 about the same). The soft
  label is the share of annotators preferring a response, a tie counting ½; pairs at exactly 0.5 are dropped (counted).
- The main subset rates each response 0–4 on helpfulness, correctness, coherence, complexity and verbosity. With
  `anchor_cutoffs=(2, 3)` a helpfulness rating becomes anchor class 0 (< 2), 1 (2) or 2 (≥ 3); the `disagreements`
  subset, whose cells list every annotator's rating, gives anchor counts instead.
"""

import ast
import json
import os
import re
from collections.abc import Sequence

import numpy as np
from datasets import Dataset, DatasetDict

from ._common import FilterReport, load_source, pair_columns, require_columns

HELPSTEER2_ID = "nvidia/HelpSteer2"
ATTRIBUTES = ("helpfulness", "correctness", "coherence", "complexity", "verbosity")
PREFERENCE_COLUMNS = ("split", "prompt", "response_1", "response_2")
JUDGEMENT_COLUMNS = ("all_preferences_unprocessed", "three_most_similar_preferences")
VALID_STRENGTHS = range(-3, 4)
SPLIT_NAMES = {"train": "train", "val": "validation", "validation": "validation"}
# Multi-turn prompts hold the earlier turns joined by these markers (see the dataset card).
_TURN_MARKER = re.compile(r"\n?<extra_id_1>(User|Assistant)\n")


def parse_helpsteer2_prompt(prompt: str) -> list[dict[str, str]]:
    """Split a HelpSteer2 prompt into chat messages (multi-turn prompts use `<extra_id_1>User` / `Assistant` markers).

    Example:

    ```python
    >>> messages = parse_helpsteer2_prompt("Hi\\n<extra_id_1>Assistant\\nHello!\\n<extra_id_1>User\\nA joke?")
    >>> [(m["role"], m["content"]) for m in messages]
    [('user', 'Hi'), ('assistant', 'Hello!'), ('user', 'A joke?')]
    ```
    """
    parts = _TURN_MARKER.split(prompt)
    messages = [{"role": "user", "content": parts[0]}]
    for role, content in zip(parts[1::2], parts[2::2]):
        messages.append({"role": role.lower(), "content": content})
    return messages


def anchor_class(rating: float, cutoffs: Sequence[float]) -> int:
    """Number of cutoffs the rating reaches: with cutoffs (2, 3), ratings 0–1 → 0, 2 → 1, 3–4 → 2."""
    return int(sum(rating >= c for c in cutoffs))


def _judgements(cell, row: int, column: str) -> list:
    """The list of judgement dicts of one row; some exports store it as a JSON or Python-repr string."""
    if isinstance(cell, str):
        for parse in (json.loads, ast.literal_eval):
            try:
                cell = parse(cell)
                break
            except (ValueError, SyntaxError):
                continue
        else:
            raise ValueError(f"Row {row}: cannot parse `{column}` = {cell[:80]!r} as a list of judgements.")
    if cell is None:
        return []
    if not isinstance(cell, list):
        raise ValueError(f"Row {row}: `{column}` must be a list of judgements, got {type(cell).__name__}.")
    return cell


def _strength_votes(cells, column: str, report: FilterReport) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Votes for response 1 / response 2 / ties from the annotators' strengths; invalid strengths are counted."""
    votes = np.zeros((len(cells), 3))
    for row, cell in enumerate(cells):
        for judgement in _judgements(cell, row, column):
            strength = judgement.get("strength") if isinstance(judgement, dict) else None
            if strength is None or strength not in VALID_STRENGTHS:
                report.adjust("invalid_judgements_ignored", f"row {row} strength={strength!r}")
                continue
            votes[row, 0 if strength < 0 else 1 if strength > 0 else 2] += 1
    return votes[:, 0], votes[:, 1], votes[:, 2]


def load_helpsteer2_ratings(source: "str | os.PathLike | Dataset" = HELPSTEER2_ID, **load_kwargs) -> Dataset:
    """The main subset (train + validation) or any ratings table with `prompt`, `response` and attribute columns."""
    return load_source(source, split=None, **load_kwargs)


def _rating_index(ratings: Dataset, attribute: str, report: FilterReport) -> dict[tuple[str, str], object]:
    require_columns(ratings, ("prompt", "response", attribute), "The HelpSteer2 ratings")
    index: dict[tuple[str, str], object] = {}
    for prompt, response, value in zip(ratings["prompt"], ratings["response"], ratings[attribute]):
        key = (prompt, response)
        if key in index and index[key] != value:
            report.adjust("conflicting_ratings_first_kept", f"rating {value!r} vs {index[key]!r}")
            continue
        index.setdefault(key, value)
    return index


def _anchor(value, cutoffs: Sequence[float], attribute: str):
    """Class for one rating, or class counts for a list of per-annotator ratings (the `disagreements` subset)."""
    if value is None:
        return None
    if isinstance(value, (list, tuple)):
        classes = [anchor_class(v, cutoffs) for v in value if v is not None]
        return np.bincount(classes, minlength=len(cutoffs) + 1).tolist() if classes else None
    if not np.isfinite(value):
        raise ValueError(f"HelpSteer2 rating `{attribute}` must be finite, got {value!r}.")
    return anchor_class(value, cutoffs)


def load_helpsteer2(
    source: "str | os.PathLike | Dataset" = HELPSTEER2_ID,
    *,
    split: str | None = None,
    judgements: str = "all_preferences_unprocessed",
    drop_ties: bool = True,
    ratings: "str | os.PathLike | Dataset | None" = None,
    attribute: str = "helpfulness",
    anchor_cutoffs: Sequence[float] = (2, 3),
    conversational: bool = True,
    return_report: bool = False,
    subset: str = "preference",
):
    """HelpSteer2 preference pairs with soft labels, optionally with human anchors from the attribute ratings; with
    `subset="rated"` the rated responses for multi-attribute training instead
    (`trl_anchor.data.helpsteer2_ratings.load_helpsteer2_rated`: `source`, `split`, `conversational` and
    `return_report` apply, `subset="disagreements"` reads the Hub's per-annotator subset).

    Args:
        source: `"nvidia/HelpSteer2"` (loaded with `data_dir="preference"`), a local json/jsonl/parquet file of the
            preference subset, or an already-loaded `datasets.Dataset` of it.
        split: `"train"` or `"validation"` (the subset's `split` column, `val` in the data) for one `Dataset`;
            `None` returns a `DatasetDict` of both.
        judgements: `"all_preferences_unprocessed"` (every annotator) or `"three_most_similar_preferences"` (the
            three the dataset authors kept after removing outliers).
        drop_ties: drop (and count) pairs whose soft label is exactly 0.5.
        ratings: the main subset (a Hub id, file or `Dataset`) to join attribute ratings onto both responses by
            `(prompt, response)`; the `disagreements` subset (lists of ratings) gives anchor counts. `None`: no
            anchors.
        attribute: which rating becomes the anchor.
        anchor_cutoffs: rating cutoffs; the anchor class is how many of them the rating reaches (K = len(cutoffs)).
        conversational: chat messages (multi-turn prompts split at their turn markers) or plain text.
        return_report: also return the `FilterReport`.
        subset: `"preference"` (pairs, default), `"rated"` (the main subset: one 0–4 rating per attribute) or
            `"disagreements"` (per-annotator ratings: rounded mean plus `<attribute>_std`).

    Returns:
        Columns `prompt`, `chosen`, `rejected`, `soft_label`, `num_judgements`, `split`; with `ratings`,
        `chosen_anchor`/`rejected_anchor` (or `chosen_anchor_counts`/`rejected_anchor_counts`) and `anchor_weight`
        (0 where a response has no rating).

    Example:

    ```python
    >>> splits = load_helpsteer2(ratings="nvidia/HelpSteer2")  # doctest: +SKIP
    >>> splits["train"].column_names  # doctest: +SKIP
    ['prompt', 'chosen', 'rejected', 'soft_label', 'chosen_anchor', 'rejected_anchor', 'num_judgements', ...]
    ```
    """
    if subset in ("rated", "disagreements"):
        from .helpsteer2_ratings import load_helpsteer2_rated

        data_dir = "disagreements" if subset == "disagreements" else None
        return load_helpsteer2_rated(
            source, split=split, data_dir=data_dir, conversational=conversational, return_report=return_report
        )
    if subset != "preference":
        raise ValueError(f"`subset` must be 'preference', 'rated' or 'disagreements', got {subset!r}.")
    if judgements not in JUDGEMENT_COLUMNS:
        raise ValueError(f"`judgements` must be one of {JUDGEMENT_COLUMNS}, got {judgements!r}.")
    on_hub = isinstance(source, str) and not os.path.exists(source)
    data = load_source(source, split="train", data_dir="preference") if on_hub else load_source(source, split=None)
    require_columns(data, (*PREFERENCE_COLUMNS, judgements), "The HelpSteer2 preference subset")
    report = FilterReport(f"HelpSteer2 preference ({judgements})", total=len(data))
    splits = [_split_name(value, row) for row, value in enumerate(data["split"])]
    prompts = data["prompt"]
    first, second = data["response_1"], data["response_2"]
    sides = _anchor_sides(ratings, prompts, first, second, attribute, anchor_cutoffs, report)
    columns = pair_columns(
        [parse_helpsteer2_prompt(p) if conversational else p for p in prompts],
        first,
        second,
        _strength_votes(data[judgements], judgements, report),
        report,
        ids=[f"row {i}" for i in range(len(data))],
        drop_ties=drop_ties,
        conversational=conversational,
        first_side=sides[0],
        second_side=sides[1],
        metadata={"split": splits, **sides[2]},
    )
    dataset = _by_split(Dataset.from_dict(columns), split)
    return (dataset, report) if return_report else dataset


def _split_name(value, row: int) -> str:
    if value not in SPLIT_NAMES:
        raise ValueError(
            f"Row {row}: unknown HelpSteer2 `split` value {value!r}; expected one of {sorted(SPLIT_NAMES)}."
        )
    return SPLIT_NAMES[value]


def _anchor_sides(ratings, prompts, first, second, attribute, cutoffs, report):
    """Per-response anchors (class or counts) joined by (prompt, response), plus the pair's `anchor_weight`."""
    if ratings is None:
        return None, None, {}
    if attribute not in ATTRIBUTES:
        raise ValueError(f"`attribute` must be one of {ATTRIBUTES}, got {attribute!r}.")
    cutoffs = [float(c) for c in cutoffs]
    if not cutoffs or any(b <= a for a, b in zip(cutoffs, cutoffs[1:])):
        raise ValueError(f"`anchor_cutoffs` must be non-empty and strictly increasing, got {list(cutoffs)}.")
    index = _rating_index(load_helpsteer2_ratings(ratings), attribute, report)
    anchors = [
        [_anchor(index.get((p, r)), cutoffs, attribute) for p, r in zip(prompts, side)] for side in (first, second)
    ]
    weight = [float(a is not None and b is not None) for a, b in zip(*anchors)]
    unrated = len(weight) - int(sum(weight))
    if unrated:
        report.adjust("pairs_without_both_ratings_anchor_weight_0", count=unrated)
    is_counts = any(isinstance(a, list) for side in anchors for a in side)
    key = "anchor_counts" if is_counts else "anchor"
    return {key: anchors[0]}, {key: anchors[1]}, {"anchor_weight": weight}


def _by_split(dataset: Dataset, split: str | None):
    if split is not None:
        name = SPLIT_NAMES.get(split)
        if name is None:
            raise ValueError(f"`split` must be 'train', 'validation' or None, got {split!r}.")
        return dataset.filter(lambda s: s == name, input_columns="split")
    names = [n for n in ("train", "validation") if n in set(dataset["split"])]
    return DatasetDict({n: dataset.filter(lambda s, n=n: s == n, input_columns="split") for n in names})
