"""VisionPrefer (Wu et al. 2024, arXiv:2404.15100): text-to-image prompts, four generated images each, every image
rated 1–5 by a multimodal LLM on four aspects (prompt-following, aesthetic, fidelity, harmlessness).

A 1–5 rating is an ordinal anchor with four thresholds per aspect (class = rating − 1). Pairs are all image pairs of a
prompt (six for four images), labelled from score differences with a Thurstone model: if each rating is the latent
quality plus N(0, s²) noise (`rating_noise = s`, in rating points), `P(first ≻ second) = Φ(Δ / (√2·s))` with Δ the
difference of the (weighted) aspect means; each aspect gets its own label from its own difference. Pairs whose overall
difference is 0 are dropped as ties, as in the paper. Images without a file or without a valid rating are dropped
and counted. The record layout the loader reads is written down in `tests/fixtures/vision_prefer/SCHEMA.md`.
"""

import math
import os
from collections.abc import Mapping, Sequence
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset, Features, Image, Value

from ._common import FilterReport, is_blank, load_source, orient_pairs, require_columns

VISION_PREFER_ASPECTS = ("prompt_following", "aesthetic", "fidelity", "harmlessness")
MIN_RATING, MAX_RATING = 1, 5
MODES = ("ratings", "pairs")


def load_vision_prefer(
    source: "str | os.PathLike | Dataset",
    *,
    mode: str = "pairs",
    split: str = "train",
    image_root: "str | os.PathLike | None" = None,
    aspects: Sequence[str] = VISION_PREFER_ASPECTS,
    aspect_weights: Sequence[float] | None = None,
    rating_noise: float = 1.0,
    return_report: bool = False,
):
    """VisionPrefer-format records as image reward training rows.

    Args:
        source: a local json/jsonl/parquet file, a `save_to_disk` directory, a loaded `Dataset` or a Hub dataset id,
            one record per prompt with `prompt` and `images` (a list of per-image dicts; see `SCHEMA.md`).
        mode: `"ratings"`: one row per image with `prompt`, `image` and, per aspect, the rating (1–5) and
            `<aspect>_anchor` (class 0–4). `"pairs"`: one row per image pair of a prompt with `chosen_image`,
            `rejected_image`, `soft_label` = P(chosen ≻ rejected) ≥ 0.5, `soft_label_<aspect>` (P(chosen better on
            that aspect), may be < 0.5) and both sides' ratings and anchors.
        split: the split of a Hub dataset (a local file is one split).
        image_root: directory relative image paths are resolved against (default: the source file's directory).
        aspects: the rated aspects, i.e. the per-image rating keys.
        aspect_weights: weights of the overall score that orients pairs (default: equal weights 1/A, the aspect mean).
        rating_noise: s of the Thurstone label `Φ(Δ/(√2·s))`, in rating points.
        return_report: also return the `FilterReport`s (images; and candidate pairs in `"pairs"` mode).

    Example:

    ```python
    >>> pairs = load_vision_prefer("visionprefer.jsonl", mode="pairs")  # doctest: +SKIP
    >>> pairs.column_names[:4]  # doctest: +SKIP
    ['prompt_id', 'prompt', 'chosen_image', 'rejected_image']
    ```
    """
    if mode not in MODES:
        raise ValueError(f"`mode` must be one of {MODES}, got {mode!r}.")
    if not rating_noise > 0 or not math.isfinite(rating_noise):
        raise ValueError(f"`rating_noise` must be a positive finite number, got {rating_noise}.")
    aspects = list(aspects)
    weights = np.asarray(aspect_weights if aspect_weights is not None else [1.0 / len(aspects)] * len(aspects), float)
    if weights.shape != (len(aspects),):
        raise ValueError(f"Got {weights.size} `aspect_weights` for the aspects {aspects}.")
    data = load_source(source, split=split)
    require_columns(data, ("prompt", "images"), "VisionPrefer data")
    if image_root is None and isinstance(source, (str, os.PathLike)) and Path(source).exists():
        image_root = Path(source).parent if Path(source).is_file() else Path(source)
    images, image_report = _read_images(data, aspects, image_root)
    if mode == "ratings":
        dataset = _ratings_dataset(images, aspects)
        reports = [image_report]
    else:
        dataset, pair_report = _pairs_dataset(images, aspects, weights, rating_noise)
        reports = [image_report, pair_report]
    for report in reports:
        report.log()
    return (dataset, reports) if return_report else dataset


def _read_images(data: Dataset, aspects: list[str], image_root) -> tuple[list[dict[str, Any]], FilterReport]:
    """Every usable image of every record as `{prompt_id, prompt, image, model, ratings}`; the rest counted."""
    report = FilterReport("VisionPrefer images", unit="images")
    ids = data["prompt_id"] if "prompt_id" in data.column_names else list(range(len(data)))
    kept = []
    for row, (prompt_id, prompt, entries) in enumerate(zip(ids, data["prompt"], data["images"], strict=True)):
        for index, entry in enumerate(_image_entries(entries)):
            report.total += 1
            where = f"record {row} image {index}"
            if is_blank(prompt):
                report.drop("empty_prompt", where)
                continue
            image = _resolve_image(entry, image_root)
            if image is None:
                report.drop("missing_image", where)
                continue
            ratings = [_rating(_aspect_value(entry, aspect), aspect, where) for aspect in aspects]
            missing = [aspect for aspect, value in zip(aspects, ratings, strict=True) if value is None]
            if missing:
                report.drop(f"missing_{missing[0]}_rating", where)
                continue
            kept.append(
                {"prompt_id": prompt_id, "prompt": prompt, "image": image, "model": entry.get("model"),
                 "ratings": ratings}
            )
    report.kept = len(kept)
    return kept, report


def _image_entries(entries) -> list[Mapping[str, Any]]:
    # A `Sequence` of structs comes out of `datasets` as a dict of lists; a `List` of structs as a list of dicts.
    if isinstance(entries, Mapping):
        return [dict(zip(entries, values, strict=True)) for values in zip(*entries.values(), strict=True)]
    return list(entries or [])


def _aspect_value(entry: Mapping[str, Any], aspect: str):
    # Ratings sit next to the image fields or in a nested `scores` dict (a file mixing both layouts gets None in the
    # other one's keys once `datasets` unifies the schema).
    value = entry.get(aspect)
    return (entry.get("scores") or {}).get(aspect) if value is None else value


def _rating(value, aspect: str, where: str) -> int | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, str):
        value = value.strip()
        if not value:
            return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not number.is_integer() or not MIN_RATING <= number <= MAX_RATING:
        raise ValueError(
            f"VisionPrefer {where}: rating `{aspect}` must be an integer {MIN_RATING}..{MAX_RATING}, got {value!r}."
        )
    return int(number)


def _resolve_image(entry: Mapping[str, Any], image_root):
    """A PIL image, an `{"bytes", "path"}` dict or an existing file path; None when the image is missing."""
    image = entry.get("image")
    if image is None:
        image = entry.get("image_path")
    if isinstance(image, Mapping):
        if image.get("bytes"):
            return dict(image)
        image = image.get("path")
    if image is None or (isinstance(image, str) and not image.strip()):
        return None
    if not isinstance(image, (str, os.PathLike)):
        return image  # a decoded PIL image
    path = Path(image)
    if not path.is_absolute() and image_root is not None:
        path = Path(image_root) / path
    return str(path) if path.is_file() else None


def _ratings_dataset(images: list[dict[str, Any]], aspects: list[str]) -> Dataset:
    columns: dict[str, list] = {key: [item[key] for item in images] for key in ("prompt_id", "prompt", "image")}
    columns["model"] = [item["model"] for item in images]
    for a, aspect in enumerate(aspects):
        columns[aspect] = [item["ratings"][a] for item in images]
        columns[f"{aspect}_anchor"] = [item["ratings"][a] - MIN_RATING for item in images]
    features = {"image": Image(), "model": Value("string"), **{aspect: Value("int64") for aspect in aspects}}
    return Dataset.from_dict(columns, features=_features(columns, features))


def thurstone_soft_label(difference, rating_noise: float = 1.0) -> np.ndarray:
    """`P(first ≻ second) = Φ(Δ / (√2·s))` for a rating difference Δ when each rating carries N(0, s²) noise.

    Example:

    ```python
    >>> thurstone_soft_label([0.0, 1.0]).round(4).tolist()
    [0.5, 0.7602]
    ```
    """
    z = torch.as_tensor(np.asarray(difference, dtype=np.float64)) / (math.sqrt(2.0) * rating_noise)
    return torch.special.ndtr(z).numpy()


def _pairs_dataset(images, aspects, weights, rating_noise) -> tuple[Dataset, FilterReport]:
    report = FilterReport("VisionPrefer image pairs", unit="pairs")
    by_prompt: dict[Any, list[dict[str, Any]]] = {}
    for item in images:
        by_prompt.setdefault(item["prompt_id"], []).append(item)
    firsts, seconds = [], []
    for prompt_id, group in by_prompt.items():
        for first, second in combinations(group, 2):
            report.total += 1
            if float(np.dot(weights, first["ratings"]) - np.dot(weights, second["ratings"])) == 0.0:
                report.drop("tied", f"prompt {prompt_id}")
                continue
            firsts.append(first)
            seconds.append(second)
    report.kept = len(firsts)
    first_ratings = np.array([item["ratings"] for item in firsts], dtype=np.float64).reshape(-1, len(aspects))
    second_ratings = np.array([item["ratings"] for item in seconds], dtype=np.float64).reshape(-1, len(aspects))
    p_first = thurstone_soft_label((first_ratings - second_ratings) @ weights, rating_noise)

    def side(items, ratings):
        fields = {"image": [item["image"] for item in items], "model": [item["model"] for item in items]}
        fields.update({f"aspect_{a}": ratings[:, a].tolist() for a in range(len(aspects))})
        return fields

    soft, chosen, rejected = orient_pairs(p_first, side(firsts, first_ratings), side(seconds, second_ratings))
    columns: dict[str, list] = {
        "prompt_id": [item["prompt_id"] for item in firsts],
        "prompt": [item["prompt"] for item in firsts],
        "chosen_image": chosen["image"],
        "rejected_image": rejected["image"],
        "soft_label": soft.tolist(),
    }
    for a, aspect in enumerate(aspects):
        difference = np.subtract(chosen[f"aspect_{a}"], rejected[f"aspect_{a}"])
        columns[f"soft_label_{aspect}"] = thurstone_soft_label(difference, rating_noise).tolist()
    for name, fields in (("chosen", chosen), ("rejected", rejected)):
        columns[f"{name}_model"] = fields["model"]
        for a, aspect in enumerate(aspects):
            columns[f"{name}_{aspect}"] = [int(r) for r in fields[f"aspect_{a}"]]
            columns[f"{name}_{aspect}_anchor"] = [int(r) - MIN_RATING for r in fields[f"aspect_{a}"]]
    features = {"chosen_image": Image(), "rejected_image": Image(), "chosen_model": Value("string"),
                "rejected_model": Value("string")}
    return Dataset.from_dict(columns, features=_features(columns, features)), report


def _features(columns: Mapping[str, list], fixed: Mapping[str, Any]) -> Features:
    """Image columns typed `datasets.Image` (the rest inferred), so an empty result keeps its schema too."""
    inferred = Dataset.from_dict({k: v for k, v in columns.items() if k not in fixed}).features
    return Features({name: fixed[name] if name in fixed else inferred[name] for name in columns})
