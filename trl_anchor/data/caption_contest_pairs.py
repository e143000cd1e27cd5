"""Within-contest caption pairs: the soft label of two captions from their vote distributions, the spread of a
caption's votes, and the seeded pair sampling strategies (`random`, `rank_stratified`, `clearly_separated`)."""

import numpy as np

from ..metrics import vote_spread

__all__ = ["STRATEGIES", "pairwise_soft_labels", "sample_pairs", "vote_spread"]

STRATEGIES = ("random", "rank_stratified", "clearly_separated")
_ENUMERATE_LIMIT = 200_000  # below this many candidate pairs, enumerate them all instead of rejection sampling
_MAX_DRAW_ROUNDS = 200


# --------------------------------------------------------------------------------------------- pair soft labels
def pairwise_soft_labels(counts_a: np.ndarray, counts_b: np.ndarray) -> np.ndarray:
    """P(X_a > X_b) + ½ P(X_a = X_b) for independent votes X_a, X_b drawn from the two captions' vote distributions.

    Example:

    ```python
    >>> pairwise_soft_labels(np.array([[0, 0, 4]]), np.array([[2, 2, 0]])).tolist()
    [1.0]
    >>> pairwise_soft_labels(np.array([[1, 1, 1]]), np.array([[1, 1, 1]])).tolist()
    [0.5]
    ```
    """
    p_a = _distribution(counts_a)
    p_b = _distribution(counts_b)
    below_b = np.cumsum(p_b, axis=1) - p_b  # P(X_b < k) for each category k
    win = (p_a * below_b).sum(1)
    tie = (p_a * p_b).sum(1)
    return win + 0.5 * tie


def _distribution(counts: np.ndarray) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64).reshape(-1, 3)
    totals = counts.sum(1, keepdims=True)
    if np.any(totals <= 0):
        raise ValueError("A vote distribution needs at least one vote.")
    return counts / totals


# ----------------------------------------------------------------------------------------------- pair sampling
def _canonical_pairs(i: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    distinct = i != j
    i, j = i[distinct], j[distinct]
    return np.minimum(i, j), np.maximum(i, j)


def _choose_pairs(rng, m, left, right, accept=None) -> tuple[np.ndarray, np.ndarray]:
    """Up to `m` distinct unordered pairs (a ∈ left, b ∈ right, a ≠ b) passing `accept`, uniformly at random."""
    if m <= 0 or len(left) == 0 or len(right) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if len(left) * len(right) <= _ENUMERATE_LIMIT:
        i, j = (grid.ravel() for grid in np.meshgrid(left, right, indexing="ij"))
        keys = np.unique(np.stack(_canonical_pairs(i, j), 1), axis=0)
        if accept is not None:
            keys = keys[accept(keys[:, 0], keys[:, 1])]
        pick = rng.permutation(len(keys))[:m]
        return keys[pick, 0], keys[pick, 1]
    return _rejection_pairs(rng, m, np.asarray(left), np.asarray(right), accept)


def _rejection_pairs(rng, m, left, right, accept):
    seen: set[tuple[int, int]] = set()
    found_i, found_j = [], []
    for _ in range(_MAX_DRAW_ROUNDS):
        draw = max(4 * (m - len(found_i)), 4096)  # rare acceptance (clearly separated) needs big draws
        i, j = _canonical_pairs(rng.choice(left, draw), rng.choice(right, draw))
        if accept is not None:
            ok = accept(i, j)
            i, j = i[ok], j[ok]
        for a, b in zip(i.tolist(), j.tolist(), strict=True):
            if (a, b) not in seen:
                seen.add((a, b))
                found_i.append(a)
                found_j.append(b)
                if len(found_i) == m:
                    return np.asarray(found_i), np.asarray(found_j)
    return np.asarray(found_i, dtype=np.int64), np.asarray(found_j, dtype=np.int64)


def sample_pairs(
    mean: np.ndarray,
    se: np.ndarray,
    num_pairs: int,
    strategy: str = "random",
    rng: np.random.Generator | None = None,
    num_strata: int = 5,
    separation: float = 3.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Indices `(i, j)` of distinct caption pairs of one contest.

    - `"random"`: uniform over all pairs.
    - `"rank_stratified"`: captions ranked by mean and cut into `num_strata` equal strata; the pairs are spread evenly
      over every (stratum, stratum) cell, so top-vs-top, top-vs-bottom, ... comparisons are all represented.
    - `"clearly_separated"`: uniform over the pairs with |mean_a − mean_b| > `separation`·√(se_a² + se_b²). Pass
      standard errors that are never 0 (`caption_contest_files.separation_se`, add-one smoothed): with the raw
      ones, two unanimous captions of two votes each would count as clearly separated.

    Fewer pairs than asked come back when the contest has fewer eligible pairs.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"`strategy` must be one of {STRATEGIES}, got {strategy!r}.")
    rng = np.random.default_rng() if rng is None else rng
    everyone = np.arange(len(mean))
    if strategy == "random":
        return _choose_pairs(rng, num_pairs, everyone, everyone)
    if strategy == "clearly_separated":

        def accept(i, j):
            return np.abs(mean[i] - mean[j]) > separation * np.sqrt(se[i] ** 2 + se[j] ** 2)

        return _choose_pairs(rng, num_pairs, everyone, everyone, accept)
    strata = np.array_split(np.argsort(-mean, kind="stable"), max(1, min(num_strata, len(mean))))
    cells = [(a, b) for a in range(len(strata)) for b in range(a, len(strata))]
    quotas = np.full(len(cells), num_pairs // len(cells))
    quotas[: num_pairs % len(cells)] += 1
    picked = [_choose_pairs(rng, int(q), strata[a], strata[b]) for (a, b), q in zip(cells, quotas, strict=True)]
    return np.concatenate([p[0] for p in picked]), np.concatenate([p[1] for p in picked])
