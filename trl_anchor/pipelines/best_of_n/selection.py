"""Selection policies of best-of-N: a `trl_anchor.rewards.transforms.RewardTransform` spec applied to (μ, σ)
(`"mean"`, `"quantile:0.1"`, `"lcb:1.0"`, ...), `"random"` (a uniform choice) or `"oracle"` (the gold reward itself,
the upper reference)."""

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
from transformers import PretrainedConfig

from ...rewards.transforms import RewardTransform

DEFAULT_POLICIES = ("mean", "quantile:0.1", "lcb:1.0", "random")
# σ-aware policies of anchored models: the expected anchor class and P(top class) (e.g. expected vote, P(funny)).
ANCHOR_POLICIES = ("expected_class", "p_top")
REFERENCE_POLICIES = ("random", "oracle")


def policy_scores(
    policy: str,
    mean: np.ndarray,
    std: np.ndarray | None = None,
    gold: np.ndarray | None = None,
    reward_config: PretrainedConfig | None = None,
    seed: int = 0,
) -> np.ndarray:
    """Selection scores of a policy for arrays of μ (and σ): higher is chosen.

    `"random"` gives every item the same score (the estimator then averages over the pool: a uniform choice),
    `"oracle"` scores by `gold`, anything else is a `RewardTransform` spec applied to (μ, σ). A `normalize` spec
    reads its statistics from `reward_config`; an unseeded `random_quantile` is seeded with `seed` so that a report
    can be reproduced.

    Example:

    ```python
    >>> policy_scores("lcb:1.0", np.array([1.0, 2.0]), np.array([0.1, 2.0])).tolist()
    [0.9, 0.0]
    ```
    """
    mean = np.asarray(mean, dtype=np.float64)
    if policy == "random":
        return np.zeros_like(mean)
    if policy == "oracle":
        if gold is None:
            raise ValueError("The `oracle` policy selects by the gold reward; run the `evaluate` stage first.")
        return np.asarray(gold, dtype=np.float64)
    transform = RewardTransform.parse(policy)
    if transform.needs_std and std is None:
        raise ValueError(
            f"Selection policy {policy!r} needs σ, but the reward model is not Gaussian (it predicts no variance); "
            "use `mean` or `random`, or score with a GaussianRewardModel."
        )
    if transform.is_random and transform.seed is None:
        transform = replace(transform, seed=seed)
    if transform.normalize or transform.needs_thresholds:
        if reward_config is None:
            raise ValueError(f"Selection policy {policy!r} reads the reward model's config; pass it (reward_config).")
        transform = transform.bind(reward_config)
    flat_std = None if std is None else np.asarray(std, dtype=np.float64).reshape(-1)
    return np.asarray(transform(mean.reshape(-1), flat_std), dtype=np.float64).reshape(mean.shape)


def check_policies(policies: Sequence[str], gaussian: bool = True) -> list[str]:
    """Validate policy names/specs up front (before any expensive stage) and return them de-duplicated."""
    if not policies:
        raise ValueError(f"Give at least one selection policy, e.g. {list(DEFAULT_POLICIES)}.")
    for policy in policies:
        if policy in REFERENCE_POLICIES:
            continue
        transform = RewardTransform.parse(policy)
        if transform.needs_std and not gaussian:
            raise ValueError(f"Selection policy {policy!r} needs σ, which a non-Gaussian reward model does not give.")
    return list(dict.fromkeys(policies))
