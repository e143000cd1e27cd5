"""The study's statistics: every metric of one contest's pool under one model's scores, properties of the data no model
changes, and their aggregation over contests (mean ± standard error, paired differences between arms)."""

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from scipy.special import xlogy

from ...data.caption_contest import CaptionContestData, pairwise_soft_labels
from ...losses import ordinal_anchor_nll, ordinal_log_probs
from ...metrics import (
    average_ranks,
    discrimination_auc,
    kendall_tau_b,
    pairwise_metrics,
    partial_spearman,
    rank_residuals,
    spearman,
)
from ...pipelines.evaluation import pair_probabilities
from ...rewards.scoring import RewardScores
from ...rewards.transforms import RewardTransform
from .config import BON_RULES
from .pools import CaptionPool


def contest_metrics(
    pool: CaptionPool,
    scores: RewardScores,
    thresholds: Sequence[float],
    bon: tuple[int, int, int] | None = None,
) -> dict[str, float]:
    """Every metric of the study for one contest's pool (σ metrics, expected vote and vote NLL only for Gaussian
    scores); `bon = (n, draws, seed)` adds the best-of-N gains of `best_of_n_gains`."""
    metrics: dict[str, float] = {}
    chosen, rejected = pool.clear_pairs
    if len(chosen):
        probs = pair_probabilities(_take(scores, chosen), _take(scores, rejected))
        metrics["accuracy_clear"] = float(np.mean((probs > 0.5) + 0.5 * (probs == 0.5)))
    chosen, rejected = pool.random_pairs
    if len(chosen):
        probs = pair_probabilities(_take(scores, chosen), _take(scores, rejected))
        labels = pairwise_soft_labels(pool.counts[chosen], pool.counts[rejected])
        metrics.update(pairwise_metrics(probs, labels))
        metrics["mean_abs_margin"] = float(np.mean(np.abs(probs - 0.5)))  # how far from ½ the model dares to go
    sample = pool.sample
    metrics["kendall_tau"] = kendall_tau_b(scores.mean[sample], pool.mean[sample])
    if len(pool.top) and len(pool.far):
        metrics["top_vs_far_auc"] = discrimination_auc(scores.mean[pool.top], scores.mean[pool.far])
    if scores.variance is not None:
        sigma, spread, crowd = scores.std[sample], pool.spread[sample], pool.mean[sample]
        metrics["sigma_relative_spread"] = float(sigma.std() / sigma.mean())  # 0: one σ for every caption
        metrics["sigma_spearman_spread"] = spearman(sigma, spread)
        metrics["sigma_partial_spread"] = partial_spearman(sigma, spread, crowd, degree=1)
        metrics["sigma_partial_spread_cubic"] = partial_spearman(sigma, spread, crowd, degree=3)
        # Votes of a test contest, a group the model has not seen: anchor classes of N(μ, σ² + s²).
        mean, anchor_std, counts = scores.anchor_mean[sample], scores.anchor_std[sample], pool.counts[sample]
        metrics["vote_nll"] = vote_nll(mean, anchor_std, thresholds, counts)
        metrics["vote_nll_within_gain"] = contest_average_vote_nll(mean, anchor_std, thresholds, counts) - metrics[
            "vote_nll"
        ]
        expected = anchor_transform("expected_class", thresholds, scores)(scores.mean[sample], scores.std[sample])
        metrics["kendall_tau_expected_vote"] = kendall_tau_b(expected, pool.mean[sample])
    if bon is not None:
        metrics.update(best_of_n_gains(pool, scores, thresholds, *bon))
    return metrics


def best_of_n_gains(
    pool: CaptionPool, scores: RewardScores, thresholds: Sequence[float], n: int, draws: int, seed: int
) -> dict[str, float]:
    """Best-of-N over the contest's sample captions: in each of `draws` random sets of `n` captions (the same sets
    for every model, seeded by `(seed, contest)`), each rule of `BON_RULES` picks the caption with the highest
    reward; the gain is `(E[crowd mean of the pick] − E[crowd mean of a random caption]) / (E[best crowd mean of the
    set] − E[random])`: 0 is random choice, 1 the oracle. σ rules only for Gaussian scores. Contests whose sample is
    smaller than `n` have no gains."""
    sample = pool.sample
    if len(sample) < n:
        return {}
    rng = np.random.default_rng([seed, pool.contest, 3])
    sets = np.stack([rng.choice(sample, size=n, replace=False) for _ in range(draws)])
    crowd = pool.mean[sets]
    random_value, oracle_value = crowd.mean(), crowd.max(1).mean()
    if oracle_value <= random_value:  # every caption of every set has the same crowd mean
        return {}
    gains = {}
    for name, spec in BON_RULES.items():
        transform = RewardTransform.parse(spec)
        if transform.needs_std and scores.variance is None:
            continue
        if transform.needs_thresholds:
            transform = anchor_transform(spec, thresholds, scores)
        reward = transform(scores.mean, scores.std)[sets]
        picked = crowd[np.arange(draws), reward.argmax(1)]
        gains[f"bon_gain_{name}"] = float((picked.mean() - random_value) / (oracle_value - random_value))
    return gains


def anchor_transform(spec: str, thresholds: Sequence[float], scores: RewardScores) -> RewardTransform:
    """An `expected_class` / `p_top` transform reading the anchor classes the way `scores` do (their new-group
    variance and mean offset)."""
    return replace(
        RewardTransform.parse(spec),
        thresholds=list(thresholds),
        group_variance=scores.group_variance,
        mean_offset=scores.mean_offset,
    )


def vote_nll(mean, std, thresholds: Sequence[float], counts) -> float:
    """Mean per-vote cross-entropy of vote counts under the ordinal model (`trl_anchor.losses.ordinal_anchor_nll`)."""
    nll = ordinal_anchor_nll(
        torch.as_tensor(mean, dtype=torch.float64),
        torch.as_tensor(std, dtype=torch.float64),
        torch.as_tensor(thresholds, dtype=torch.float64),
        torch.as_tensor(counts, dtype=torch.float64),
        normalize=True,
    )
    return float(nll.mean())


def contest_average_vote_nll(mean, std, thresholds: Sequence[float], counts) -> float:
    """`vote_nll` when every caption is predicted the model's average vote distribution over the captions given.

    Minus `vote_nll`, it is what the model's caption-to-caption differences add within one contest (how it ranks and
    spreads captions); the contest-average prediction itself carries what it learned about the contest's base rate.
    """
    log_probs = ordinal_log_probs(
        torch.as_tensor(mean, dtype=torch.float64),
        torch.as_tensor(std, dtype=torch.float64),
        torch.as_tensor(thresholds, dtype=torch.float64),
    )
    return shared_distribution_nll(counts, log_probs.exp().mean(0).numpy())


def data_properties(pool: CaptionPool) -> dict[str, float]:
    """Properties of one contest's pool that no model changes: how much the vote spread is a function of the crowd
    mean (Spearman correlation; share of the spread's rank variance that a cubic in the mean's rank explains), and the
    references of the calibration metrics on its random pairs (the soft labels' entropy is the lowest reachable soft
    cross-entropy; always predicting ½ scores ln 2 and `brier_of_half`)."""
    spread, crowd = pool.spread[pool.sample], pool.mean[pool.sample]
    ranks = average_ranks(spread)
    residual = rank_residuals(spread, crowd, degree=3)
    chosen, rejected = pool.random_pairs
    labels = np.clip(pairwise_soft_labels(pool.counts[chosen], pool.counts[rejected]), 1e-12, 1 - 1e-12)
    return {
        # Floors and coin-flip references of the calibration metrics on these pairs.
        "soft_label_entropy": float(np.mean(-(labels * np.log(labels) + (1 - labels) * np.log1p(-labels)))),
        "brier_of_half": float(np.mean((labels - 0.5) ** 2)),
        "label_abs_margin": float(np.mean(np.abs(labels - 0.5))),
        "spread_mean_spearman": spearman(spread, crowd),
        "spread_r2_cubic": float(1.0 - residual.var() / ranks.var()) if ranks.var() > 0 else float("nan"),
        "sample_captions": len(pool.sample),
        "clear_pairs": len(pool.clear_pairs[0]),
        "random_pairs": len(pool.random_pairs[0]),
        "mean_votes": float(pool.counts[pool.sample].sum(1).mean()),
    }


def _take(scores: RewardScores, rows: np.ndarray) -> RewardScores:
    variance = None if scores.variance is None else scores.variance[rows]
    return replace(scores, mean=scores.mean[rows], variance=variance)


def aggregate(per_contest: dict[int, dict[str, float]]) -> dict[str, dict[str, float | int | None]]:
    """Mean over contests and its standard error (sample std / √n; NaN values left out and counted)."""
    names = sorted({name for metrics in per_contest.values() for name in metrics})
    summary = {}
    for name in names:
        values = np.array([m[name] for m in per_contest.values() if name in m], dtype=np.float64)
        finite = values[np.isfinite(values)]
        summary[name] = {
            "mean": float(finite.mean()) if finite.size else None,
            "se": float(finite.std(ddof=1) / np.sqrt(finite.size)) if finite.size > 1 else None,
            "n": int(finite.size),
            "nan": int(values.size - finite.size),
        }
    return summary


def seed_average(per_contest_runs: Sequence[dict[int, dict[str, float]]]) -> dict[int, dict[str, float]]:
    """Per contest, the mean of each metric over the runs of one arm with different training seeds (a metric that is
    not finite in every run is left out), so the contest stays the unit of the statistics."""
    out = {}
    for contest in per_contest_runs[0]:
        runs = [run[contest] for run in per_contest_runs if contest in run]
        names = set.intersection(*(set(m) for m in runs))
        values = {name: np.array([m[name] for m in runs], dtype=np.float64) for name in sorted(names)}
        out[contest] = {name: float(v.mean()) for name, v in values.items() if np.isfinite(v).all()}
    return out


def paired_difference(a: dict[int, dict[str, float]], b: dict[int, dict[str, float]], metric: str) -> dict | None:
    """Mean over contests of `a − b` for `metric` with its standard error (contests where both are finite)."""
    diffs = np.array([a[c][metric] - b[c][metric] for c in a if c in b and metric in a[c] and metric in b[c]])
    diffs = diffs[np.isfinite(diffs)]
    if diffs.size < 2:
        return None
    return {"mean": float(diffs.mean()), "se": float(diffs.std(ddof=1) / np.sqrt(diffs.size)), "n": int(diffs.size)}


def t_critical(n: int, level: float = 0.95) -> float:
    """Two-sided Student-t quantile for a mean over `n` contests (n − 1 degrees of freedom): with 9 test contests a
    difference must exceed 2.31 standard errors, not 2, to be significant at 5%."""
    from scipy.stats import t

    if n < 2:
        return float("nan")
    return float(t.ppf(0.5 + level / 2, n - 1))


def t_test(diff: dict | None) -> float | None:
    """Two-sided p-value of a paired difference `{"mean", "se", "n"}` over contests (t with n − 1 d.o.f.)."""
    from scipy.stats import t

    if not diff or diff.get("n", 0) < 2 or diff["se"] is None:
        return None
    if diff["se"] == 0:
        return 0.0 if diff["mean"] != 0 else 1.0
    return float(2 * t.sf(abs(diff["mean"] / diff["se"]), diff["n"] - 1))


def holm(p_values: dict[str, float | None]) -> dict[str, float | None]:
    """Holm's step-down adjustment of several p-values (the family-wise error stays at the nominal level however many
    comparisons a table makes); `None` entries are left out and stay `None`.

    Example:

    ```python
    >>> holm({"a": 0.01, "b": 0.04, "c": 0.03})
    {'a': 0.03, 'b': 0.06, 'c': 0.06}
    ```
    """
    present = sorted((p, k) for k, p in p_values.items() if p is not None)
    adjusted: dict[str, float | None] = dict.fromkeys(p_values)
    running = 0.0
    for rank, (p, key) in enumerate(present):
        running = max(running, min(1.0, (len(present) - rank) * p))
        adjusted[key] = round(running, 12)
    return adjusted


def lambda_comparison(runs: dict[str, dict], lambdas: Sequence[float], run_name) -> dict[str, Any]:
    """The λ choice on validation: the λ with the lowest mean soft cross-entropy over the validation contests, and its
    paired difference to the runner-up. The choice is `decisive` only when it beats the runner-up by more than one
    standard error of that difference; otherwise the validation data cannot tell them apart (a tie)."""
    per_contest = {lam: runs[run_name(lam)]["validation"]["per_contest"] for lam in lambdas}
    means = {lam: runs[run_name(lam)]["validation"]["summary"]["soft_ce"]["mean"] for lam in lambdas}
    ranked = sorted(lambdas, key=lambda lam: (means[lam], lam))
    best = ranked[0]
    out = {"anchor_lambda": best, "runner_up": None, "difference": None, "decisive": True}
    if len(ranked) > 1:
        diff = paired_difference(per_contest[ranked[1]], per_contest[best], "soft_ce")
        out.update(runner_up=ranked[1], difference=diff)
        out["decisive"] = diff is not None and diff["mean"] > diff["se"]
    return out


def constant_vote_distribution(data: CaptionContestData, contests: Sequence[int], min_votes: int) -> np.ndarray:
    """The caption-independent prediction that minimises the mean per-vote cross-entropy on the train contests: the
    average vote distribution of their captions with at least `min_votes` votes (the population evaluated)."""
    shares = [
        table.counts[table.votes >= min_votes] / table.votes[table.votes >= min_votes, None]
        for table in (data.tables[c] for c in contests)
    ]
    return np.concatenate(shares).mean(0)


def constant_vote_nll_per_contest(pools: Sequence[CaptionPool], shares: Sequence[float]) -> dict[int, float]:
    """Reference for `vote_nll`, per contest: every sample caption predicted to get the vote distribution `shares`."""
    return {pool.contest: shared_distribution_nll(pool.counts[pool.sample], shares) for pool in pools}


def shared_distribution_nll(counts, shares) -> float:
    """Mean over captions of the per-vote cross-entropy of each caption's vote `counts` under one distribution (a
    category without votes costs nothing, also where `shares` gives it probability 0)."""
    counts = np.asarray(counts, dtype=np.float64)
    return float(np.mean(-xlogy(counts, np.asarray(shares, dtype=np.float64)).sum(1) / counts.sum(1)))


def constant_vote_nll(pools: Sequence[CaptionPool], shares: Sequence[float]) -> float:
    """`constant_vote_nll_per_contest` averaged over the contests (as every metric of the study)."""
    return float(np.mean(list(constant_vote_nll_per_contest(pools, shares).values())))
