"""Rank statistics of `trl_anchor.metrics` against scipy and hand-worked values: Kendall τ-b, the partial rank
correlation and the discrimination AUC."""

import numpy as np
import pytest
from scipy import stats

from trl_anchor.metrics import discrimination_auc, kendall_tau_b, partial_spearman


# ---------------------------------------------------------------------------------------------------- Kendall τ-b
@pytest.mark.parametrize("n, levels, block", [(2, 2, 512), (40, 4, 7), (300, 6, 64), (257, 1000, 512)])
def test_kendall_tau_b_matches_scipy_with_ties(n, levels, block):
    rng = np.random.default_rng(n)
    x = rng.integers(0, levels, n).astype(float)  # few levels: many ties
    y = x + rng.integers(0, levels, n)
    if np.unique(x).size < 2:
        x[0], x[1] = 0.0, 1.0
    expected = stats.kendalltau(x, y, variant="b").statistic
    assert kendall_tau_b(x, y, block=block) == pytest.approx(expected, abs=1e-12)


def test_kendall_tau_b_edge_cases():
    assert kendall_tau_b([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    assert np.isnan(kendall_tau_b([1, 1, 1], [1, 2, 3]))
    with pytest.raises(ValueError, match="got 3 and 2"):
        kendall_tau_b([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="finite"):
        kendall_tau_b([1, np.nan, 3], [1, 2, 3])


# ------------------------------------------------------------------------------------------- partial Spearman
def _residual_correlation(x, y, z, degree):
    """Direct computation: scipy ranks, a polynomial design in the standardised rank of z, numpy least squares."""
    rz = stats.rankdata(z)
    rz = (rz - rz.mean()) / rz.std()
    design = np.vander(rz, degree + 1, increasing=True)

    def residual(v):
        r = stats.rankdata(v)
        return r - design @ np.linalg.lstsq(design, r, rcond=None)[0]

    return np.corrcoef(residual(x), residual(y))[0, 1]


@pytest.mark.parametrize("degree", [1, 3])
def test_partial_spearman_matches_direct_regression(degree):
    rng = np.random.default_rng(degree)
    z = rng.normal(size=500)
    x = z + rng.normal(size=500)
    y = np.round(z**2 + 0.5 * x + rng.normal(size=500), 1)  # ties and a non-monotone link
    assert partial_spearman(x, y, z, degree) == pytest.approx(_residual_correlation(x, y, z, degree), abs=1e-10)


def test_partial_spearman_degree_one_is_the_classic_formula():
    rng = np.random.default_rng(0)
    z = rng.normal(size=400)
    x, y = z + rng.normal(size=400), z + rng.normal(size=400)
    r = stats.spearmanr(np.column_stack([x, y, z])).statistic
    classic = (r[0, 1] - r[0, 2] * r[1, 2]) / np.sqrt((1 - r[0, 2] ** 2) * (1 - r[1, 2] ** 2))
    assert partial_spearman(x, y, z) == pytest.approx(classic, abs=1e-10)


def test_partial_spearman_separates_shared_confounding_from_extra_signal():
    rng = np.random.default_rng(1)
    z = rng.normal(size=3000)
    shared = rng.normal(size=3000)
    confounded = (z + 0.3 * rng.normal(size=3000), z + 0.3 * rng.normal(size=3000))
    linked = (z + shared + 0.3 * rng.normal(size=3000), z + shared + 0.3 * rng.normal(size=3000))
    assert stats.spearmanr(*confounded).statistic > 0.8
    assert abs(partial_spearman(*confounded, z)) < 0.06  # only the control links them
    assert partial_spearman(*linked, z) > 0.7


# --------------------------------------------------------------------------------------------- discrimination
def test_discrimination_auc_hand_made():
    # pairs (3,1) (3,2) (2,1) win, (2,2) ties: 3.5 of 4
    assert discrimination_auc([3.0, 2.0], [1.0, 2.0]) == 0.875
    assert discrimination_auc([0.0], [1.0, 2.0]) == 0.0
    assert discrimination_auc([1.0, 1.0], [1.0]) == 0.5
    with pytest.raises(ValueError, match="at least one"):
        discrimination_auc([], [1.0])
