"""The base-rate normal N(μ₀, σ₀²) of anchor class shares, checked against scipy's normal CDF."""

import numpy as np
import pytest
from scipy.stats import norm

from trl_anchor.anchor_marginal import class_shares, fit_marginal, fit_std_at_mean, marginal_shares


def _scipy_shares(mean, std, thresholds):
    cdf = norm.cdf((np.asarray(thresholds) - mean) / std)
    return np.diff(np.r_[0.0, cdf, 1.0])


def test_two_thresholds_closed_form_matches_the_shares():
    shares = [0.84, 0.12, 0.04]  # the caption votes' base rate from the issue
    mean, std = fit_marginal(shares, [-1.0, 1.0])
    # hand-worked: q = Φ⁻¹(0.84), Φ⁻¹(0.96); σ₀ = 2 / (q₂ − q₁), μ₀ = −1 − σ₀ q₁
    q1, q2 = norm.ppf(0.84), norm.ppf(0.96)
    assert std == pytest.approx(2.0 / (q2 - q1), rel=1e-9)
    assert mean == pytest.approx(-1.0 - std * q1, rel=1e-9)
    np.testing.assert_allclose(_scipy_shares(mean, std, [-1.0, 1.0]), shares, atol=1e-9)


def test_k_thresholds_recover_a_normal_exactly():
    thresholds = [-1.0, 0.0, 2.0, 2.5]
    shares = _scipy_shares(0.3, 1.7, thresholds)
    mean, std = fit_marginal(shares, thresholds)
    assert (mean, std) == pytest.approx((0.3, 1.7), abs=1e-6)


def test_k_thresholds_fit_maximises_the_share_likelihood():
    thresholds, shares = [-1.0, 0.0, 1.0], np.array([0.1, 0.2, 0.3, 0.4])  # not exactly a normal
    mean, std = fit_marginal(shares, thresholds)

    def cross_entropy(m, s):
        return -(shares * np.log(_scipy_shares(m, s, thresholds))).sum()

    best = cross_entropy(mean, std)
    for dm, ds in [(0.01, 0), (-0.01, 0), (0, 0.01), (0, -0.01)]:
        assert best < cross_entropy(mean + dm, std + ds)


def test_one_threshold_keeps_unit_sigma():
    mean, std = fit_marginal([0.3, 0.7], [0.5])
    assert std == 1.0
    assert mean == pytest.approx(0.5 - norm.ppf(0.3), rel=1e-9)


def test_single_occupied_class_keeps_the_default():
    assert fit_marginal([1.0, 0.0, 0.0], [-1.0, 1.0]) == (0.0, 1.0)


def test_empty_middle_class_gives_a_finite_fit():
    mean, std = fit_marginal([0.5, 0.0, 0.5], [-1.0, 1.0])
    assert np.isfinite(mean) and np.isfinite(std) and std > 10


def test_std_at_fixed_mean_is_the_one_dimensional_optimum():
    shares, thresholds = np.array([0.6, 0.3, 0.1]), [-1.0, 1.0]
    std = fit_std_at_mean(shares, thresholds, 0.0)
    grid = np.linspace(0.2, 10, 20000)
    ce = [-(shares * np.log(_scipy_shares(0.0, s, thresholds))).sum() for s in grid]
    assert std == pytest.approx(grid[int(np.argmin(ce))], abs=1e-3)


def test_marginal_shares_agree_with_scipy():
    np.testing.assert_allclose(marginal_shares(0.2, 0.7, [-1, 0.5]), _scipy_shares(0.2, 0.7, [-1, 0.5]), atol=1e-12)


def test_class_shares_weight_and_normalise_responses():
    counts = np.array([[3, 1, 0], [0, 0, 2], [1, 1, 1], [5, 0, 0]])
    weights = np.array([1.0, 2.0, 0.5, 0.0])  # the last response is not anchored
    # per-response distributions (3/4, 1/4, 0), (0, 0, 1), (1/3, 1/3, 1/3) weighted 1, 2, 0.5
    expected = np.array([0.75 + 0.5 / 3, 0.25 + 0.5 / 3, 2.0 + 0.5 / 3]) / 3.5
    np.testing.assert_allclose(class_shares(counts, weights), expected, rtol=1e-12)
    pooled = np.array([3 + 0.5, 1 + 0.5, 4 + 0.5]) / 9.5  # every vote pooled with its response's weight
    np.testing.assert_allclose(class_shares(counts, weights, normalize=False), pooled, rtol=1e-12)


def test_bad_shares_are_refused():
    with pytest.raises(ValueError, match="3 class shares"):
        fit_marginal([0.5, 0.5], [-1.0, 1.0])
    with pytest.raises(ValueError, match="No anchored response"):
        class_shares(np.ones((2, 3)), np.zeros(2))


def test_grouped_fit_is_the_joint_maximum_likelihood():
    from scipy.optimize import minimize

    from trl_anchor.anchor_marginal import fit_grouped_marginal

    shares = np.array([[0.8, 0.15, 0.05], [0.6, 0.3, 0.1], [0.9, 0.08, 0.02]])
    weights = np.array([1.0, 3.0, 0.5])
    tau = np.array([-1.0, 1.0])

    def nll(x):
        cdf = norm.cdf((tau[None, :] - x[:3, None]) / np.exp(x[3]))
        return -(weights * (shares * np.log(np.diff(np.c_[np.zeros(3), cdf, np.ones(3)], axis=1))).sum(1)).sum()

    fit = minimize(nll, [-2, -2, -2, 0.5], method="Nelder-Mead", options=dict(xatol=1e-10, fatol=1e-13, maxiter=20000))
    mean, std, offsets = fit_grouped_marginal(shares, weights, tau)
    expected_mean = (weights * fit.x[:3]).sum() / weights.sum()
    assert mean == pytest.approx(expected_mean, abs=1e-5) and std == pytest.approx(np.exp(fit.x[3]), rel=1e-5)
    np.testing.assert_allclose(offsets, fit.x[:3] - expected_mean, atol=1e-5)
    # Narrower than one normal for the pooled shares: the group means carry part of the spread.
    assert std < fit_marginal((weights[:, None] * shares).sum(0) / weights.sum(), tau)[1]
    # One group is the ungrouped fit.
    assert fit_grouped_marginal(shares[:1], [2.0], tau)[:2] == pytest.approx(fit_marginal(shares[0], tau))
    with pytest.raises(ValueError, match="one non-negative weight per group"):
        fit_grouped_marginal(shares, [1.0, 1.0], tau)
