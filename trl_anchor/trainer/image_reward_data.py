"""Data of the `ImageRewardTrainer`: rated images and image pairs in one row format, batched through the processor.

A ratings dataset (`prompt`, `image`, one 1–5 column per aspect, as `load_vision_prefer(mode="ratings")` writes it)
and a pairs dataset (`prompt`, `chosen_image`, `rejected_image`, `soft_label`, optional `soft_label_<aspect>` and
`chosen_<aspect>` / `rejected_<aspect>` ratings, as `load_vision_prefer(mode="pairs")` writes it) both become rows
of `prompt`, `image`, `rejected_image` (None for a rated image), `ratings` / `rejected_ratings` (one per aspect, `-1`
where missing), `soft_label` (NaN for a rated image), `soft_labels` (per aspect, NaN where absent) and `weight`.
Images stay undecoded (`datasets.Image`) until the collator, which decodes them to PIL and runs the processor.
"""

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from datasets import Dataset, Features, Image, Sequence, Value, concatenate_datasets
from transformers.utils import logging

logger = logging.get_logger(__name__)

MISSING = -1
ROW_FEATURES = {"prompt": Value("string"), "image": Image(), "rejected_image": Image()}


def prepare_image_rows(dataset: Dataset, aspects: list[str], min_rating: int, max_rating: int, name: str) -> Dataset:
    """Training rows from a ratings or a pairs dataset (told apart by a `chosen_image` column)."""
    if "chosen_image" in dataset.column_names:
        return _pairs(dataset, aspects, min_rating, max_rating, name)
    return _ratings(dataset, aspects, min_rating, max_rating, name)


def combine(*datasets: Dataset | None) -> Dataset:
    return concatenate_datasets([d for d in datasets if d is not None])


def _ratings(dataset, aspects, min_rating, max_rating, name) -> Dataset:
    _require(dataset, ("prompt", "image", *aspects), name)
    ratings = _rating_matrix(dataset, aspects, "", min_rating, max_rating, name)
    keep = np.flatnonzero((ratings != MISSING).any(1))
    if len(keep) < len(dataset):
        logger.warning(f"{name}: {len(dataset) - len(keep)} of {len(dataset)} images dropped (no rating at all).")
    if not len(keep):
        raise ValueError(f"The {name} has no rated image left ({len(dataset)} given).")
    a = len(aspects)
    columns = {
        "prompt": _prompts(dataset, name),
        "image": _images(dataset, "image"),
        "rejected_image": [None] * len(dataset),
        "ratings": ratings.tolist(),
        "rejected_ratings": [[MISSING] * a] * len(dataset),
        "soft_label": [math.nan] * len(dataset),
        "soft_labels": [[math.nan] * a] * len(dataset),
        "weight": _weights(dataset, name),
    }
    rows = _rows(columns)
    return rows.select(keep) if len(keep) < len(dataset) else rows


def _pairs(dataset, aspects, min_rating, max_rating, name) -> Dataset:
    _require(dataset, ("prompt", "chosen_image", "rejected_image"), name)
    n = len(dataset)
    overall = _labels(dataset["soft_label"] if "soft_label" in dataset.column_names else [1.0] * n, "soft_label", name)
    per_aspect = np.full((n, len(aspects)), math.nan)
    for a, aspect in enumerate(aspects):
        column = f"soft_label_{aspect}"
        if column in dataset.column_names:
            per_aspect[:, a] = _labels(dataset[column], column, name)
    columns = {
        "prompt": _prompts(dataset, name),
        "image": _images(dataset, "chosen_image"),
        "rejected_image": _images(dataset, "rejected_image"),
        "ratings": _rating_matrix(dataset, aspects, "chosen_", min_rating, max_rating, name).tolist(),
        "rejected_ratings": _rating_matrix(dataset, aspects, "rejected_", min_rating, max_rating, name).tolist(),
        "soft_label": overall.tolist(),
        "soft_labels": per_aspect.tolist(),
        "weight": _weights(dataset, name),
    }
    return _rows(columns)


def _rows(columns: dict[str, list]) -> Dataset:
    features = Features({
        **ROW_FEATURES,
        "ratings": Sequence(Value("int64")),
        "rejected_ratings": Sequence(Value("int64")),
        "soft_label": Value("float64"),
        "soft_labels": Sequence(Value("float64")),
        "weight": Value("float64"),
    })
    return Dataset.from_dict(columns, features=features)


def _require(dataset: Dataset, columns, name: str) -> None:
    missing = [c for c in columns if c not in dataset.column_names]
    if missing:
        raise ValueError(f"The {name} has no column(s) {missing} (columns: {dataset.column_names}).")


def _prompts(dataset: Dataset, name: str) -> list[str]:
    prompts = dataset["prompt"]
    bad = [i for i, p in enumerate(prompts) if not isinstance(p, str) or not p.strip()]
    if bad:
        raise ValueError(
            f"Column `prompt` of the {name} must hold non-empty text; row {bad[0]} has {prompts[bad[0]]!r}."
        )
    return list(prompts)


def _images(dataset: Dataset, column: str) -> list:
    # Undecoded ({"bytes", "path"} dicts): the collator decodes each batch, so the dataset never holds pixels.
    return dataset.cast_column(column, Image(decode=False))[column]


def _rating_matrix(dataset, aspects, prefix, min_rating, max_rating, name) -> np.ndarray:
    ratings = np.full((len(dataset), len(aspects)), MISSING, dtype=np.int64)
    for a, aspect in enumerate(aspects):
        column = f"{prefix}{aspect}"
        if column not in dataset.column_names:
            continue
        for row, value in enumerate(dataset[column]):
            if value is None or (isinstance(value, float) and math.isnan(value)):
                continue
            if isinstance(value, bool) or not float(value).is_integer() or not min_rating <= value <= max_rating:
                raise ValueError(
                    f"Column `{column}` of the {name} must hold integer ratings {min_rating}..{max_rating} or None; "
                    f"row {row} has {value!r}."
                )
            ratings[row, a] = int(value)
    return ratings


def _labels(values, column: str, name: str) -> np.ndarray:
    labels = np.array([math.nan if v is None else float(v) for v in values], dtype=np.float64)
    bad = np.flatnonzero(~((labels >= 0) & (labels <= 1)))
    if bad.size:
        raise ValueError(f"Column `{column}` of the {name} must lie in [0, 1]; row {bad[0]} has {values[bad[0]]!r}.")
    return labels


def _weights(dataset: Dataset, name: str) -> list[float]:
    if "weight" not in dataset.column_names:
        return [1.0] * len(dataset)
    weights = np.array([math.nan if w is None else float(w) for w in dataset["weight"]], dtype=np.float64)
    bad = np.flatnonzero(~(np.isfinite(weights) & (weights >= 0)))
    if bad.size:
        raise ValueError(f"Column `weight` of the {name} must be finite and ≥ 0; row {bad[0]} has {weights[bad[0]]}.")
    return weights.tolist()


@dataclass
class DataCollatorForImageRewards:
    """Batch rated images and image pairs: every row's `(prompt, image)` first, then the pairs' rejected images.

    Returns the processor's `input_ids`, `attention_mask` and `pixel_values` (prompts truncated to `max_length`
    tokens), `ratings` (rows then rejected images, `-1` where missing), `pair_index` (the rows that are pairs), their
    `soft_label` and per-aspect `soft_labels`, and `weight` per row.
    """

    processor: Any
    max_length: int

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        pairs = [i for i, ex in enumerate(examples) if ex["rejected_image"] is not None]
        prompts = [ex["prompt"] for ex in examples] + [examples[i]["prompt"] for i in pairs]
        images = [ex["image"] for ex in examples] + [examples[i]["rejected_image"] for i in pairs]
        batch = dict(self.processor(
            text=prompts, images=[image.convert("RGB") for image in images], return_tensors="pt", padding=True,
            truncation=True, max_length=self.max_length,
        ))
        ratings = [ex["ratings"] for ex in examples] + [examples[i]["rejected_ratings"] for i in pairs]
        batch["ratings"] = torch.tensor(ratings, dtype=torch.long)
        batch["pair_index"] = torch.tensor(pairs, dtype=torch.long)
        batch["soft_label"] = torch.tensor([examples[i]["soft_label"] for i in pairs], dtype=torch.float64)
        width = len(examples[0]["ratings"])
        soft_labels = [examples[i]["soft_labels"] for i in pairs]
        batch["soft_labels"] = torch.tensor(soft_labels, dtype=torch.float64).reshape(len(pairs), width)
        batch["weight"] = torch.tensor([ex["weight"] for ex in examples], dtype=torch.float64)
        return batch
