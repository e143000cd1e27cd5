"""The exact best-of-n estimator against brute-force enumeration, and the selection policies."""

import itertools
import math

import numpy as np
import pytest

from trl_anchor.pipelines.best_of_n import best_of_n_curve, best_of_n_expectation, best_of_n_weights, policy_scores
from trl_anchor.rewards.transforms import RewardTransform


# ------------------------------------------------------------------------------------------------ estimator
def brute_force_best_of_n(scores, values, n):
    """Average over every n-subset of the value of its top-scored item, ties broken uniformly at random."""
    results = []
    for subset in itertools.combinations(range(len(scores)), n):
        top = max(scores[i] for i in subset)
        results.append(np.mean([values[i] for i in subset if scores[i] == top]))
    return float(np.mean(results))


@pytest.mark.parametrize("pool_size", [1, 2, 5, 8])
@pytest.mark.parametrize("levels", [None, 3, 1])  # distinct scores, heavy ties, all tied
def test_estimator_matches_enumeration_of_all_subsets(pool_size, levels):
    rng = np.random.default_rng(pool_size * 10 + (levels or 0))
    scores = rng.normal(size=pool_size) if levels is None else rng.integers(0, levels, pool_size).astype(float)
    values = rng.normal(size=pool_size)
    curve = best_of_n_curve(scores, values)
    expected = [brute_force_best_of_n(scores, values, n) for n in range(1, pool_size + 1)]
    np.testing.assert_allclose(curve, expected, rtol=0, atol=1e-12)


def test_estimator_on_many_pools_and_selected_ns():
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 4, (6, 7)).astype(float)
    values = rng.normal(size=(6, 7))
    curves = best_of_n_curve(scores, values, ns=[1, 3, 7])
    for pool in range(6):
        expected = [brute_force_best_of_n(scores[pool], values[pool], n) for n in (1, 3, 7)]
        np.testing.assert_allclose(curves[pool], expected, atol=1e-12)
    np.testing.assert_allclose(best_of_n_expectation(scores, values, 3), curves[:, 1])


def test_weights_are_the_binomial_ratios_and_sum_to_one():
    for pool_size, n in [(10, 1), (10, 4), (10, 10), (3000, 17)]:
        weights = best_of_n_weights(pool_size, n)
        assert weights.sum() == pytest.approx(1.0, abs=1e-9)
        if pool_size <= 10:
            exact = [math.comb(i - 1, n - 1) / math.comb(pool_size, n) for i in range(1, pool_size + 1)]
            np.testing.assert_allclose(weights, exact, rtol=1e-12)
    with pytest.raises(ValueError, match="n must lie"):
        best_of_n_weights(4, 5)


def test_estimator_rejects_bad_inputs():
    with pytest.raises(ValueError, match="same shape"):
        best_of_n_curve([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="finite"):
        best_of_n_curve([1.0, float("nan")], [1.0, 2.0])


# ------------------------------------------------------------------------------------------------ policies
def test_policies_use_the_reward_transforms():
    mean, std = np.array([[1.0, 1.2, 0.5]]), np.array([[0.1, 1.0, 0.2]])
    expected = RewardTransform.parse("quantile:0.1")(mean.ravel(), std.ravel()).reshape(1, 3)
    np.testing.assert_allclose(policy_scores("quantile:0.1", mean, std), expected)
    assert policy_scores("mean", mean, std).argmax() == 1
    assert policy_scores("lcb:1.0", mean, std).argmax() == 0
    assert np.all(policy_scores("random", mean, std) == 0)
    draws = policy_scores("random_quantile:0.05:0.5", mean, std, seed=3)
    np.testing.assert_array_equal(draws, policy_scores("random_quantile:0.05:0.5", mean, std, seed=3))
    with pytest.raises(ValueError, match="needs σ"):
        policy_scores("lcb:1.0", mean, None)
    with pytest.raises(ValueError, match="gold"):
        policy_scores("oracle", mean, std)
