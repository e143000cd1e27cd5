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
"""

from collections.abc import Sequence
from functools import partial
from typing import Any

import numpy as np
import torch
from scipy import stats
from scipy.special import xlogy

from ...losses import ordinal_anchor_nll
from .pools import CaptionPool
from .statistics import aggregate, shared_distribution_nll, vote_nll


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


def vote_ceiling(pools: Sequence[CaptionPool], thresholds: Sequence[float], constant_shares) -> dict[str, Any]:
    """`contest_ceiling` of each pool's sample captions, their mean ± SE over contests, and the likelihood-ratio
    tests combined over contests (the statistics and degrees of freedom add up: contests are independent)."""
    per_contest = {
        pool.contest: contest_ceiling(pool.counts[pool.sample], thresholds, constant_shares) for pool in pools
    }
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
