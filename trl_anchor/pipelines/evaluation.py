"""Evaluation of reward models on preference data: are the pairwise probabilities calibrated against people, and does
σ mean disagreement?

`evaluate_reward_model` scores the chosen and rejected responses of any dataset in the trainer's column spec and
reports

- accuracy, Brier score, soft cross-entropy and expected calibration error of `P(chosen ≻ rejected)` against the soft
  labels (`trl_anchor.metrics`),
- accuracy by decile of the predicted pair spread `sqrt(σ_c² + σ_r²)` (Gaussian models),
- anchor accuracy and anchor NLL where the data has anchors (`trl_anchor.losses.ordinal_log_probs`),
- Spearman correlation of σ with observed disagreement: `1 − |2p − 1|` of the soft label `p` per pair, and the spread
  of the vote distribution per response where anchors are vote counts (or any per-response reference columns).

The probability is `Φ((μ_c − μ_r)/sqrt(σ_c² + σ_r²))` for a `GaussianRewardModel` and `sigmoid(r_c − r_r)` for any
other sequence-classification reward model, so Bradley–Terry arms are evaluated by the same code. Results save as JSON,
a markdown table and PNG figures (reliability diagram, σ vs disagreement, accuracy by σ decile; drawn by
`trl_anchor.pipelines.evaluation_plots`). RewardBench lives in `trl_anchor.pipelines.rewardbench`.
"""

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset

from ..anchor_marginal import MIN_SHARE
from ..anchors import (
    ANCHOR_FORMS,
    check_classes,
    check_counts,
    check_finite_scores,
    classes_from_scores,
    validate_thresholds,
)
from ..data.provenance import check_not_trained_on
from ..losses import bt_preference_log_probs, gaussian_preference_log_probs, ordinal_anchor_nll, ordinal_log_probs
from ..metrics import calibration_bins, pairwise_metrics
from ..models.configuration_gaussian import is_gaussian_config
from ..rewards.scoring import RewardScores, score_responses
from .evaluation_plots import (
    FIGURE_FILES,
    plot_accuracy_by_sigma,
    plot_reliability_diagram,
    plot_sigma_vs_disagreement,
)
from .evaluation_sigma import SIGMA_METRICS, add_disagreement_metrics, anchored_rows

SOFT_LABEL = "soft_label"
# Metrics shown first in tables and model cards, in this order; others follow alphabetically.
_METRIC_ORDER = (
    "num_pairs",
    "accuracy",
    "brier",
    "soft_ce",
    "ece",
    "mean_sigma",
    "sigma_spread",
    "anchor_accuracy",
    "anchor_nll",
    "anchor_nll_base_rate",
    "num_anchored_responses",
    *SIGMA_METRICS,
)


# ------------------------------------------------------------------------------------------------------ results
@dataclass
class EvaluationResult:
    """Everything `evaluate_reward_model` measured.

    Attributes:
        reward_type: `"gaussian"` (μ and σ) or `"bt"` (a scalar reward).
        metrics: scalar metrics (see the module docstring); absent where the data or model cannot support them.
        calibration: equal-width bins of the predicted probability (`edges`, `count`, `mean_prob`, `mean_label`).
        sigma_deciles: per decile of the pair spread `sqrt(σ_c² + σ_r²)`: `sigma_low`, `sigma_high`, `mean_sigma`,
            `count`, `accuracy`; `None` for BT models.
        pairs: per-pair arrays (`probability`, `soft_label`, `chosen_mean`, `rejected_mean`, and for Gaussian models
            `chosen_std`, `rejected_std`, `pair_std`; with anchor thresholds also `chosen_expected_class`,
            `rejected_expected_class`, `chosen_p_top`, `rejected_p_top`).
        disagreement: per measure of observed disagreement, the paired arrays `sigma` and `disagreement` that the
            Spearman correlations (and the scatter plot) use.
        notes: what was skipped and why, and how many rows were left out of which metric.
    """

    reward_type: str
    metrics: dict[str, float]
    calibration: dict[str, list[float]]
    sigma_deciles: list[dict[str, float]] | None
    pairs: dict[str, np.ndarray] = field(repr=False)
    disagreement: dict[str, dict[str, np.ndarray]] = field(default_factory=dict, repr=False)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (NaN becomes `null`); per-pair arrays are left out."""
        return _json_ready(
            {
                "reward_type": self.reward_type,
                "metrics": ordered_metrics(self.metrics),
                "calibration": self.calibration,
                "sigma_deciles": self.sigma_deciles,
                "notes": self.notes,
            }
        )

    def to_markdown(self) -> str:
        lines = ["| metric | value |", "|---|---|"]
        lines += [f"| {name} | {_format_value(value)} |" for name, value in ordered_metrics(self.metrics).items()]
        if self.sigma_deciles:
            lines += [
                "",
                "Accuracy by decile of the predicted pair spread √(σ_c² + σ_r²):",
                "",
                "| decile | σ range | pairs | accuracy |",
                "|---|---|---|---|",
            ]
            lines += [
                f"| {i + 1} | {d['sigma_low']:.3g} – {d['sigma_high']:.3g} | {d['count']} | {d['accuracy']:.3f} |"
                for i, d in enumerate(self.sigma_deciles)
            ]
        if self.notes:
            lines += [""] + [f"- {note}" for note in self.notes]
        return "\n".join(lines)

    def save(self, output_dir: str | os.PathLike, plots: bool = True) -> dict[str, Path]:
        """Write `evaluation.json`, `evaluation.md` and (with `plots`) the PNG figures; returns the paths written."""
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        written = {"json": output_dir / "evaluation.json", "markdown": output_dir / "evaluation.md"}
        written["json"].write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        written["markdown"].write_text(self.to_markdown() + "\n")
        if plots:
            figures = {"reliability": plot_reliability_diagram(self)}
            if self.disagreement:
                figures["disagreement"] = plot_sigma_vs_disagreement(self)
            if self.sigma_deciles:
                figures["sigma_deciles"] = plot_accuracy_by_sigma(self)
            for key, figure in figures.items():
                written[key] = output_dir / FIGURE_FILES[key]
                figure.savefig(written[key], dpi=120)
        return written


def ordered_metrics(metrics: Mapping[str, float]) -> dict[str, float]:
    first = [name for name in _METRIC_ORDER if name in metrics]
    return {name: metrics[name] for name in first + sorted(set(metrics) - set(first))}


def comparison_markdown(results: Mapping[str, "EvaluationResult"]) -> str:
    """One markdown table comparing several evaluated models (e.g. the BT and Gaussian arms) metric by metric."""
    names = list(results)
    metrics = ordered_metrics({k: 0.0 for r in results.values() for k in r.metrics})
    lines = ["| metric | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for metric in metrics:
        cells = [_format_value(results[n].metrics[metric]) if metric in results[n].metrics else "—" for n in names]
        lines.append(f"| {metric} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _format_value(value) -> str:
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:.4f}"


def _json_ready(value):
    if isinstance(value, Mapping):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (np.integer, int)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, (np.floating, float)):
        return None if math.isnan(value) else float(value)
    return value


# --------------------------------------------------------------------------------------------------- evaluation
def pair_probabilities(chosen: RewardScores, rejected: RewardScores, margin: np.ndarray | None = None) -> np.ndarray:
    """`P(chosen ≻ rejected)` from the scores of both sides: probit with the summed variances for Gaussian scores,
    sigmoid of the reward gap for scalar (BT) scores. Computed by `trl_anchor.losses` in float64."""
    mc, mr = torch.as_tensor(chosen.mean), torch.as_tensor(rejected.mean)
    margin = None if margin is None else torch.as_tensor(margin, dtype=torch.float64)
    if chosen.variance is None or rejected.variance is None:
        log_p, _ = bt_preference_log_probs(mc, mr, margin)
    else:
        vc, vr = torch.as_tensor(chosen.variance), torch.as_tensor(rejected.variance)
        log_p, _ = gaussian_preference_log_probs(mc, vc, mr, vr, margin)
    return log_p.exp().numpy()


def sigma_decile_accuracy(pair_std, probs, labels, num_bins: int = 10) -> list[dict[str, float]]:
    """Accuracy (as `pairwise_metrics`) within `num_bins` equal-count groups of pairs sorted by predicted spread."""
    pair_std = np.asarray(pair_std, dtype=np.float64)
    probs, labels = np.asarray(probs, dtype=np.float64), np.asarray(labels, dtype=np.float64)
    order = np.argsort(pair_std, kind="stable")
    groups = [g for g in np.array_split(order, min(num_bins, len(order))) if g.size]
    return [
        {
            "sigma_low": float(pair_std[g].min()),
            "sigma_high": float(pair_std[g].max()),
            "mean_sigma": float(pair_std[g].mean()),
            "count": int(g.size),
            "accuracy": pairwise_metrics(probs[g], labels[g])["accuracy"],
        }
        for g in groups
    ]


def evaluate_reward_model(
    model,
    tokenizer,
    dataset: Dataset,
    *,
    batch_size: int = 16,
    max_length: int | None = None,
    anchor_thresholds: Sequence[float] | None = None,
    disagreement_columns: tuple[str, str] | None = None,
    disagreement_mean_columns: tuple[str, str] | None = None,
    use_margin: bool = False,
    num_bins: int = 10,
    num_sigma_bins: int = 10,
    show_progress: bool = False,
    allow_training_data: bool = False,
) -> EvaluationResult:
    """Evaluate a reward model on a preference dataset in the trainer's column spec.

    Args:
        model: a `GaussianRewardModel` (μ, σ) or any sequence-classification reward model with one output.
        tokenizer: the model's tokenizer (its chat template is used for conversational data).
        dataset: `chosen`/`rejected` with an optional `prompt` (standard or conversational), optional `soft_label`
            (default 1), `margin`, anchors (`chosen_score`/`rejected_score`, `chosen_anchor`/`rejected_anchor` or
            `chosen_anchor_counts`/`rejected_anchor_counts`) and `anchor_weight`.
        batch_size, max_length: scoring batch size and truncation (longer sequences keep their end).
        anchor_thresholds: τ for anchor accuracy; default `model.config.gaussian_reward["anchor_thresholds"]`.
        disagreement_columns: a `(chosen_column, rejected_column)` pair of per-response reference spreads (e.g. the
            true σ of a synthetic set) to correlate σ with, besides the soft labels and vote counts.
        disagreement_mean_columns: the matching true means (e.g. the synthetic set's true μ): the partial rank
            correlation of σ with the reference spread given them is reported too (`sigma_partial_<name>`). For vote
            counts the crowd's mean vote is used automatically (`sigma_partial_vote_spread`).
        use_margin: subtract the `margin` column inside the probability, as the training loss does. Off by default:
            a soft label is `P(chosen ≻ rejected)` without margin.
        num_bins: probability bins of the ECE and the reliability diagram.
        num_sigma_bins: groups of the accuracy-by-σ breakdown (10 = deciles).
        show_progress: show a progress bar while scoring.
        allow_training_data: evaluate even on data the model records as its training data (its train contests or
            rows, `trl_anchor.data.provenance`); refused by default.

    Example:

    ```python
    >>> from datasets import Dataset
    >>> from trl_anchor.models.loading import load_reward_model
    >>> from trl_anchor.pipelines.evaluation import evaluate_reward_model

    >>> model, tokenizer = load_reward_model("outputs/gaussian-minilm")  # doctest: +SKIP
    >>> data = Dataset.from_dict({"prompt": ["Say hi."], "chosen": ["Hi!"], "rejected": ["No."], "soft_label": [0.8]})
    >>> result = evaluate_reward_model(model, tokenizer, data)  # doctest: +SKIP
    >>> result.metrics["brier"], result.save("eval")  # doctest: +SKIP
    ```
    """
    columns = dataset.column_names
    for required in ("chosen", "rejected"):
        if required not in columns:
            raise ValueError(f"The evaluation dataset has no `{required}` column (columns: {columns}).")
    if len(dataset) == 0:
        raise ValueError("The evaluation dataset is empty.")
    notes = [] if allow_training_data else check_not_trained_on(model.config, dataset=dataset, what="this evaluation")
    labels = _soft_labels(dataset)
    margin = _margins(dataset) if use_margin else None
    prompts = dataset["prompt"] if "prompt" in columns else None
    score = dict(batch_size=batch_size, max_length=max_length, show_progress=show_progress)
    chosen = score_responses(model, tokenizer, dataset["chosen"], prompts, **score)
    rejected = score_responses(model, tokenizer, dataset["rejected"], prompts, **score)
    gaussian = chosen.variance is not None
    if not gaussian and is_gaussian_config(model.config):
        notes.append(
            "The checkpoint is Gaussian but was loaded without its variance head; μ is evaluated as a BT reward."
        )

    probs = pair_probabilities(chosen, rejected, margin)
    metrics: dict[str, float] = {"num_pairs": len(dataset), **pairwise_metrics(probs, labels, num_bins)}
    pairs = {"probability": probs, "soft_label": labels, "chosen_mean": chosen.mean, "rejected_mean": rejected.mean}
    bins = calibration_bins(probs, labels, num_bins)
    calibration = {key: value.tolist() for key, value in bins.items()}

    result = EvaluationResult(
        reward_type="gaussian" if gaussian else "bt",
        metrics=metrics,
        calibration=calibration,
        sigma_deciles=None,
        pairs=pairs,
        notes=notes,
    )
    if gaussian:
        _add_sigma_metrics(
            result, dataset, chosen, rejected, disagreement_columns, disagreement_mean_columns, num_sigma_bins
        )
        thresholds = _thresholds(model, anchor_thresholds)
        if thresholds is not None:  # σ-aware scores next to μ: expected anchor class and P(top class)
            for side, scores in (("chosen", chosen), ("rejected", rejected)):
                scores = replace(scores, thresholds=thresholds)
                result.pairs.update({f"{side}_expected_class": scores.expected_class, f"{side}_p_top": scores.p_top})
        base_rate = (getattr(model.config, "gaussian_reward", None) or {}).get("anchor_class_shares")
        _add_anchor_metrics(result, dataset, chosen, rejected, thresholds, base_rate)
    else:
        notes.append(
            "BT reward model: no σ, so σ deciles, σ–disagreement correlations and anchor accuracy are skipped."
        )
    return result


def _soft_labels(dataset: Dataset) -> np.ndarray:
    if SOFT_LABEL not in dataset.column_names:
        return np.ones(len(dataset))
    labels = np.asarray([np.nan if v is None else v for v in dataset[SOFT_LABEL]], dtype=np.float64)
    bad = np.flatnonzero(~((labels >= 0.0) & (labels <= 1.0)))
    if bad.size:
        raise ValueError(f"Column `{SOFT_LABEL}` must lie in [0, 1]; row {bad[0]} has {labels[bad[0]]}.")
    return labels


def _margins(dataset: Dataset) -> np.ndarray:
    if "margin" not in dataset.column_names:
        raise ValueError("`use_margin=True` but the dataset has no `margin` column.")
    margin = np.asarray(dataset["margin"], dtype=np.float64)
    check_finite_scores(margin, "margin")
    return margin


def _thresholds(model, anchor_thresholds) -> list[float] | None:
    if anchor_thresholds is not None:
        return validate_thresholds(anchor_thresholds)
    recorded = (getattr(model.config, "gaussian_reward", None) or {}).get("anchor_thresholds")
    return None if recorded is None else validate_thresholds(recorded)


def _add_sigma_metrics(result, dataset, chosen, rejected, disagreement_columns, mean_columns, num_bins) -> None:
    pair_std = np.sqrt(chosen.variance + rejected.variance)
    result.pairs.update(chosen_std=chosen.std, rejected_std=rejected.std, pair_std=pair_std)
    sigma = np.concatenate([chosen.std, rejected.std])
    result.metrics["mean_sigma"] = float(sigma.mean())
    result.metrics["sigma_spread"] = float(sigma.std())  # 0 when the variance head predicts one σ for everything
    probs, labels = result.pairs["probability"], result.pairs["soft_label"]
    result.sigma_deciles = sigma_decile_accuracy(pair_std, probs, labels, num_bins)
    add_disagreement_metrics(result, dataset, chosen, rejected, disagreement_columns, mean_columns)


def _anchor_form(dataset: Dataset) -> str | None:
    columns = set(dataset.column_names)
    for pair in ANCHOR_FORMS.values():
        if len(set(pair) & columns) == 1:
            raise ValueError(
                f"The dataset has `{(set(pair) & columns).pop()}` but not its pair; anchors need both {pair}."
            )
    forms = [form for form, pair in ANCHOR_FORMS.items() if set(pair) <= columns]
    if len(forms) > 1:
        raise ValueError(f"The dataset gives anchors in several forms ({forms}); keep exactly one.")
    return forms[0] if forms else None


def _anchor_targets(dataset: Dataset, form: str, thresholds: list[float]):
    """Per anchored response: its row index, side (0 chosen / 1 rejected) and class-count vector over K + 1 classes."""
    num = len(thresholds)
    rows, sides, counts = [], [], []
    for side, column in enumerate(ANCHOR_FORMS[form]):
        column_values = dataset[column]
        anchored = anchored_rows(column_values, dataset)
        values = [column_values[i] for i in anchored]
        if form == "score":
            scores = np.asarray(values, dtype=np.float64)
            check_finite_scores(scores, column, anchored)
            side_counts = np.eye(num + 1)[classes_from_scores(scores, thresholds)]
        elif form == "class":
            classes = np.asarray(values, dtype=np.float64)
            check_classes(classes, num, column, anchored)
            side_counts = np.eye(num + 1)[classes.astype(int)]
        else:
            side_counts = np.asarray(values, dtype=np.float64).reshape(len(values), -1)
            check_counts(side_counts, num, column, anchored)
        rows.append(anchored)
        sides.append(np.full(anchored.size, side))
        counts.append(side_counts.reshape(-1, num + 1))
    return np.concatenate(rows), np.concatenate(sides), np.concatenate(counts)


def _add_anchor_metrics(result, dataset, chosen, rejected, thresholds, base_rate=None) -> None:
    form = _anchor_form(dataset)
    if form is None:
        return
    if thresholds is None:
        result.notes.append(
            "The dataset has anchors but the model records no anchor thresholds; pass `anchor_thresholds` to score "
            "them."
        )
        return
    rows, sides, counts = _anchor_targets(dataset, form, thresholds)
    left_out = 2 * len(dataset) - rows.size
    if left_out:
        result.notes.append(
            f"Anchor accuracy: {left_out} responses without anchors (empty or anchor_weight 0) left out."
        )
    if rows.size == 0:
        return
    mean = torch.as_tensor(np.where(sides == 0, chosen.anchor_mean[rows], rejected.anchor_mean[rows]))
    # A model trained with anchor groups scores these anchors as a new group's (`RewardScores.anchor_std`).
    std = torch.as_tensor(np.where(sides == 0, chosen.anchor_std[rows], rejected.anchor_std[rows]))
    tau = torch.tensor(thresholds, dtype=torch.float64)
    predicted = ordinal_log_probs(mean, std, tau).argmax(-1).numpy()
    # Like the trainer: the target of a vote vector is its modal class.
    result.metrics["anchor_accuracy"] = float(np.mean(predicted == counts.argmax(-1)))
    result.metrics["anchor_nll"] = float(ordinal_anchor_nll(mean, std, tau, torch.as_tensor(counts)).mean())
    result.metrics["num_anchored_responses"] = int(rows.size)
    if base_rate is not None and len(base_rate) == len(thresholds) + 1:
        # The reference a useful model must beat: every response predicted at the train anchors' class shares.
        log_shares = np.log(np.clip(np.asarray(base_rate, dtype=np.float64), MIN_SHARE, None))
        labels = counts / np.clip(counts.sum(-1, keepdims=True), 1.0, None)
        result.metrics["anchor_nll_base_rate"] = float(-(labels @ log_shares).mean())
