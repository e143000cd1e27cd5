"""The exact unbiased best-of-n estimator: the expected value of the best of n items drawn without replacement from a
pool of N, for every n ≤ N at once, without resampling.

With the N items of a pool sorted by selection score, the item of rank i (1 = lowest) is the best of a uniformly random
n-subset with probability C(i−1, n−1) / C(N, n); items tied in selection score share their value equally (a tie is
broken uniformly at random).
"""

from collections.abc import Sequence
from typing import Any

import numpy as np


def best_of_n_weights(pool_size: int, n: int) -> np.ndarray:
    """P(the item of rank i is the best of a uniformly random n-subset of a pool of `pool_size`), for ranks
    i = 1..N in ascending order of selection score: C(i−1, n−1) / C(N, n) (zero for i < n).

    Computed as a running product of ratios ≤ 1 from the top rank down, so it neither overflows for large pools nor
    loses the exact values of small ones.

    Example:

    ```python
    >>> best_of_n_weights(4, 2).tolist()
    [0.0, 0.16666666666666666, 0.3333333333333333, 0.5]
    ```
    """
    if not 1 <= n <= pool_size:
        raise ValueError(f"n must lie in [1, pool size = {pool_size}], got n={n}.")
    weights = np.zeros(pool_size, dtype=np.float64)
    # w(N) = n/N and w(i) = w(i+1) · (i−n+1)/i for n ≤ i < N.
    ranks = np.arange(n, pool_size, dtype=np.float64)
    ratios = (ranks - n + 1) / ranks
    weights[n - 1 :] = (n / pool_size) * np.append(np.cumprod(ratios[::-1])[::-1], 1.0)
    return weights


def _tie_averaged(sorted_scores: np.ndarray, sorted_values: np.ndarray) -> np.ndarray:
    """Replace each value by the mean value of its block of equal scores (rows sorted ascending by score)."""
    new_block = np.ones_like(sorted_scores, dtype=bool)
    new_block[..., 1:] = sorted_scores[..., 1:] != sorted_scores[..., :-1]
    if new_block.all():
        return sorted_values
    averaged = np.empty_like(sorted_values)
    for row in range(sorted_values.shape[0]):
        block = np.cumsum(new_block[row]) - 1
        means = np.bincount(block, weights=sorted_values[row]) / np.bincount(block)
        averaged[row] = means[block]
    return averaged


def best_of_n_curve(scores: Any, values: Any, ns: Sequence[int] | None = None) -> np.ndarray:
    """Expected `values` of the item with the highest selection score among n items drawn uniformly without
    replacement from each pool, exactly, for every n in `ns` (default 1..N).

    `scores` and `values` have shape `(N,)` (one pool) or `(num_pools, N)`; the result has shape `(len(ns),)` or
    `(num_pools, len(ns))`. n = 1 gives the pool mean, n = N the value of the top-scored item; tied scores share
    their values equally.

    Example:

    ```python
    >>> best_of_n_curve([0.1, 0.9, 0.5, 0.5], [1.0, 4.0, 2.0, 3.0]).tolist()
    [2.5, 3.25, 3.625, 4.0]
    ```
    """
    scores, values = np.asarray(scores, dtype=np.float64), np.asarray(values, dtype=np.float64)
    if scores.shape != values.shape or scores.ndim not in (1, 2) or scores.shape[-1] == 0:
        raise ValueError(
            f"`scores` and `values` must have the same shape (N,) or (num_pools, N) with N ≥ 1, got {scores.shape} "
            f"and {values.shape}."
        )
    for name, array in (("scores", scores), ("values", values)):
        if not np.isfinite(array).all():
            where = np.argwhere(~np.isfinite(array))[0].tolist()
            raise ValueError(f"`{name}` must be finite; found {array[tuple(where)]} at index {where}.")
    single = scores.ndim == 1
    scores, values = np.atleast_2d(scores), np.atleast_2d(values)
    pool_size = scores.shape[-1]
    ns = list(range(1, pool_size + 1)) if ns is None else [int(n) for n in ns]
    order = np.argsort(scores, axis=-1, kind="stable")
    sorted_values = _tie_averaged(np.take_along_axis(scores, order, -1), np.take_along_axis(values, order, -1))
    weights = np.stack([best_of_n_weights(pool_size, n) for n in ns], axis=-1)
    curves = sorted_values @ weights
    return curves[0] if single else curves


def best_of_n_expectation(scores: Any, values: Any, n: int) -> float | np.ndarray:
    """`best_of_n_curve` at a single n: a float for one pool, an array with one value per pool otherwise."""
    curve = best_of_n_curve(scores, values, [n])[..., 0]
    return float(curve) if np.ndim(curve) == 0 else curve
