"""Best-of-n curves and their report: per policy and metric, the mean over pools of the exact best-of-n value for every
n ≤ N with its standard error, the paired gain over `random`, a markdown table and a PNG figure."""

import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .estimator import best_of_n_curve
from .selection import REFERENCE_POLICIES


@dataclass
class BestOfNCurve:
    """A policy's best-of-n curve: mean over pools (prompts/contests) and its standard error, per n."""

    mean: list[float]
    se: list[float]

    @classmethod
    def from_pools(cls, per_pool: np.ndarray) -> "BestOfNCurve":
        count = per_pool.shape[0]
        se = per_pool.std(0, ddof=1) / math.sqrt(count) if count > 1 else np.zeros(per_pool.shape[1])
        return cls(mean=per_pool.mean(0).tolist(), se=se.tolist())


@dataclass
class BestOfNReport:
    """Best-of-n curves per policy for one or more metrics (e.g. `gold`, `proxy` = the reward model's μ).

    `vs_random[metric][policy]` is the curve of the per-pool difference policy − random: its standard error is the
    paired one, much smaller than the spread between pools that every policy shares.
    """

    ns: list[int]
    num_pools: int
    pool_size: int
    curves: dict[str, dict[str, BestOfNCurve]]  # metric -> policy -> curve
    vs_random: dict[str, dict[str, BestOfNCurve]] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)

    def value(self, metric: str, policy: str, n: int | None = None) -> float:
        n = self.pool_size if n is None else n
        return self.curves[metric][policy].mean[self.ns.index(n)]

    def to_dict(self) -> dict[str, Any]:
        def as_dicts(table):
            return {metric: {p: asdict(c) for p, c in by_policy.items()} for metric, by_policy in table.items()}

        return {"ns": self.ns, "num_pools": self.num_pools, "pool_size": self.pool_size,
                "curves": as_dicts(self.curves), "vs_random": as_dicts(self.vs_random), "metadata": self.metadata}

    def to_markdown(self, metric: str, title: str, max_columns: int = 8) -> str:
        """A table of `metric` at n = 1, 2, 4, ..., N (± standard error over pools), plus the gain over `random` at
        n = N (± paired standard error)."""
        shown = log_grid(self.pool_size, max_columns)
        deltas = self.vs_random.get(metric, {})
        header = ["policy", *(f"n={n}" for n in shown)]
        if deltas:
            header.append(f"vs random @ n={self.pool_size}")
        lines = [f"### {title}", "", "| " + " | ".join(header) + " |", "|---" * len(header) + "|"]
        for policy, curve in self.curves[metric].items():
            cells = [f"{curve.mean[self.ns.index(n)]:.4f} ± {curve.se[self.ns.index(n)]:.4f}" for n in shown]
            if deltas:
                cells.append(f"{deltas[policy].mean[-1]:+.4f} ± {deltas[policy].se[-1]:.4f}")
            lines.append(f"| {policy} | " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"


def log_grid(pool_size: int, max_points: int = 8) -> list[int]:
    """n = 1, 2, 4, ... up to N (always including N), thinned to at most `max_points` values."""
    grid = sorted({2**k for k in range(int(math.log2(pool_size)) + 1)} | {pool_size})
    if len(grid) > max_points:
        keep = np.unique(np.linspace(0, len(grid) - 1, max_points).round().astype(int))
        grid = [grid[i] for i in keep]
    return grid


def best_of_n_report(
    selection: dict[str, np.ndarray], metrics: dict[str, np.ndarray], metadata: dict[str, Any] | None = None
) -> BestOfNReport:
    """Curves of every metric (values `(num_pools, N)`) for every policy (selection scores `(num_pools, N)`), and of
    each policy's per-pool difference to `random` when that policy is present."""
    num_pools, pool_size = next(iter(metrics.values())).shape
    ns = list(range(1, pool_size + 1))
    curves, vs_random = {}, {}
    for metric, values in metrics.items():
        per_pool = {policy: best_of_n_curve(scores, values, ns) for policy, scores in selection.items()}
        curves[metric] = {policy: BestOfNCurve.from_pools(c) for policy, c in per_pool.items()}
        if "random" in per_pool:
            vs_random[metric] = {p: BestOfNCurve.from_pools(c - per_pool["random"]) for p, c in per_pool.items()}
    return BestOfNReport(ns, num_pools, pool_size, curves, vs_random, metadata or {})


def plot_best_of_n(
    report: BestOfNReport,
    path: str | os.PathLike,
    panels: Sequence[tuple[str, str]],
    title: str | None = None,
    xlabel: str = "n (candidates per prompt)",
) -> Path:
    """Save a PNG of best-of-n curves: one panel per `(metric, y label)`, x = n on a log scale, one labelled line per
    policy with a ±1 standard-error band; `random` and `oracle` are drawn dashed as references."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(6.0 * len(panels), 4.5), squeeze=False)
    ns = np.asarray(report.ns)
    for ax, (metric, ylabel) in zip(axes[0], panels, strict=True):
        for policy, curve in report.curves[metric].items():
            mean, se = np.asarray(curve.mean), np.asarray(curve.se)
            style = {}
            if policy in REFERENCE_POLICIES:
                style = {"linestyle": "--", "color": "black" if policy == "oracle" else "gray"}
            (line,) = ax.plot(ns, mean, label=policy, linewidth=1.8, **style)
            ax.fill_between(ns, mean - se, mean + se, color=line.get_color(), alpha=0.1, linewidth=0)
        ax.set_xscale("log", base=2)
        ticks = log_grid(report.pool_size, 12)
        ax.set_xticks(ticks, [str(n) for n in ticks])
        ax.minorticks_off()
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(title or f"Best-of-n ({report.num_pools} pools of N = {report.pool_size})")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
