"""What the votes themselves allow: oracle references of the vote likelihood that no trained model can beat.

For the three vote categories and fixed thresholds τ_1 < τ_2, each caption's (μ, σ) maps one to one onto its vote
distribution: `(τ_1 − μ)/σ = Φ⁻¹(π_0)` and `(τ_2 − μ)/σ = Φ⁻¹(π_0 + π_1)`. So three nested oracles fitted to a
contest's votes bound what μ and σ can add:

- the contest's own vote distribution (2 parameters: a base rate the model would have to guess for a new contest);
- each caption's μ with one σ for the contest (n + 1 parameters: a perfect ranking with a constant σ);
- each caption's μ and σ (2n parameters, the empirical vote distribution of every caption).

The likelihood-ratio statistics between them (asymptotically χ² with n − 1 degrees of freedom each) test whether the
captions differ in μ, and whether they differ in σ beyond what one σ per contest explains. `(LR − df) / 2` is the
log-likelihood gain left after subtracting what fitting the extra parameters to noise gains on average, so
`(LR − df) / (2 · votes)` estimates, per vote, how much knowing every caption's μ (or, on top, its σ) is worth.

Between "no ranking" and the μ oracle, `ranking_limited_gains` measures what a ranking of a given quality allows: the
oracle μ blurred with noise down to a Kendall τ-b with the crowd mean, then calibrated on the votes.
"""

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np
import torch
from scipy import optimize, stats
from scipy.special import xlogy

from ...losses import ordinal_anchor_nll
from ...metrics import kendall_tau_b
from .pools import CaptionPool
from .statistics import aggregate, shared_distribution_nll, vote_nll

# Kendall τ-b of μ with the crowd mean at which `ranking_limited_gains` traces what a ranking of that quality allows.
RANKING_GRID = (0.05, 0.1, 0.2, 0.3, 0.5)


def fit_shared_std(counts, thresholds: Sequence[float]) -> tuple[np.ndarray, float]:
    """Maximum-likelihood μ per caption and one σ for all of them from vote `counts` `(n, K + 1)`.

    A caption whose votes all fall in the lowest or highest category has no finite μ (its likelihood keeps rising
    towards ±∞); the fit stops where its votes are predicted to within the optimiser's tolerance."""
    counts = torch.as_tensor(np.asarray(counts, dtype=np.float64))
    taus = torch.as_tensor(thresholds, dtype=torch.float64)
    # Start σ at the thresholds' span and each μ where that σ puts the caption's share of votes above the lowest
    # category (clipped: a caption with no such votes has no finite μ).
    std0 = float(taus[-1] - taus[0])
    above = (counts[:, 1:].sum(-1) / counts.sum(-1)).clamp(0.01, 0.99)
    mean0 = taus[0] + std0 * torch.special.ndtri(above)
    mean = mean0.requires_grad_(True)
    log_std = torch.tensor([np.log(std0)], dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS(
        [mean, log_std], max_iter=1000, tolerance_grad=1e-9, tolerance_change=1e-13, line_search_fn="strong_wolfe"
    )

    def closure():
        optimizer.zero_grad()
        loss = ordinal_anchor_nll(mean, log_std.exp().expand_as(mean), taus, counts, normalize=False).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return mean.detach().numpy(), float(log_std.detach().exp())


def contest_ceiling(counts, thresholds: Sequence[float], constant_shares: Sequence[float]) -> dict[str, float]:
    """The oracle references of one contest's vote `counts` `(n, 3)`.

    NLLs are in the study's `vote_nll` unit (each caption's cross-entropy per vote, averaged over captions):
    `constant_nll` (the train captions' vote distribution), `contest_average_nll`, `oracle_mean_nll` (each caption's
    μ, one σ) and `saturated_nll` (each caption's μ and σ). `mean_lr` / `std_lr` are the likelihood-ratio statistics
    (on all votes pooled) of the second against the first oracle and of the third against the second, each with
    `df = n − 1`, their χ² p-values and chance-corrected gains per vote (see the module docstring)."""
    counts = np.asarray(counts, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[1] != 3 or len(thresholds) != 2:
        raise ValueError(f"contest_ceiling needs (n, 3) vote counts and two thresholds, got {counts.shape}.")
    votes, n = float(counts.sum()), len(counts)
    shares = counts / counts.sum(-1, keepdims=True)
    mean, std = fit_shared_std(counts, thresholds)
    std = np.full(n, std)
    as_tensor = partial(torch.as_tensor, dtype=torch.float64)
    # Totals over all votes for the likelihood-ratio tests: the single distribution that maximises their likelihood
    # is the pooled shares; a caption's own (μ, σ) reproduce its shares.
    pooled = counts.sum(0)
    total = {
        "contest": -xlogy(pooled, pooled / votes).sum(),
        "oracle": float(ordinal_anchor_nll(*map(as_tensor, (mean, std, thresholds, counts)), normalize=False).sum()),
        "saturated": -xlogy(counts, shares).sum(),
    }
    # The study's unit weighs captions equally; its best single distribution is the mean of their vote shares.
    out = {
        "constant_nll": shared_distribution_nll(counts, constant_shares),
        "contest_average_nll": shared_distribution_nll(counts, shares.mean(0)),
        "oracle_mean_nll": vote_nll(mean, std, thresholds, counts),
        "saturated_nll": float(np.mean(-xlogy(counts, shares).sum(-1) / counts.sum(-1))),
        "shared_std": float(std[0]),
        "df": n - 1,
        "votes": votes,
    }
    for name, null, alternative in (("mean", "contest", "oracle"), ("std", "oracle", "saturated")):
        lr = float(max(2.0 * (total[null] - total[alternative]), 0.0))
        out[f"{name}_lr"] = lr
        out[f"{name}_p_value"] = float(stats.chi2.sf(lr, n - 1))
        out[f"{name}_gain_per_vote"] = (lr - (n - 1)) / (2.0 * votes)
    return out


def ranking_limited_gains(
    counts, crowd_mean, thresholds: Sequence[float], kendall_taus: Sequence[float], rng, draws: int = 16
) -> list[float]:
    """The vote-NLL gain over the contest's own distribution (study unit) that a μ ranking the captions with each
    Kendall τ-b of `kendall_taus` against `crowd_mean` allows, averaged over `draws` such μ: the oracle μ of
    `fit_shared_std` plus Gaussian noise scaled until its τ-b is the target, then calibrated as well as the votes
    allow (`a + b·μ_noisy` and one σ, fitted to the votes in the study's unit). A τ ≤ 0 carries no ranking: 0."""
    counts = np.asarray(counts, dtype=np.float64)
    mean, std = fit_shared_std(counts, thresholds)
    # Captions without votes above (below) the lowest (highest) category have no finite μ: keep them 3σ outside τ.
    mean = np.clip(mean, thresholds[0] - 3 * std, thresholds[-1] + 3 * std)
    shares = counts / counts.sum(-1, keepdims=True)
    reference = shared_distribution_nll(counts, shares.mean(0))
    gains = []
    for target in kendall_taus:
        signals = _signals_with_tau(mean, crowd_mean, target, rng, draws) if target > 0 else []
        nlls = [_calibrated_nll(signal, counts, thresholds) for signal in signals]
        gains.append(float(reference - np.mean(nlls)) if nlls else 0.0)
    return gains


# Noise bracket (log of its std relative to the oracle μ's): from almost the oracle ranking to almost none.
_MIN_LOG_NOISE, _MAX_LOG_NOISE = -6.0, 6.0


def _signals_with_tau(mean, crowd_mean, target: float, rng, draws: int) -> list[np.ndarray]:
    """Up to `draws` noisy copies `mean + s·z` whose Kendall τ-b with `crowd_mean` is `target` (s by root finding, per
    draw, so every copy ranks exactly as well). A draw whose noise alone ranks better than `target` cannot reach it
    and is replaced by a new one (at most `4 · draws` tries)."""
    signals = []
    for _ in range(4 * draws):
        z = rng.standard_normal(len(mean)) * mean.std()

        def excess(log_scale: float, z=z) -> float:
            return kendall_tau_b(mean + np.exp(log_scale) * z, crowd_mean) - target

        if excess(_MAX_LOG_NOISE) >= 0:
            continue
        if excess(_MIN_LOG_NOISE) <= 0:  # even the oracle's ranking is no better than the target
            log_scale = _MIN_LOG_NOISE
        else:
            log_scale = optimize.brentq(excess, _MIN_LOG_NOISE, _MAX_LOG_NOISE, xtol=1e-4)
        signals.append(mean + np.exp(log_scale) * z)
        if len(signals) == draws:
            break
    return signals


def _calibrated_nll(signal, counts, thresholds) -> float:
    """The lowest `vote_nll` of μ = a + b·signal with one σ (a, b, σ fitted to the votes in that unit, which weighs
    captions equally: the bandit algorithms that collected the votes gave funnier captions many more of them)."""
    # Standardised, so that b is of order one whatever the noise scale; a starts at the pooled votes' probit location.
    signal = (np.asarray(signal, dtype=np.float64) - np.mean(signal)) / np.std(signal)
    votes = torch.as_tensor(counts, dtype=torch.float64)
    taus = torch.as_tensor(thresholds, dtype=torch.float64)
    std0 = float(taus[-1] - taus[0])
    above = float(votes[:, 1:].sum() / votes.sum())
    start = [float(taus[0]) + std0 * float(torch.special.ndtri(torch.tensor(above))), 0.0, float(np.log(std0))]
    params = torch.tensor(start, dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([params], max_iter=1000, tolerance_grad=1e-10, line_search_fn="strong_wolfe")
    x = torch.as_tensor(signal)

    def closure():
        optimizer.zero_grad()
        std = params[2].exp().expand_as(x)
        loss = ordinal_anchor_nll(params[0] + params[1] * x, std, taus, votes, normalize=True).mean()
        loss.backward()
        return loss

    optimizer.step(closure)
    a, b, log_std = params.detach().numpy()
    return vote_nll(a + b * signal, np.full(len(signal), np.exp(log_std)), thresholds, counts)


def vote_ceiling(
    pools: Sequence[CaptionPool],
    thresholds: Sequence[float],
    constant_shares,
    kendall_taus: Mapping[int, float] | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """`contest_ceiling` of each pool's sample captions, their mean ± SE over contests, and the likelihood-ratio
    tests combined over contests (the statistics and degrees of freedom add up: contests are independent).

    With `kendall_taus` (a model's Kendall τ-b per contest), each contest also gets `ranking_limited_gain`, the gain
    over the contest's own distribution that a ranking of that quality allows, and `ranking_gain_<τ>` for the τ of
    `RANKING_GRID` (`ranking_limited_gains`, noise seeded by `(seed, contest, 4)`)."""
    per_contest = {}
    for pool in pools:
        counts = pool.counts[pool.sample]
        per_contest[pool.contest] = contest_ceiling(counts, thresholds, constant_shares)
        if kendall_taus is not None and pool.contest in kendall_taus:
            rng = np.random.default_rng([seed, pool.contest, 4])
            taus = [kendall_taus[pool.contest], *RANKING_GRID]
            gains = ranking_limited_gains(counts, pool.mean[pool.sample], thresholds, taus, rng)
            grid = {f"ranking_gain_{t:g}": g for t, g in zip(RANKING_GRID, gains[1:], strict=True)}
            per_contest[pool.contest].update(ranking_limited_gain=gains[0], **grid)
    combined = {}
    for name in ("mean", "std"):
        lr = sum(c[f"{name}_lr"] for c in per_contest.values())
        df = sum(c["df"] for c in per_contest.values())
        votes = sum(c["votes"] for c in per_contest.values())
        combined[name] = {
            "lr": lr,
            "df": df,
            "p_value": float(stats.chi2.sf(lr, df)),
            "gain_per_vote": (lr - df) / (2.0 * votes),
        }
    return {"per_contest": per_contest, "summary": aggregate(per_contest), "combined": combined}
