"""A variance-aware reward function for diffusion RL: `(prompts, images) → rewards`, one float per image.

Diffusion fine-tuning code (DDPO/DPOK-style policy gradients, reward-weighted fine-tuning, ImageReward's ReFL loop)
samples a batch of images per prompt and calls a reward function on the prompts and the decoded images.
`ImageRewardFunction` scores them with an image reward model (`score_images`) and returns `RewardTransform` rewards:
`"mean"` (the aspect-weighted μ), or risk-aware `"lcb:1.0"`, `"quantile:0.1"`, ... which penalise images the raters
would disagree on. Images may be PIL images, file paths, or a float tensor / array `(B, 3, H, W)` in `[0, 1]` (what
diffusers returns with `output_type="pt"`/`"np"`).
"""

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image

from .image_scoring import score_images
from .transforms import RewardTransform


class ImageRewardFunction:
    """Score generated images against their prompts and return one reward per image.

    After each call `last_mean`, `last_std` (numpy arrays, `(B, A)` for a multi-aspect model) and `last_rewards` hold
    what was computed.

    Args:
        model: a `GaussianCLIPImageRewardModel` (any transform) or a `CLIPImageRewardModel` (`transform="mean"`).
        processor: the model's processor (`CLIPProcessor`).
        transform (`str` or `RewardTransform`, defaults to `"mean"`): bound to the model, so a multi-aspect model's
            recorded aspect weights combine the aspects unless the spec gives its own (`"lcb:1.0,weights:0:1:0:0"`).
        batch_size (`int`, defaults to `16`): images per forward pass.

    Example:

    ```python
    >>> reward_fn = ImageRewardFunction(model, processor, transform="lcb:1.0")  # doctest: +SKIP
    >>> images = pipe(prompts, output_type="pt").images  # a diffusers pipeline  # doctest: +SKIP
    >>> rewards = reward_fn(prompts, images)  # list of floats, one per image  # doctest: +SKIP
    >>> # TRL's DDPOTrainer calls reward_fn(images, prompts, metadata) -> (rewards, metadata):
    >>> ddpo_reward = reward_fn.as_ddpo_reward()  # doctest: +SKIP
    ```
    """

    def __init__(self, model, processor, transform: "str | RewardTransform" = "mean", batch_size: int = 16):
        self.model, self.processor, self.batch_size = model, processor, batch_size
        self.transform = RewardTransform.parse(transform).bind(model)
        self.last_mean = self.last_std = self.last_rewards = None

    def __call__(self, prompts: Sequence[str], images: Any, **kwargs) -> list[float]:
        images = to_pil_images(images)
        scores = score_images(self.model, self.processor, list(prompts), images, batch_size=self.batch_size)
        self.last_mean, self.last_std = scores.mean, scores.std
        self.last_rewards = np.asarray(self.transform(scores.mean, scores.std), dtype=np.float64).reshape(-1)
        return self.last_rewards.tolist()

    def as_ddpo_reward(self):
        """The `(images, prompts, prompt_metadata) → (rewards tensor, metadata)` shape of TRL's DDPO trainer."""

        def reward(images, prompts, prompt_metadata):
            return torch.tensor(self(prompts, images), dtype=torch.float32), {}

        return reward


def to_pil_images(images: Any) -> list:
    """PIL images (or paths) as they are; a `(B, 3, H, W)` or `(B, H, W, 3)` tensor/array in [0, 1] as RGB images."""
    if isinstance(images, (torch.Tensor, np.ndarray)):
        array = images.detach().float().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
        if array.ndim != 4:
            raise ValueError(f"A batch of images must be 4-dimensional (B, C, H, W), got shape {array.shape}.")
        if array.shape[1] == 3 and array.shape[-1] != 3:
            array = array.transpose(0, 2, 3, 1)
        if array.min() < 0 or array.max() > 1:
            raise ValueError(
                f"Image tensors must hold values in [0, 1] (diffusers' output_type='pt'/'np'); got "
                f"[{array.min():.3g}, {array.max():.3g}]."
            )
        return [Image.fromarray(np.rint(a * 255).astype(np.uint8)) for a in array]
    return list(images)
