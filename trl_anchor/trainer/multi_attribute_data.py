"""Data of the `MultiAttributeRewardTrainer`: rated responses and optional preference pairs, tokenized and batched.

Both kinds of example become one row format so a single dataset (and sampler) serves both: `input_ids` (the rated
response, or a pair's chosen response), `rejected_ids` (empty for a rated response), `ratings` (one per attribute,
`-1` where missing) and `soft_label` (P(chosen ≻ rejected), unused for rated rows). Texts are tokenized with
`trl_anchor.rewards.scoring.tokenize_response`, so a response is trained on exactly the tokens `score_responses` and
the scalar trainer build for it.
"""

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from datasets import Dataset, concatenate_datasets
from transformers.utils import logging

from ..models.packing import pack_sequences
from ..rewards.scoring import tokenize_response

logger = logging.get_logger(__name__)

MISSING = -1
ROW_COLUMNS = ("input_ids", "rejected_ids", "ratings", "soft_label")


def _rating(value, attribute: str, row: int, max_rating: int) -> int:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, bool) or not float(value).is_integer() or not 0 <= value <= max_rating:
        raise ValueError(
            f"Column `{attribute}` must hold integer ratings 0..{max_rating} or None (missing); row {row} has "
            f"{value!r}."
        )
    return int(value)


def _require(dataset: Dataset, columns, name: str) -> None:
    missing = [c for c in columns if c not in dataset.column_names]
    if missing:
        raise ValueError(f"The {name} has no column(s) {missing} (columns: {dataset.column_names}).")


def prepare_rated(
    dataset: Dataset, tokenizer, attributes: list[str], max_rating: int, max_length: int | None, name: str
) -> Dataset:
    """Tokenize rated responses (`prompt`, `response`, one rating column per attribute) into training rows.

    Missing ratings (None/NaN) are kept as `-1` and counted per attribute; rows longer than `max_length` and rows with
    no rating at all are dropped and counted (logged)."""
    _require(dataset, ("response", *attributes), name)
    prompts = dataset["prompt"] if "prompt" in dataset.column_names else [None] * len(dataset)
    ratings = np.array(
        [[_rating(v, a, row, max_rating) for row, v in enumerate(dataset[a])] for a in attributes], dtype=np.int64
    ).T.reshape(len(dataset), len(attributes))
    missing = {a: int(n) for a, n in zip(attributes, (ratings == MISSING).sum(0), strict=True) if n}
    if missing:
        logger.warning(f"{name}: missing ratings (trained on the attributes that are rated): {missing}.")
    ids = [tokenize_response(tokenizer, r, p) for p, r in zip(prompts, dataset["response"], strict=True)]
    keep = [i for i in range(len(ids)) if (ratings[i] != MISSING).any() and _fits(ids[i], max_length)]
    _log_dropped(name, len(ids), keep, max_length)
    return Dataset.from_dict({
        "input_ids": [ids[i] for i in keep],
        "rejected_ids": [[] for _ in keep],
        "ratings": ratings[keep].tolist(),
        "soft_label": [0.0] * len(keep),
    })


def prepare_pairs(dataset: Dataset, tokenizer, num_attributes: int, max_length: int | None, name: str) -> Dataset:
    """Tokenize preference pairs (`prompt`, `chosen`, `rejected`, optional `soft_label` ∈ [0, 1], default 1)."""
    _require(dataset, ("chosen", "rejected"), name)
    prompts = dataset["prompt"] if "prompt" in dataset.column_names else [None] * len(dataset)
    labels = dataset["soft_label"] if "soft_label" in dataset.column_names else [1.0] * len(dataset)
    bad = [i for i, p in enumerate(labels) if p is None or not 0.0 <= float(p) <= 1.0]
    if bad:
        raise ValueError(
            f"Column `soft_label` of the {name} must lie in [0, 1]; row {bad[0]} has {labels[bad[0]]!r}."
        )
    chosen = [tokenize_response(tokenizer, r, p) for p, r in zip(prompts, dataset["chosen"], strict=True)]
    rejected = [tokenize_response(tokenizer, r, p) for p, r in zip(prompts, dataset["rejected"], strict=True)]
    keep = [i for i in range(len(chosen)) if _fits(chosen[i], max_length) and _fits(rejected[i], max_length)]
    _log_dropped(name, len(chosen), keep, max_length)
    return Dataset.from_dict({
        "input_ids": [chosen[i] for i in keep],
        "rejected_ids": [rejected[i] for i in keep],
        "ratings": [[MISSING] * num_attributes for _ in keep],
        "soft_label": [float(labels[i]) for i in keep],
    })


def combine(*datasets: Dataset | None) -> Dataset:
    return concatenate_datasets([d.select_columns(list(ROW_COLUMNS)) for d in datasets if d is not None])


def _fits(ids: list[int], max_length: int | None) -> bool:
    return max_length is None or len(ids) <= max_length


def _log_dropped(name: str, total: int, keep: list[int], max_length: int | None) -> None:
    if len(keep) < total:
        logger.warning(
            f"{name}: {total - len(keep)} of {total} rows dropped (longer than max_length={max_length} tokens, or no "
            "rating at all)."
        )
    if not keep:
        raise ValueError(f"The {name} has no usable rows left ({total} given).")


@dataclass
class DataCollatorForRatings:
    """Batch rated responses and preference pairs: every row's `input_ids` first, then the pairs' rejected responses.

    Returns the padded (or, with `padding_free`, packed) sequences, `ratings` (B, A) with `-1` where missing,
    `pair_index` (the rows that are pairs) and their `soft_label`.

    Example:

    ```python
    >>> collator = DataCollatorForRatings(pad_token_id=0)
    >>> batch = collator([
    ...     {"input_ids": [5, 6], "rejected_ids": [], "ratings": [3, -1], "soft_label": 0.0},
    ...     {"input_ids": [7], "rejected_ids": [8, 9, 4], "ratings": [-1, -1], "soft_label": 0.8},
    ... ])
    >>> batch["input_ids"].shape, batch["pair_index"], batch["soft_label"]
    (torch.Size([3, 3]), tensor([1]), tensor([0.8000]))
    ```
    """

    pad_token_id: int
    padding_free: bool = False
    pack_into_one_row: bool = False

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        pairs = [i for i, ex in enumerate(examples) if len(ex["rejected_ids"])]
        sequences = [ex["input_ids"] for ex in examples] + [examples[i]["rejected_ids"] for i in pairs]
        if self.padding_free:
            batch = pack_sequences(sequences, self.pad_token_id, self.pack_into_one_row)
        else:
            width = max(len(s) for s in sequences)
            input_ids = torch.full((len(sequences), width), self.pad_token_id, dtype=torch.long)
            attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
            for row, ids in enumerate(sequences):
                input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
                attention_mask[row, : len(ids)] = 1
            batch = {"input_ids": input_ids, "attention_mask": attention_mask}
        batch["ratings"] = torch.tensor([ex["ratings"] for ex in examples], dtype=torch.long)
        batch["pair_index"] = torch.tensor(pairs, dtype=torch.long)
        batch["soft_label"] = torch.tensor([float(examples[i]["soft_label"]) for i in pairs], dtype=torch.float)
        return batch


def auto_thresholds(ratings: np.ndarray, attributes: list[str], max_rating: int) -> list[list[float]]:
    """Per attribute `τ_k = Φ⁻¹(share of ratings below k)`, k = 1..K: the ordinal-probit thresholds at which a
    standard-normal population reproduces the train rating distribution."""
    rows = []
    for a, name in enumerate(attributes):
        observed = ratings[:, a][ratings[:, a] != MISSING]
        shares = np.array([(observed < k).mean() if observed.size else 0.0 for k in range(1, max_rating + 1)])
        if not (np.all(shares > 0) and np.all(shares < 1) and np.all(np.diff(shares) > 0)):
            raise ValueError(
                f"`rating_thresholds='auto'` needs every rating 0..{max_rating} of `{name}` in the train data "
                f"(shares below each level: {shares.round(3).tolist()}); use 'midpoints' or fixed thresholds."
            )
        rows.append(torch.special.ndtri(torch.tensor(shares, dtype=torch.float64)).tolist())
    return rows
