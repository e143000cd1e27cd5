"""Figures of an `EvaluationResult`: the reliability diagram (one or several models), predicted σ against observed
disagreement, and accuracy by decile of the predicted σ. Each function returns a matplotlib `Figure`;
`EvaluationResult.save` writes them under the names in `FIGURE_FILES`."""

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .evaluation import EvaluationResult

FIGURE_FILES = {
    "reliability": "reliability_diagram.png",
    "disagreement": "sigma_vs_disagreement.png",
    "sigma_deciles": "accuracy_by_sigma_decile.png",
}


def _figure(**kwargs):
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("Figures need matplotlib: `pip install 'trl-anchor[plots]'`.") from None
    # A bare `Figure` (no pyplot) renders with the Agg canvas and leaves no global state behind.
    return Figure(**kwargs)


def plot_reliability_diagram(results: "EvaluationResult | Mapping[str, EvaluationResult]", title: str | None = None):
    """Mean soft label against mean predicted `P(chosen ≻ rejected)` per probability bin, one line per model, with the
    number of pairs per bin underneath. Returns a matplotlib `Figure`."""
    results = dict(results) if isinstance(results, Mapping) else {"model": results}
    figure = _figure(figsize=(5.5, 6.5), layout="constrained")
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    top.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    width = 1.0 / max(len(r.calibration["count"]) for r in results.values())
    for k, (name, result) in enumerate(results.items()):
        cal = {key: np.asarray(v) for key, v in result.calibration.items()}
        filled = cal["count"] > 0
        label = f"{name} (ECE {result.metrics['ece']:.3f})"
        top.plot(cal["mean_prob"][filled], cal["mean_label"][filled], marker="o", label=label)
        centers = (cal["edges"][:-1] + cal["edges"][1:]) / 2
        offset = (k - (len(results) - 1) / 2) * width / len(results)
        bottom.bar(centers + offset, cal["count"], width=width / len(results), label=name)
    top.set(
        xlim=(0, 1),
        ylim=(0, 1),
        ylabel="Mean soft label (observed P(chosen ≻ rejected))",
        title=title or "Reliability diagram",
    )
    top.legend(loc="upper left", fontsize="small")
    bottom.set(xlabel="Predicted P(chosen ≻ rejected)", ylabel="Pairs")
    return figure


def plot_sigma_vs_disagreement(result: "EvaluationResult", title: str | None = None):
    """Scatter of predicted σ against each measure of observed disagreement, with its Spearman ρ and, where the data
    has the true means, the partial ρ given them."""
    if not result.disagreement:
        raise ValueError("This result has no disagreement data to plot (BT model, or no soft labels/vote counts).")
    panels = list(result.disagreement.items())
    figure = _figure(figsize=(5 * len(panels), 4.5), layout="constrained")
    axes = np.atleast_1d(figure.subplots(1, len(panels)))
    descriptions = {
        "soft_label": ("Predicted pair σ  √(σ_c² + σ_r²)", "Soft-label disagreement 1 − |2p − 1|"),
        "vote_spread": ("Predicted σ per response", "Vote spread (std of the vote class)"),
    }
    for axis, (name, data) in zip(axes, panels, strict=True):
        xlabel, ylabel = descriptions.get(name, ("Predicted σ per response", f"Reference {name}"))
        axis.scatter(data["sigma"], data["disagreement"], s=10, alpha=0.5)
        rho = result.metrics.get(f"sigma_spearman_{name}", float("nan"))
        title = f"{name}: Spearman ρ = {rho:.3f}"
        if f"sigma_partial_{name}" in result.metrics:  # what σ says beyond the mean (see evaluation_sigma)
            title += f"\npartial ρ given the mean = {result.metrics[f'sigma_partial_{name}']:.3f}"
        axis.set(xlabel=xlabel, ylabel=ylabel, title=title)
    figure.suptitle(title or "Predicted σ vs observed disagreement")
    return figure


def plot_accuracy_by_sigma(result: "EvaluationResult", title: str | None = None):
    """Bars of pairwise accuracy per decile of predicted pair spread, with the overall accuracy as a line."""
    if not result.sigma_deciles:
        raise ValueError("This result has no σ deciles to plot (BT model).")
    deciles = result.sigma_deciles
    figure = _figure(figsize=(7, 4.5), layout="constrained")
    axis = figure.subplots()
    positions = np.arange(1, len(deciles) + 1)
    axis.bar(positions, [d["accuracy"] for d in deciles], color="tab:blue")
    axis.axhline(result.metrics["accuracy"], color="black", linestyle="--", label="overall accuracy")
    axis.set_xticks(positions, [f"{d['mean_sigma']:.2g}" for d in deciles])
    axis.set(
        xlabel="Predicted pair σ decile (mean σ of the decile, low → high)",
        ylabel="Accuracy",
        ylim=(0, 1),
        title=title or "Accuracy by predicted σ decile",
    )
    axis.legend(loc="lower left")
    return figure
