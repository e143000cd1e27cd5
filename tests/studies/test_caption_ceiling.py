"""The vote-likelihood oracles of the caption study, against probabilities and entropies computed with scipy."""

import numpy as np
import pytest
from scipy import stats

from trl_anchor.studies.caption_study.ceiling import (
    contest_ceiling,
    fit_shared_std,
    ranking_limited_gains,
    vote_ceiling,
)
from trl_anchor.studies.caption_study.pools import CaptionPool

TAUS = [-1.0, 1.0]


def _shares(mean, std):
    """Vote shares of the three categories under N(mean, std²) cut at TAUS (scipy)."""
    low = stats.norm.cdf((TAUS[0] - np.asarray(mean)) / std)
    mid = stats.norm.cdf((TAUS[1] - np.asarray(mean)) / std) - low
    return np.stack([low, mid, 1 - low - mid], axis=-1)


def _cross_entropy(counts, shares):
    counts = np.asarray(counts, dtype=np.float64)
    return -(counts * np.log(shares)).sum(-1) / counts.sum(-1)


def test_shared_std_fit_recovers_the_generating_parameters():
    # Counts proportional to the exact shares: the maximum-likelihood fit is the generating (μ, σ).
    mean, std = np.array([-3.0, -1.5, 0.2, 1.4]), 1.7
    counts = 1e4 * _shares(mean, std)
    fitted_mean, fitted_std = fit_shared_std(counts, TAUS)
    assert fitted_std == pytest.approx(std, abs=1e-5)
    np.testing.assert_allclose(fitted_mean, mean, atol=1e-5)


def test_a_contest_with_one_sigma_has_no_sigma_signal_and_a_strong_mean_signal():
    mean = np.linspace(-3.0, 0.5, 12)
    counts = 500 * _shares(mean, 2.0)
    constant = [0.8, 0.15, 0.05]
    out = contest_ceiling(counts, TAUS, constant)
    # One σ explains the votes exactly: per-caption σ adds nothing, the LR statistic is 0 and p is 1.
    assert out["std_lr"] == pytest.approx(0.0, abs=1e-5)
    assert out["std_p_value"] == pytest.approx(1.0, abs=1e-6)
    assert out["std_gain_per_vote"] == pytest.approx(-11 / (2 * counts.sum()), abs=1e-8)
    assert out["shared_std"] == pytest.approx(2.0, abs=1e-5)
    # Reference NLLs in the study's unit (each caption's cross-entropy per vote, averaged over captions).
    shares = counts / counts.sum(-1, keepdims=True)
    entropy = stats.entropy(shares, axis=-1).mean()
    assert out["saturated_nll"] == pytest.approx(entropy, abs=1e-9)
    assert out["oracle_mean_nll"] == pytest.approx(entropy, abs=1e-7)
    assert out["constant_nll"] == pytest.approx(_cross_entropy(counts, constant).mean(), abs=1e-12)
    assert out["contest_average_nll"] == pytest.approx(_cross_entropy(counts, shares.mean(0)).mean(), abs=1e-12)
    # μ differs a lot between these captions: the pooled single distribution loses 2 × votes × KL to the truth.
    pooled = counts.sum(0) / counts.sum()
    kl = (counts * np.log(shares / pooled)).sum()
    assert out["mean_lr"] == pytest.approx(2 * kl, rel=1e-6)
    assert out["mean_p_value"] == pytest.approx(stats.chi2.sf(2 * kl, 11), rel=1e-6, abs=1e-300)
    assert out["df"] == 11


def test_captions_that_differ_in_sigma_are_detected():
    # Same μ, σ 0.6 or 3: one σ cannot fit both halves.
    counts = 400 * np.concatenate([_shares(np.full(5, -0.5), 0.6), _shares(np.full(5, -0.5), 3.0)])
    out = contest_ceiling(counts, TAUS, [0.6, 0.3, 0.1])
    assert out["std_p_value"] < 1e-10
    assert out["std_gain_per_vote"] > 0.01
    # The saturated model reproduces every caption's shares; the shared-σ oracle is strictly worse.
    assert out["oracle_mean_nll"] > out["saturated_nll"] + 0.01


def test_a_caption_without_votes_in_a_category_costs_nothing_there():
    counts = np.array([[30.0, 0.0, 0.0], [10.0, 10.0, 5.0], [5.0, 10.0, 10.0]])
    out = contest_ceiling(counts, TAUS, [0.7, 0.2, 0.1])
    shares = counts / counts.sum(-1, keepdims=True)
    assert out["saturated_nll"] == pytest.approx(stats.entropy(shares, axis=-1).mean(), abs=1e-12)
    assert all(np.isfinite(v) for v in out.values())


def test_vote_ceiling_adds_the_tests_over_contests():
    rng = np.random.default_rng(0)
    pools = []
    for contest in (1, 2):
        counts = rng.multinomial(100, [0.7, 0.2, 0.1], size=8).astype(float)
        pools.append(_pool(contest, counts))
    out = vote_ceiling(pools, TAUS, [0.7, 0.2, 0.1])
    per = out["per_contest"]
    for name in ("mean", "std"):
        lr = per[1][f"{name}_lr"] + per[2][f"{name}_lr"]
        assert out["combined"][name]["lr"] == pytest.approx(lr)
        assert out["combined"][name]["df"] == 14
        assert out["combined"][name]["p_value"] == pytest.approx(stats.chi2.sf(lr, 14))
        assert out["combined"][name]["gain_per_vote"] == pytest.approx((lr - 14) / (2 * 1600))
    assert out["summary"]["oracle_mean_nll"]["n"] == 2


def _pool(contest, counts):
    n = len(counts)
    empty = np.zeros(0, dtype=np.int64)
    return CaptionPool(
        contest=contest,
        prompt="",
        captions=[f"c{i}" for i in range(n)],
        counts=counts,
        mean=np.zeros(n),
        se=np.zeros(n),
        sample=np.arange(n),
        top=empty,
        far=empty,
        random_pairs=(empty, empty),
        clear_pairs=(empty, empty),
        report=None,
    )


def test_wrong_shapes_are_rejected():
    with pytest.raises(ValueError, match="vote counts"):
        contest_ceiling(np.ones((4, 4)), [-1.0, 0.0, 1.0], [0.25] * 4)


def test_a_ranking_as_good_as_the_oracle_reaches_the_oracle_gain_and_worse_rankings_gain_less():
    mean = np.linspace(-2.5, 1.5, 40)
    counts = 2000 * _shares(mean, 1.5)
    shares = counts / counts.sum(-1, keepdims=True)
    crowd_mean = shares @ np.array([1.0, 2.0, 3.0])
    # The most the votes allow: from the contest's own distribution to each caption's exact one (scipy).
    oracle_gain = _cross_entropy(counts, shares.mean(0)).mean() - stats.entropy(shares, axis=-1).mean()
    gains = ranking_limited_gains(counts, crowd_mean, TAUS, [0.999, 0.5, 0.2, 0.0, -0.1], np.random.default_rng(0))
    assert gains[0] == pytest.approx(oracle_gain, rel=0.02)
    assert gains[0] > gains[1] > gains[2] > 0.0
    # No ranking, no gain.
    assert gains[3] == gains[4] == 0.0


def test_a_weak_ranking_calibrated_on_equal_caption_weights_never_loses_to_the_contest_average():
    # Funnier captions got many more votes (as bandit sampling does): calibration weighs captions equally, as the
    # study's vote NLL does, so even a weak ranking cannot fall below the contest-average prediction.
    rng = np.random.default_rng(1)
    mean = np.sort(rng.normal(-2.0, 1.0, 60))
    votes = np.where(mean > np.quantile(mean, 0.8), 600, 25)
    counts = np.stack([rng.multinomial(v, p) for v, p in zip(votes, _shares(mean, 2.0), strict=True)]).astype(float)
    crowd_mean = (counts / counts.sum(-1, keepdims=True)) @ np.array([1.0, 2.0, 3.0])
    gains = ranking_limited_gains(counts, crowd_mean, TAUS, [0.05, 0.1], np.random.default_rng(2), draws=4)
    assert min(gains) >= -1e-6
