"""Best-of-N over generated images: generate N images per prompt with an image generator callable, score them with an
image reward model (μ, σ per aspect), select risk-aware, and evaluate the choices with a gold scorer.

The generator is any callable `(prompt, num_images, seed) → list of PIL images`: `diffusers_generator(pipeline)` wraps
a diffusers text-to-image pipeline; tests and the offline demo pass a procedural generator. Selection uses the same
`RewardTransform` policies as the text pipeline (`"mean"`, `"lcb:1.0"`, `"quantile:0.1"`, `"random"`, `"oracle"`),
bound to the reward model so a multi-aspect model's recorded aspect weights combine μ_a and σ_a, and the same exact
best-of-n estimator (`best_of_n_curve`) for every n ≤ N from the one pool.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ...rewards.image_scoring import score_images
from ...rewards.transforms import RewardTransform
from .estimator import best_of_n_curve
from .generation import derive_seed

ImageGenerator = Callable[[str, int, int], list]
ImageGoldScorer = Callable[[list[str], list], Sequence[float]]


@dataclass
class ImageBestOfN:
    """The pool and the choices: `images[p][k]`, `mean`/`std` `(P, N)` or `(P, N, A)`, `gold` `(P, N)` (or None),
    and per policy its selection scores `(P, N)`, chosen index per prompt and best-of-n curve of the gold reward
    (mean over prompts, n = 1..N)."""

    prompts: list[str]
    images: list[list]
    mean: np.ndarray
    std: np.ndarray | None
    gold: np.ndarray | None
    scores: dict[str, np.ndarray]
    chosen: dict[str, np.ndarray]
    curves: dict[str, np.ndarray]

    def chosen_images(self, policy: str) -> list:
        return [self.images[p][k] for p, k in enumerate(self.chosen[policy])]


def diffusers_generator(pipeline, **call_kwargs) -> ImageGenerator:
    """A generator callable from a diffusers text-to-image pipeline (`StableDiffusionPipeline`, ...): each prompt's
    images come from `torch.Generator(device).manual_seed(seed)`, so a run is reproducible. `call_kwargs` (e.g.
    `num_inference_steps`, `guidance_scale`) go to the pipeline call."""
    import torch

    def generate(prompt: str, num_images: int, seed: int) -> list:
        generator = torch.Generator(device=getattr(pipeline, "device", "cpu")).manual_seed(seed)
        output = pipeline(prompt, num_images_per_prompt=num_images, generator=generator, **call_kwargs)
        return list(output.images)

    return generate


def image_best_of_n(
    prompts: Sequence[str],
    generate: ImageGenerator,
    model,
    processor,
    num_samples: int,
    policies: Sequence[str] = ("mean", "lcb:1.0", "quantile:0.1", "random"),
    gold: ImageGoldScorer | None = None,
    seed: int = 0,
    batch_size: int = 16,
) -> ImageBestOfN:
    """Run best-of-N over images.

    Example:

    ```python
    >>> from diffusers import StableDiffusionPipeline  # doctest: +SKIP
    >>> pipe = StableDiffusionPipeline.from_pretrained("stable-diffusion-v1-5/stable-diffusion-v1-5")  # doctest: +SKIP
    >>> result = image_best_of_n(prompts, diffusers_generator(pipe, num_inference_steps=25), model, processor,
    ...                          num_samples=8, policies=["mean", "lcb:1.0"], gold=gold_scorer)  # doctest: +SKIP
    >>> result.curves["lcb:1.0"][-1]  # mean gold reward of the image chosen from 8  # doctest: +SKIP
    ```
    """
    if not prompts:
        raise ValueError("No prompts given.")
    if num_samples < 1:
        raise ValueError(f"`num_samples` must be at least 1, got {num_samples}.")
    images = []
    for p, prompt in enumerate(prompts):
        generated = list(generate(prompt, num_samples, derive_seed(seed, str(p), 0)))
        if len(generated) != num_samples:
            raise ValueError(f"The generator gave {len(generated)} images for prompt {p}; asked for {num_samples}.")
        images.append(generated)
    flat_prompts = [prompt for prompt in prompts for _ in range(num_samples)]
    flat_images = [image for row in images for image in row]
    scored = score_images(model, processor, flat_prompts, flat_images, batch_size=batch_size)
    shape = (len(prompts), num_samples, *scored.mean.shape[1:])
    mean = scored.mean.reshape(shape)
    std = None if scored.std is None else scored.std.reshape(shape)
    gold_values = None
    if gold is not None:
        gold_values = np.asarray(gold(flat_prompts, flat_images), dtype=np.float64).reshape(len(prompts), num_samples)
    result = ImageBestOfN(list(prompts), images, mean, std, gold_values, {}, {}, {})
    for policy in dict.fromkeys(policies):
        scores = _policy_scores(policy, mean, std, gold_values, model)
        result.scores[policy] = scores
        # `random` scores are all equal: its choice is any item; the curve averages over the pool.
        result.chosen[policy] = scores.argmax(1)
        if gold_values is not None:
            result.curves[policy] = best_of_n_curve(scores, gold_values).mean(0)  # averaged over the prompts
    return result


def _policy_scores(policy: str, mean: np.ndarray, std: np.ndarray | None, gold: np.ndarray | None, model) -> Any:
    if policy == "random":
        return np.zeros(mean.shape[:2])
    if policy == "oracle":
        if gold is None:
            raise ValueError("The `oracle` policy selects by the gold reward; pass `gold`.")
        return gold
    transform = RewardTransform.parse(policy).bind(model)
    return np.asarray(transform(mean, std), dtype=np.float64).reshape(mean.shape[:2])
