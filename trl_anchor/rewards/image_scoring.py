"""Batched scoring of (prompt, image) pairs with an image reward model and its processor.

The image counterpart of `score_responses`: it returns the same `RewardScores` (μ and σ² per aspect, in input order),
so `RewardTransform` (aspect weights, quantiles, LCB) applies to image rewards unchanged.
"""

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm
from transformers import PreTrainedModel
from transformers.utils import logging

from ..models.modeling_gaussian import GaussianRewardModel
from .scoring import RewardScores, _attribute_names

logger = logging.get_logger(__name__)


@torch.no_grad()
def score_images(
    model: PreTrainedModel,
    processor: Any,
    prompts: Sequence[str],
    images: Sequence["Image.Image | str | os.PathLike"],
    batch_size: int = 16,
    show_progress: bool = False,
) -> RewardScores:
    """Score images against their prompts: `mean` (and `variance` for a Gaussian model) of shape `(n,)`, or `(n, A)`
    with `attributes` naming the aspects of a multi-aspect model.

    Args:
        model: a `GaussianCLIPImageRewardModel` (or its plain `CLIPImageRewardModel`, which gives no variance).
        processor: the backbone's processor (e.g. `CLIPProcessor`): `processor(text=..., images=...)`.
        prompts: one prompt per image.
        images: PIL images or paths to image files.
        batch_size: images per forward pass; prompts are padded per batch and truncated to the text encoder's
            `max_position_embeddings` (how many were truncated is logged).

    Example:

    ```python
    >>> scores = score_images(model, processor, ["a red circle"], [image])  # doctest: +SKIP
    >>> RewardTransform.parse("lcb:1.0").bind(model)(scores.mean, scores.std)  # doctest: +SKIP
    ```
    """
    if len(prompts) != len(images):
        raise ValueError(f"Got {len(prompts)} prompts for {len(images)} images; they must pair up one to one.")
    if not prompts:
        raise ValueError("Nothing to score: the list of images is empty.")
    max_length = model.config.text_config.max_position_embeddings
    _warn_truncation(processor, prompts, max_length)
    attributes = _attribute_names(model)
    shape = (len(prompts),) if attributes is None else (len(prompts), len(attributes))
    mean = np.empty(shape, dtype=np.float64)
    gaussian = isinstance(model, GaussianRewardModel)
    variance = np.empty(shape, dtype=np.float64) if gaussian else None
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    for start in tqdm(range(0, len(prompts), batch_size), desc="Scoring images", disable=not show_progress):
        end = min(start + batch_size, len(prompts))
        batch = processor(
            text=list(prompts[start:end]),
            images=[_load_image(image) for image in images[start:end]],
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=max_length,
        )
        batch = {key: value.to(device) for key, value in batch.items()}
        batch["pixel_values"] = batch["pixel_values"].to(model.dtype)
        outputs = model(**batch)
        mean[start:end] = outputs.logits.reshape(end - start, *shape[1:]).float().cpu().numpy()
        if gaussian:
            variance[start:end] = outputs.variance.reshape(end - start, *shape[1:]).float().cpu().numpy()
    model.train(was_training)
    return RewardScores(mean=mean, variance=variance, attributes=attributes)


def _load_image(image: "Image.Image | str | os.PathLike") -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    with Image.open(image) as opened:
        return opened.convert("RGB")


def _warn_truncation(processor: Any, prompts: Sequence[str], max_length: int) -> None:
    tokenizer = getattr(processor, "tokenizer", processor)
    lengths = [len(ids) for ids in tokenizer(list(prompts))["input_ids"]]
    truncated = sum(length > max_length for length in lengths)
    if truncated:
        logger.warning(f"{truncated}/{len(prompts)} prompts exceed the text encoder's {max_length} tokens; truncated.")
