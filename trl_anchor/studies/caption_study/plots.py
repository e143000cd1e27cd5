"""Figures of the caption study: the four arms, the ablations, σ against the vote spread, μ against the crowd mean, and
the vote-likelihood gain that rankings of each quality allow."""

from pathlib import Path
from typing import Any

import numpy as np

from ...metrics import rank_residuals
from .config import ARM_LABELS, ARMS, METRICS, ablation_runs

ARM_FIGURE, ABLATION_FIGURE, SIGMA_FIGURE, MU_FIGURE = "arms.png", "ablations.png", "sigma_vs_spread.png", "mu.png"
CEILING_FIGURE = "ranking_limit.png"
_ARM_COLORS = {"trl_bt": "tab:green", "bt": "tab:gray", "gaussian": "tab:orange", "gaussian+anchors": "tab:blue"}
_PLOT_TITLES = {"sigma_partial_spread": "partial ρ(σ, vote spread) given mean"}


def _figure(rows: int, cols: int, size: tuple[float, float]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows, cols, figsize=size, squeeze=False)
    return plt, fig, axes


def _save(plt, fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_arms(results: dict[str, Any], path: Path) -> None:
    """Bar chart of the main metrics for the four arms, ± standard error over test contests."""
    shown = ["accuracy_clear", "soft_ce", "kendall_tau", "top_vs_far_auc", "bon_gain_mean", "vote_nll"]
    plt, fig, axes = _figure(2, 3, (11, 6.2))
    for ax, metric in zip(axes.flat, shown, strict=True):
        arms = [a for a in ARMS if results["summary"][a].get(metric, {}).get("mean") is not None]
        for arm in arms:
            stats = results["summary"][arm][metric]
            ax.errorbar(
                ARMS.index(arm),
                stats["mean"],
                yerr=stats["se"] or 0.0,
                fmt="o",
                color=_ARM_COLORS[arm],
                capsize=5,
                markersize=7,
            )
        labels = [ARM_LABELS[a].replace(" + ", "\n+ ").replace(", ", ",\n") for a in ARMS]
        ax.set_xticks(range(len(ARMS)), labels, fontsize=7)
        ax.set_xlim(-0.5, len(ARMS) - 0.5)
        if metric == "soft_ce":
            ax.axhline(np.log(2), color="black", linestyle=":", linewidth=1, label="always ½ (ln 2)")
            ax.legend(fontsize=7)
        if metric == "vote_nll":
            reference = results["data"]["constant_vote_nll"]
            ax.axhline(reference, color="black", linestyle=":", linewidth=1, label="constant vote distribution")
            ax.legend(fontsize=7)
        label, better = METRICS[metric]
        ax.set_title(f"{_PLOT_TITLES.get(metric, label)}\n({better} is better)", fontsize=9)
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(
        f"Held-out caption contests (n = {len(results['data']['pools']['test'])}), mean ± SE over contests",
        fontsize=10,
    )
    _save(plt, fig, path)


def plot_ablations(results: dict[str, Any], path: Path) -> None:
    """Test metrics against λ (full anchor coverage) and against the anchor fraction (chosen λ), with the BT and
    no-anchor Gaussian arms as reference lines."""
    shown = ["kendall_tau", "soft_ce", "accuracy_clear", "sigma_partial_spread"]
    plt, fig, axes = _figure(2, len(shown), (12, 5.6))
    rows = ablation_runs(results)
    for r, axis in enumerate(("lambda", "fraction")):
        points = sorted((x, name) for name, a, x in rows if a == axis)
        for c, metric in enumerate(shown):
            ax = axes[r, c]
            stats = [results["runs"][name]["test"]["summary"].get(metric, {}) for _, name in points]
            xs = [x for x, _ in points]
            ax.errorbar(
                xs,
                [s.get("mean") for s in stats],
                yerr=[s.get("se") or 0.0 for s in stats],
                marker="o",
                color=_ARM_COLORS["gaussian+anchors"],
                capsize=3,
                label="anchored",
            )
            for arm in ("bt", "gaussian"):
                value = results["runs"][arm]["test"]["summary"].get(metric, {}).get("mean")
                if value is not None:
                    ax.axhline(value, color=_ARM_COLORS[arm], linestyle="--", label=ARM_LABELS[arm])
            if axis == "lambda":
                ax.set_xscale("log")
                ax.minorticks_off()
            ax.ticklabel_format(axis="y", useOffset=False)
            ax.set_xlabel(
                "anchor λ (100% anchored)"
                if axis == "lambda"
                else f"anchor fraction (λ = {results['selection']['anchor_lambda']:g})",
                fontsize=8,
            )
            ax.set_title(_PLOT_TITLES.get(metric, METRICS[metric][0]), fontsize=9)
            ax.set_xticks(xs, [f"{x:g}" for x in xs])
            if r == 0 and c == 0:
                ax.legend(fontsize=7)
    fig.suptitle("Ablations on the held-out contests (mean ± SE over contests)", fontsize=10)
    _save(plt, fig, path)


def plot_sigma(results: dict[str, Any], arrays: dict[str, Any], path: Path) -> None:
    """Left: the vote spread against the crowd mean (nearly a function of it). Right: rank residuals of σ and of the
    spread after removing the crowd mean, per contest (the partial correlation), for the two Gaussian arms."""
    pools = arrays["pools"]
    plt, fig, axes = _figure(1, 3, (13, 4.2))
    crowd = np.concatenate([p.mean[p.sample] for p in pools])
    spread = np.concatenate([p.spread[p.sample] for p in pools])
    axes[0, 0].scatter(crowd, spread, s=4, alpha=0.4, color="black")
    axes[0, 0].set_xlabel("crowd mean vote (1–3)")
    axes[0, 0].set_ylabel("vote spread (std of votes)")
    axes[0, 0].set_title("the data: spread vs mean", fontsize=9)
    for ax, arm in zip(axes[0, 1:], ("gaussian", "gaussian+anchors"), strict=True):
        name = results["headline"][arm]
        rx, ry = [], []
        for pool, score in zip(pools, arrays["scores"][name], strict=True):
            s = pool.sample
            rx.append(rank_residuals(score.std[s], pool.mean[s]) / len(s))
            ry.append(rank_residuals(pool.spread[s], pool.mean[s]) / len(s))
        ax.scatter(np.concatenate(ry), np.concatenate(rx), s=4, alpha=0.4, color=_ARM_COLORS[arm])
        stat = results["runs"][name]["test"]["summary"]["sigma_partial_spread"]
        ax.set_title(f"{ARM_LABELS[arm]}: partial ρ = {stat['mean']:.3f} ± {stat['se'] or 0:.3f}", fontsize=9)
        ax.set_xlabel("spread rank | crowd mean (residual)")
        ax.set_ylabel("σ rank | crowd mean (residual)")
    _save(plt, fig, path)


def plot_mu(results: dict[str, Any], arrays: dict[str, Any], path: Path) -> None:
    """μ of each arm against the crowd mean vote for the sampled test captions (each contest's μ centred)."""
    pools = arrays["pools"]
    plt, fig, axes = _figure(1, len(ARMS), (4.4 * len(ARMS), 4.0))
    for ax, arm in zip(axes[0], ARMS, strict=True):
        name = results["headline"][arm]
        for pool, score in zip(pools, arrays["scores"][name], strict=True):
            mu = score.mean[pool.sample]
            ax.scatter(pool.mean[pool.sample], mu - mu.mean(), s=3, alpha=0.35, color=_ARM_COLORS[arm])
        stat = results["summary"][arm]["kendall_tau"]
        ax.set_title(f"{ARM_LABELS[arm]}: Kendall τ-b = {stat['mean']:.3f} ± {stat['se'] or 0:.3f}", fontsize=9)
        ax.set_xlabel("crowd mean vote (1–3)")
        ax.set_ylabel("μ − contest mean of μ")
    _save(plt, fig, path)


def plot_ranking_limit(results: dict[str, Any], path: Path) -> None:
    """The within-contest vote-NLL gain a ranking of each Kendall τ-b allows (`ceiling.ranking_limited_gains`, ± SE
    over test contests), with the anchored arm's τ and gain (nothing is drawn for a run without them)."""
    test = (results["data"].get("vote_ceiling") or {}).get("test", {})
    summary = test.get("summary", {})
    grid = sorted(float(k.removeprefix("ranking_gain_")) for k in summary if k.startswith("ranking_gain_"))
    anchored = results["summary"]["gaussian+anchors"]
    if not grid or not anchored.get("vote_nll_within_gain"):
        return
    plt, fig, axes = _figure(1, 1, (6.4, 4.2))
    ax = axes[0, 0]
    stats = [summary[f"ranking_gain_{t:g}"] for t in grid]
    mean = np.array([s["mean"] for s in stats])
    se = np.array([s["se"] or 0.0 for s in stats])
    ax.plot(grid, mean, "o-", color="tab:gray", label="oracle μ + noise at that τ, calibrated on the votes")
    ax.fill_between(grid, mean - se, mean + se, color="tab:gray", alpha=0.25)
    tau, within = anchored["kendall_tau"], anchored["vote_nll_within_gain"]
    ax.errorbar(
        tau["mean"], within["mean"], xerr=tau["se"], yerr=within["se"], fmt="s", color=_ARM_COLORS["gaussian+anchors"],
        label=ARM_LABELS["gaussian+anchors"],
    )
    ax.axhline(0.0, color="black", lw=0.8)
    ax.set_xlabel("Kendall τ-b of μ with the crowd mean")
    ax.set_ylabel("within-contest vote NLL gain (nats per vote)")
    ax.set_title("What a ranking of each quality allows (test contests)")
    ax.legend(fontsize=8)
    _save(plt, fig, path)
