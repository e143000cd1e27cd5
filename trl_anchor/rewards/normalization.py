"""Reward normalisation statistics: the mean and standard deviation of μ over a reference set of responses, recorded
in the model's `config.gaussian_reward["reward_normalization"]`, where `RewardTransform(normalize=True).bind(model)`
reads them, so κ, β and clipping bounds are in units of the reward's spread."""

import math
from typing import Any

import numpy as np
import torch

from ..models.configuration_gaussian import GAUSSIAN_CONFIG_KEY, gaussian_settings, is_gaussian_config

NORMALIZATION_KEY = "reward_normalization"

Scores = torch.Tensor | np.ndarray | list[float]


def check_statistics(stats: dict[str, float], where: str) -> dict[str, float]:
    """`stats` with a float `mean` and a positive finite float `std`; a `ValueError` naming `where` otherwise."""
    try:
        center, scale = float(stats["mean"]), float(stats["std"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{where} must be a dict with numeric 'mean' and 'std', got {stats!r}.") from None
    if not math.isfinite(center) or not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"{where} needs a finite mean and a positive finite std, got mean={center}, std={scale}.")
    return {**stats, "mean": center, "std": scale}


def reward_statistics(mean_scores: Scores) -> dict[str, float]:
    """Mean and standard deviation of the mean rewards μ of a reference set of responses.

    Example:

    ```python
    >>> from trl_anchor.rewards.normalization import reward_statistics
    >>> reward_statistics([0.0, 1.0, 2.0])
    {'mean': 1.0, 'std': 0.816496580927726, 'num_samples': 3}
    ```
    """
    scores = np.asarray(mean_scores.cpu() if isinstance(mean_scores, torch.Tensor) else mean_scores, np.float64)
    scores = scores.reshape(-1)
    if scores.size < 2:
        raise ValueError(f"Reward statistics need at least 2 scores, got {scores.size}.")
    bad = np.flatnonzero(~np.isfinite(scores))
    if bad.size:
        raise ValueError(f"{bad.size} reward scores are not finite (rows {bad[:10].tolist()}).")
    stats = {"mean": float(scores.mean()), "std": float(scores.std()), "num_samples": int(scores.size)}
    return check_statistics(stats, "The reward scores")


def record_reward_statistics(model: Any, mean_scores: Scores) -> dict[str, float]:
    """Compute `reward_statistics(mean_scores)` and store them in `model.config.gaussian_reward` under
    `"reward_normalization"`, where `RewardTransform(normalize=True).bind(model)` finds them after
    `save_pretrained`/`from_pretrained`. Returns the statistics.

    In practice `mean_scores` is `score_responses(model, tokenizer, responses, prompts).mean` over a reference set
    (e.g. the evaluation split). Example:

    ```python
    >>> import torch
    >>> from transformers import GPT2Config
    >>> from trl_anchor import GaussianRewardModel, RewardTransform, record_reward_statistics

    >>> model = GaussianRewardModel.from_config(GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=50, num_labels=1))
    >>> record_reward_statistics(model, [0.0, 1.0, 2.0, 3.0])
    {'mean': 1.5, 'std': 1.118033988749895, 'num_samples': 4}
    >>> RewardTransform.parse("lcb:1.0,normalize").bind(model)(torch.tensor([1.5]), torch.tensor([1.118034]))
    tensor([-1.])
    ```
    """
    config = getattr(model, "config", None)
    if config is None or not is_gaussian_config(config):
        raise ValueError(
            f"Reward statistics are recorded in `config.{GAUSSIAN_CONFIG_KEY}` of a GaussianRewardModel; "
            f"{type(model).__name__} has no such config."
        )
    stats = reward_statistics(mean_scores)
    setattr(config, GAUSSIAN_CONFIG_KEY, {**gaussian_settings(config), NORMALIZATION_KEY: stats})
    return stats
