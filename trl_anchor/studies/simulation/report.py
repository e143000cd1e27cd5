"""The simulation's report: `results.json`, the figures (error vs n, equivalent worlds) and the markdown
`README.md`."""

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np

from .config import ARM_LABELS

logger = logging.getLogger(__name__)

ERROR_FIGURE = "error_vs_n.png"
EQUIVALENCE_FIGURE = "equivalent_worlds.png"
_COLORS = {
    "bt": "tab:gray",
    "gaussian": "tab:orange",
    "gaussian_1_anchor": "tab:purple",
    "gaussian_2_anchor": "tab:blue",
}


def write_report(results: dict[str, Any], output_dir: str | Path) -> Path:
    """Write `results.json`, the figures and `README.md` (the markdown report) into `output_dir`."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    plot_error_vs_n(results, output_dir / ERROR_FIGURE)
    if any(arm != "bt" for arm in results["equivalence"]):
        plot_equivalent_worlds(results, output_dir / EQUIVALENCE_FIGURE)
    (output_dir / "README.md").write_text(render_report(results))
    logger.info("Simulation report written to %s", output_dir)
    return output_dir


def _fitted(results: dict[str, Any], gaussian_only: bool = False) -> tuple[str, ...]:
    """The arms of the study, in canonical order (only those with a σ when `gaussian_only`)."""
    return tuple(arm for arm in results["summary"] if not (gaussian_only and arm == "bt"))


def _log_axes(ax, x_ticks: list[float], y_format: str = "{:g}") -> None:
    """Log-log axes labelled with plain numbers (1, 2, 5 × 10^k on y) instead of powers of ten."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(x_ticks, [f"{t:g}" for t in x_ticks])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: y_format.format(v)))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.grid(True, which="major", alpha=0.3)


def plot_error_vs_n(results: dict[str, Any], path: Path) -> None:
    """Three panels against n (log scale): μ RMSE, σ relative RMSE (no rescaling) and the σ scale σ̂/σ."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("mu_rmse", "RMSE of μ (world units, no rescaling)", _fitted(results), "{:g}"),
        ("sigma_rel_rmse", "relative RMSE of σ (no rescaling)", _fitted(results, gaussian_only=True), "{:.0%}"),
        ("sigma_scale", "σ scale: geometric mean of σ̂ / σ", _fitted(results, gaussian_only=True), "{:g}"),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, (metric, ylabel, arms, y_format) in zip(axes, panels, strict=True):
        for arm in arms:
            cells = results["summary"][arm]
            ns = [int(n) for n in cells]
            stats = [cells[n][metric] for n in cells]
            means = [s["mean"] for s in stats]
            ax.errorbar(
                ns,
                means,
                yerr=[s["std"] for s in stats],
                marker="o",
                capsize=3,
                color=_COLORS[arm],
                label=ARM_LABELS[arm],
            )
            for n, s in zip(ns, stats, strict=True):
                ax.scatter([n] * len(s["values"]), s["values"], s=8, alpha=0.35, color=_COLORS[arm])
        _log_axes(ax, results["config"]["n_pairs"], y_format)
        ax.set_xlabel("n (training pairs)")
        ax.set_ylabel(ylabel)
    axes[1].axhline(0.10, color="black", linestyle="--", linewidth=1, label="10% target")
    axes[2].axhline(1.0, color="black", linestyle="--", linewidth=1, label="true scale")
    axes[0].legend(fontsize=8)
    axes[1].legend(fontsize=8)
    seeds = len(results["config"]["seeds"])
    fig.suptitle(f"Identifiability simulation: error on held-out x vs n (mean ± sd over {seeds} seeds; dots: seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_equivalent_worlds(results: dict[str, Any], path: Path) -> None:
    """Estimated σ scale against the true one over worlds that pairs (and one anchor) cannot tell apart."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 4.2))
    arms = [arm for arm in results["equivalence"] if arm != "bt"]
    scales = sorted(float(a) for a in results["equivalence"][arms[0]]) if arms else []
    ax.plot(scales, scales, color="black", linestyle="--", linewidth=1, label="truth (σ̂ scale = a)")
    for arm in arms:
        cells = results["equivalence"][arm]
        # σ̂/σ_a times a: the estimate's scale in the units of the original world (a = 1).
        values = [[v * a for v in cells[str(a)]["sigma_scale"]["values"]] for a in scales]
        ax.errorbar(
            scales,
            [np.mean(v) for v in values],
            yerr=[np.std(v) for v in values],
            marker="o",
            capsize=3,
            color=_COLORS[arm],
            label=ARM_LABELS[arm],
        )
    _log_axes(ax, scales)
    ax.set_xlabel("world scale a: (μ, σ) → (τ₀ + a(μ − τ₀), aσ)")
    ax.set_ylabel("estimated σ scale (geometric mean σ̂ / σ₁)")
    ax.set_title(f"Equivalent worlds, n = {results['config']['equivalence_n']} pairs", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _fmt(stats: dict | None, percent: bool = False) -> str:
    if stats is None:
        return "—"
    if percent:
        return f"{100 * stats['mean']:.1f}% ± {100 * stats['std']:.1f}"
    return f"{stats['mean']:.3f} ± {stats['std']:.3f}"


def _table(
    results: dict[str, Any], title: str, metric: str, arms: tuple[str, ...], percent: bool = False
) -> list[str]:
    """A titled markdown table of `metric` (mean ± sd over seeds), rows n, columns arms; nothing without arms."""
    if not arms:
        return []
    lines = [
        title,
        "",
        "| n pairs | " + " | ".join(ARM_LABELS[a] for a in arms) + " |",
        "|---:|" + "---:|" * len(arms),
    ]
    for n in results["config"]["n_pairs"]:
        cells = [_fmt(results["summary"][arm][str(n)][metric], percent) for arm in arms]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return lines + [""]


def _equivalence_section(results: dict[str, Any]) -> list[str]:
    equivalence, config = results["equivalence"], results["config"]
    arms = [arm for arm in equivalence if arm != "bt"]
    if not arms:
        return []
    scales = sorted(float(a) for a in equivalence[arms[0]])
    header = f"| arm | {' | '.join(f'a = {a:g}' for a in scales)} |\n|---|" + "---:|" * len(scales)

    def row(arm, metric, transform=lambda a, v: v, percent=False):
        cells = []
        for a in scales:
            stats = equivalence[arm][str(a)][metric]
            values = [transform(a, v) for v in stats["values"]] if stats else None
            shown = None if values is None else {"mean": float(np.mean(values)), "std": float(np.std(values))}
            cells.append(_fmt(shown, percent))
        return f"| {ARM_LABELS[arm]} | " + " | ".join(cells) + " |"

    return [
        "## Equivalent worlds: the data without two thresholds cannot tell these worlds apart",
        "",
        (
            "World `a` is the same world in other units: `(μ, σ) → (τ₀ + a(μ − τ₀), aσ)` with τ₀ ="
            f" {config['single_threshold']:g} (the 1-anchor threshold). Drawn with the same seed, its pairwise soft"
            " labels and its 1-anchor labels are those of the original world (bit for bit when τ₀ = 0 and `a` is a"
            " power of two; otherwise up to rounding), so BT, Gaussian-no-anchor and Gaussian-1-anchor are fitted to"
            " the same data in every world and return the same model — which can have the right σ in at most one of"
            f" them. Only the two-threshold labels change with `a`. n = {config['equivalence_n']} pairs, the same"
            " seeds as above."
        ),
        "",
        f"![σ scale across equivalent worlds]({EQUIVALENCE_FIGURE})",
        "",
        "Estimated σ scale in the original world's units (geometric mean of σ̂ / σ₁; the truth is `a`):",
        "",
        header,
        *[row(arm, "sigma_scale", transform=lambda a, v: a * v) for arm in arms],
        "",
        "Relative RMSE of σ in each world (no rescaling):",
        "",
        header,
        *[row(arm, "sigma_rel_rmse", percent=True) for arm in arms],
        "",
        "RMSE of μ in each world's units (no rescaling):",
        "",
        header,
        *[row(arm, "mu_rmse") for arm in equivalence],
        "",
    ]


def _headline(results: dict[str, Any]) -> list[str]:
    checks, config, summary = results["checks"], results["config"], results["summary"]
    largest, smallest = checks["largest_n"], config["n_pairs"][0]
    lines = []
    if "two_anchor_sigma_rel_rmse_at_largest_n" in checks:
        met = "met" if checks["two_anchor_sigma_within_10_percent"] else "**not met**"
        lines.append(
            f"- **Two anchors**: the relative RMSE of σ goes from "
            f"{100 * checks['two_anchor_sigma_rel_rmse_at_smallest_n']:.1f}% at n = {smallest} to "
            f"{100 * checks['two_anchor_sigma_rel_rmse_at_largest_n']:.1f}% at n = {largest} (target ≤ 10%: {met})."
        )
    for arm, what in (("gaussian", "No anchor"), ("gaussian_1_anchor", "One anchor")):
        if arm in summary:
            scales = summary[arm][str(largest)]["sigma_scale"]["values"]
            errors = [summary[arm][str(n)]["sigma_rel_rmse"]["mean"] for n in config["n_pairs"]]
            lines.append(
                f"- **{what}**: nothing in the data fixes the scale, so σ̂/σ is wherever the initialisation (σ² = 1)"
                f" and the optimiser leave it: at n = {largest} between {min(scales):.2f} and {max(scales):.2f} over"
                f" seeds; the σ error over the n grid is {', '.join(f'{100 * e:.0f}%' for e in errors)}. How close it"
                " lands depends on how the world's units compare with the initialisation's, which the equivalent"
                " worlds below vary."
            )
    worst = checks.get("worst_sigma_rel_rmse_over_equivalent_worlds")
    if worst:
        lines.append(
            "- **Across equivalent worlds** (same pairs, same 1-anchor labels) the worst σ relative RMSE is "
            + ", ".join(f"{ARM_LABELS[a]} {100 * v:.0f}%" for a, v in worst.items())
            + "."
        )
    if "bt" in summary:
        bt = summary["bt"][str(largest)]
        line = (
            "- **BT** fits a logistic utility in units of the pair noise, not μ: at n = "
            f"{largest} its μ RMSE without rescaling is {bt['mu_rmse']['mean']:.3f}, after the best affine map"
            f" (diagnostic below) {bt['mu_rmse_rescaled']['mean']:.3f}"
        )
        if "gaussian_2_anchor" in summary:
            two = summary["gaussian_2_anchor"][str(largest)]
            line += f" (2 anchors: {two['mu_rmse']['mean']:.3f} and {two['mu_rmse_rescaled']['mean']:.3f})"
        lines.append(line + ".")
    return lines


def render_report(results: dict[str, Any]) -> str:
    """The markdown report: command, settings, headline numbers, figures and tables."""
    config, world, checks = results["config"], results["world"], results["checks"]
    arms, gaussian_arms = _fitted(results), _fitted(results, gaussian_only=True)
    soft = (
        f"the fraction of m = {config['annotators']} simulated annotators (each draws r ~ N(μ, σ²) for both responses)"
        if config["soft_labels"] == "annotators"
        else "the exact probit probability Φ((μ_a − μ_b)/√(σ_a² + σ_b²))"
    )
    lines = [
        "# Identifiability simulation study",
        "",
        "Generated by `trl-anchor simulate` (`trl_anchor/studies/simulation/`); every number and figure here is"
        " regenerated by",
        "",
        "```bash",
        results["command"],
        "```",
        "",
        (
            f"(wall time {results['runtime_seconds'] / 60:.1f} min, CPU time {results['cpu_seconds'] / 60:.1f} min,"
            f" with {config['num_threads'] or 'default'} torch thread(s); `results.json` holds every fit's errors)."
        ),
        "",
        "## Claim under test",
        "",
        (
            "Pairwise preference probabilities `Φ((μ_a − μ_b)/√(σ_a² + σ_b²))` are unchanged by `(μ, σ) → (aμ + b,"
            " aσ)`, so pairs identify the reward distribution only up to that family. One anchor threshold τ₀ pins"
            " the location but leaves the scale `a` free; two thresholds τ₁ < τ₂ fix both. So a Gaussian reward model"
            " with two anchors should recover μ(x) and σ(x) in the world's own units, with an error that falls as n"
            " grows, and without anchors or with one it should not."
        ),
        "",
        "## Setup",
        "",
        (
            f"- **World**: {world['covariates']}; μ(x) = {world['mean']}; σ(x) = {world['std']}. On the held-out set"
            f" (n = {config['n_test']}, seed {world['test_seed']}) sd(μ) = {world['test_mu_std']:.2f}, σ ranges"
            f" {world['test_sigma_range'][0]:.2f}–{world['test_sigma_range'][1]:.2f} (mean"
            f" {world['test_sigma_mean']:.2f})."
        ),
        f"- **Pairs**: n pairs of fresh responses; soft label = {soft}; chosen = the majority side.",
        (
            "- **Anchors**: one further draw r ~ N(μ, σ²) per response; 2-anchor class = thresholds exceeded among τ"
            f" = {config['thresholds']}; the 1-anchor arm thresholds the same draw at τ₀ ="
            f" {config['single_threshold']:g}."
        ),
        (
            f"- **Model**: MLP trunk ({config['num_layers']} × {config['hidden_size']}, SiLU) with a linear mean head"
            f" and the library's `VarianceHead` (σ² = softplus(·) + {config['variance_floor']:g}, starting at σ² = 1);"
            " BT uses the mean head only."
        ),
        (
            "- **Loss**: the trainer's own functions, `soft_bt_loss` (BT) or `soft_probit_loss` (Gaussian arms) + λ ·"
            f" mean(`ordinal_anchor_nll`(chosen) + `ordinal_anchor_nll`(rejected)), λ = {config['anchor_lambda']:g}."
            " With λ = 1 each anchor draw weighs as much as one pair label: the joint likelihood of the simulated"
            " data. The trainer's default 0.1 down-weights anchors because real anchors are noisy and misspecified;"
            " data simulated from the model itself need no such discount (any λ > 0 identifies σ in the limit, a"
            " smaller one just uses the anchors' information less efficiently)."
        ),
        (
            f"- **Training**: full batch, AdamW (lr {config['learning_rate']:g}, cosine decay, weight decay"
            f" {config['weight_decay']:g}), {config['epochs']} steps; no early stopping, no rescaling."
        ),
        f"- **Seeds** {config['seeds']} (each draws its own data and initialisation; every arm of a seed shares"
        " both).",
        (
            "- **Errors on held-out x, in the world's units, no post-hoc rescaling**: RMSE of μ, relative RMSE of σ"
            " (RMS of (σ̂ − σ)/σ) and the σ scale (geometric mean of σ̂/σ; 1 = right units)."
        ),
        "",
        "## Result",
        "",
        *_headline(results),
        "",
        f"![error vs n]({ERROR_FIGURE})",
        "",
        *_table(
            results,
            "Relative RMSE of σ (no rescaling), mean ± sd over seeds:",
            "sigma_rel_rmse",
            gaussian_arms,
            percent=True,
        ),
        *_table(results, "σ scale, geometric mean of σ̂/σ (1 = right units):", "sigma_scale", gaussian_arms),
        *_table(results, "RMSE of μ (world units, no rescaling):", "mu_rmse", arms),
        *_equivalence_section(results),
        "## Diagnostics (rescaled — not the result)",
        "",
        (
            "What pairs alone *can* identify is the shape: after the best affine map of μ̂ and the best single factor"
            " on σ̂ (fitted on the held-out set itself, which a user could not do), the errors are:"
        ),
        "",
        *_table(results, "RMSE of μ after the best affine map:", "mu_rmse_rescaled", arms),
        *_table(
            results,
            "Relative RMSE of σ after the best single factor:",
            "sigma_rel_rmse_rescaled",
            gaussian_arms,
            percent=True,
        ),
        "## Checks (from `results.json`)",
        "",
        "```json",
        json.dumps(checks, indent=1),
        "```",
        "",
    ]
    return "\n".join(lines)
