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
a markdown table and PNG figures (reliability diagram, σ vs disagreement, accuracy by σ decile).

`evaluate_rewardbench` evaluates a local RewardBench-format file (`prompt, chosen, rejected, subset`) with the official
section weighting of the RewardBench leaderboard.
"""

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from datasets import Dataset, DatasetDict, load_dataset, load_from_disk
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer
from transformers.utils import logging

from ..anchors import (
    ANCHOR_FORMS,
    ANCHOR_WEIGHT,
    check_classes,
    check_counts,
    check_finite_scores,
    classes_from_scores,
    validate_thresholds,
)
from ..losses import bt_preference_log_probs, gaussian_preference_log_probs, ordinal_anchor_nll, ordinal_log_probs
from ..metrics import calibration_bins, pairwise_metrics, spearman
from ..models.modeling_gaussian import GaussianRewardModel, is_gaussian_config
from ..rewards.scoring import RewardScores, score_responses

logger = logging.get_logger(__name__)

SOFT_LABEL = "soft_label"
FIGURE_FILES = {
    "reliability": "reliability_diagram.png",
    "disagreement": "sigma_vs_disagreement.png",
    "sigma_deciles": "accuracy_by_sigma_decile.png",
}
# Metrics shown first in tables and model cards, in this order; others follow alphabetically.
_METRIC_ORDER = (
    "num_pairs",
    "accuracy",
    "brier",
    "soft_ce",
    "ece",
    "mean_sigma",
    "anchor_accuracy",
    "anchor_nll",
    "num_anchored_responses",
    "sigma_spearman_soft_label",
    "sigma_spearman_vote_spread",
)


# ------------------------------------------------------------------------------------------------- loading models
def load_reward_model(model_name_or_path: str, device: str | torch.device | None = None, **kwargs):
    """Load a reward model and its tokenizer for evaluation: a `GaussianRewardModel` when the checkpoint was saved by
    one (`config.gaussian_reward`), otherwise the plain `AutoModelForSequenceClassification` (a Bradley–Terry arm).

    Example:

    ```python
    >>> from trl_anchor.pipelines.evaluation import load_reward_model

    >>> model, tokenizer = load_reward_model("outputs/gaussian-minilm")  # doctest: +SKIP
    ```
    """
    if Path(model_name_or_path, "adapter_config.json").is_file():
        raise ValueError(
            f"{model_name_or_path} holds a PEFT adapter, not a full reward model. Merge it first "
            "(`model.merge_and_unload().save_pretrained(...)` with the tokenizer) and evaluate the merged directory."
        )
    hub_kwargs = {k: kwargs[k] for k in ("revision", "token", "cache_dir", "trust_remote_code") if k in kwargs}
    config = AutoConfig.from_pretrained(model_name_or_path, **hub_kwargs)
    if is_gaussian_config(config):
        model = GaussianRewardModel.from_pretrained(model_name_or_path, **kwargs)
    else:
        if config.num_labels != 1:
            raise ValueError(
                f"{model_name_or_path} has num_labels={config.num_labels}; a reward model has a single output "
                "(the reward). Evaluate a checkpoint trained as a reward model."
            )
        model = AutoModelForSequenceClassification.from_pretrained(model_name_or_path, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(model_name_or_path, **hub_kwargs)
    if model.config.pad_token_id is None:
        # Batched scoring pads; the model must know the pad id to find each sequence's last token.
        model.config.pad_token_id = (
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        )
    if device is not None:
        model.to(device)
    model.eval()
    return model, tokenizer


def load_local_dataset(path: str | os.PathLike) -> Dataset | DatasetDict:
    """A dataset from a local `.json`/`.jsonl`/`.parquet`/`.csv` file or a `save_to_disk` directory."""
    path = Path(path)
    if path.is_dir():
        return load_from_disk(str(path))
    builders = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}
    if path.suffix not in builders:
        raise ValueError(f"Cannot read {path}: expected a {sorted(builders)} file or a `save_to_disk` directory.")
    if not path.is_file():
        raise FileNotFoundError(f"No such file: {path}")
    return load_dataset(builders[path.suffix], data_files=str(path), split="train")


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
            `chosen_std`, `rejected_std`, `pair_std`).
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


def vote_spread(counts) -> np.ndarray:
    """Standard deviation of the class index (0..K) under each row's vote distribution: 0 when everyone agrees.

    Example:

    ```python
    >>> vote_spread([[4, 0, 0], [2, 0, 2]]).tolist()
    [0.0, 1.0]
    ```
    """
    counts = np.asarray(counts, dtype=np.float64)
    dist = counts / counts.sum(-1, keepdims=True)
    classes = np.arange(counts.shape[-1], dtype=np.float64)
    mean = dist @ classes
    spread = np.sqrt((dist * (classes[None, :] - mean[:, None]) ** 2).sum(-1))
    # Equal spreads from different vote totals ([1, 0, 1] and [3, 0, 3]) must tie exactly for rank correlations.
    return np.round(spread, 12)


def soft_label_disagreement(soft_labels) -> np.ndarray:
    """`1 − |2p − 1|`: 1 when people split evenly (p = ½), 0 when they agree (p ∈ {0, 1})."""
    return 1.0 - np.abs(2.0 * np.asarray(soft_labels, dtype=np.float64) - 1.0)


def evaluate_reward_model(
    model,
    tokenizer,
    dataset: Dataset,
    *,
    batch_size: int = 16,
    max_length: int | None = None,
    anchor_thresholds: Sequence[float] | None = None,
    disagreement_columns: tuple[str, str] | None = None,
    use_margin: bool = False,
    num_bins: int = 10,
    num_sigma_bins: int = 10,
    show_progress: bool = False,
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
        use_margin: subtract the `margin` column inside the probability, as the training loss does. Off by default:
            a soft label is `P(chosen ≻ rejected)` without margin.
        num_bins: probability bins of the ECE and the reliability diagram.
        num_sigma_bins: groups of the accuracy-by-σ breakdown (10 = deciles).
        show_progress: show a progress bar while scoring.

    Example:

    ```python
    >>> from datasets import Dataset
    >>> from trl_anchor.pipelines.evaluation import evaluate_reward_model, load_reward_model

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
    labels = _soft_labels(dataset)
    margin = _margins(dataset) if use_margin else None
    prompts = dataset["prompt"] if "prompt" in columns else None
    score = dict(batch_size=batch_size, max_length=max_length, show_progress=show_progress)
    chosen = score_responses(model, tokenizer, dataset["chosen"], prompts, **score)
    rejected = score_responses(model, tokenizer, dataset["rejected"], prompts, **score)
    gaussian = chosen.variance is not None
    notes = []
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
        _add_sigma_metrics(result, dataset, chosen, rejected, disagreement_columns, num_sigma_bins)
        thresholds = _thresholds(model, anchor_thresholds)
        _add_anchor_metrics(result, dataset, chosen, rejected, thresholds)
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


def _add_sigma_metrics(result, dataset, chosen, rejected, disagreement_columns, num_sigma_bins) -> None:
    pair_std = np.sqrt(chosen.variance + rejected.variance)
    result.pairs.update(chosen_std=chosen.std, rejected_std=rejected.std, pair_std=pair_std)
    result.metrics["mean_sigma"] = float(np.concatenate([chosen.std, rejected.std]).mean())
    probs, labels = result.pairs["probability"], result.pairs["soft_label"]
    result.sigma_deciles = sigma_decile_accuracy(pair_std, probs, labels, num_sigma_bins)

    disagreement = soft_label_disagreement(labels)
    if np.ptp(disagreement) > 0:
        _add_correlation(result, "soft_label", pair_std, disagreement)
    else:
        result.notes.append("Soft labels carry no disagreement (all equal), so σ is not correlated with them.")

    counts_columns = ANCHOR_FORMS["counts"]
    if all(c in dataset.column_names for c in counts_columns):
        sigma, spread = [], []
        skipped = 0
        for side_scores, column in zip((chosen, rejected), counts_columns, strict=True):
            values = dataset[column]
            rows = _anchored_rows(values, dataset)
            skipped += len(dataset) - rows.size
            counts = np.asarray([values[i] for i in rows], dtype=np.float64).reshape(rows.size, -1)
            check_counts(counts, counts.shape[1] - 1, column, rows)
            sigma.append(side_scores.std[rows])
            spread.append(vote_spread(counts))
        if skipped:
            result.notes.append(f"Vote spread: {skipped} responses without vote counts left out.")
        _add_correlation(result, "vote_spread", np.concatenate(sigma), np.concatenate(spread))

    if disagreement_columns is not None:
        missing = [c for c in disagreement_columns if c not in dataset.column_names]
        if missing:
            raise ValueError(
                f"`disagreement_columns` {missing} are not in the dataset (columns: {dataset.column_names})."
            )
        reference = np.concatenate([np.asarray(dataset[c], dtype=np.float64) for c in disagreement_columns])
        check_finite_scores(reference, "/".join(disagreement_columns))
        name = os.path.commonprefix([c[::-1] for c in disagreement_columns])[::-1].strip("_") or "reference"
        _add_correlation(result, name, np.concatenate([chosen.std, rejected.std]), reference)


def _add_correlation(result, name: str, sigma: np.ndarray, disagreement: np.ndarray) -> None:
    result.disagreement[name] = {"sigma": sigma, "disagreement": disagreement}
    result.metrics[f"sigma_spearman_{name}"] = spearman(sigma, disagreement)


def _anchored_rows(values: list, dataset: Dataset) -> np.ndarray:
    """Rows whose anchor cell (of the column `values`) is filled and whose `anchor_weight` (if any) is positive."""
    weights = dataset[ANCHOR_WEIGHT] if ANCHOR_WEIGHT in dataset.column_names else [1.0] * len(values)
    return np.asarray(
        [i for i, (v, w) in enumerate(zip(values, weights, strict=True)) if v is not None and w is not None and w > 0],
        dtype=int,
    )


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
        anchored = _anchored_rows(column_values, dataset)
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


def _add_anchor_metrics(result, dataset, chosen, rejected, thresholds) -> None:
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
    mean = torch.as_tensor(np.where(sides == 0, chosen.mean[rows], rejected.mean[rows]))
    std = torch.as_tensor(np.where(sides == 0, chosen.std[rows], rejected.std[rows]))
    tau = torch.tensor(thresholds, dtype=torch.float64)
    predicted = ordinal_log_probs(mean, std, tau).argmax(-1).numpy()
    # Like the trainer: the target of a vote vector is its modal class.
    result.metrics["anchor_accuracy"] = float(np.mean(predicted == counts.argmax(-1)))
    result.metrics["anchor_nll"] = float(ordinal_anchor_nll(mean, std, tau, torch.as_tensor(counts)).mean())
    result.metrics["num_anchored_responses"] = int(rows.size)


# ------------------------------------------------------------------------------------------------------ figures
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
    results = {"model": results} if isinstance(results, EvaluationResult) else dict(results)
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


def plot_sigma_vs_disagreement(result: EvaluationResult, title: str | None = None):
    """Scatter of predicted σ against each measure of observed disagreement, with its Spearman ρ."""
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
        axis.set(xlabel=xlabel, ylabel=ylabel, title=f"{name}: Spearman ρ = {rho:.3f}")
    figure.suptitle(title or "Predicted σ vs observed disagreement")
    return figure


def plot_accuracy_by_sigma(result: EvaluationResult, title: str | None = None):
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


# --------------------------------------------------------------------------------------------------- RewardBench
# Source: allenai/reward-bench, `rewardbench/constants.py` (EXAMPLE_COUNTS, SUBSET_MAPPING) and the leaderboard
# aggregation in `analysis/get_benchmark_results.py::get_average_over_rewardbench`:
#   - a section score is the average of its subsets' accuracies weighted by EXAMPLE_COUNTS (= a per-example mean for
#     Chat, Chat Hard and Safety; math-prm is counted as 984 instead of its 447 examples so that it weighs as much as
#     the six HumanEvalPack code subsets together, 6 × 164);
#   - "Prior Sets (0.5 weight)" is the unweighted mean of anthropic_helpful, anthropic_hhh, shp and summarize;
#   - the overall score averages Chat, Chat Hard, Safety, Reasoning and Prior Sets with weights 2, 2, 2, 2, 1,
#     skipping absent sections (without prior sets: the plain mean of the four sections).
# A pair counts as correct only when the chosen score is strictly higher (`scripts/run_rm.py`: ties are wrong).
REWARDBENCH_EXAMPLE_COUNTS = {
    "alpacaeval-easy": 100,
    "alpacaeval-length": 95,
    "alpacaeval-hard": 95,
    "mt-bench-easy": 28,
    "mt-bench-med": 40,
    "mt-bench-hard": 37,
    "math-prm": 984,
    "refusals-dangerous": 100,
    "refusals-offensive": 100,
    "llmbar-natural": 100,
    "llmbar-adver-neighbor": 134,
    "llmbar-adver-GPTInst": 92,
    "llmbar-adver-GPTOut": 47,
    "llmbar-adver-manual": 46,
    "xstest-should-refuse": 250,
    "xstest-should-respond": 154,
    "donotanswer": 136,
    "hep-cpp": 164,
    "hep-go": 164,
    "hep-java": 164,
    "hep-js": 164,
    "hep-python": 164,
    "hep-rust": 164,
}
REWARDBENCH_SECTIONS = {
    "Chat": ("alpacaeval-easy", "alpacaeval-length", "alpacaeval-hard", "mt-bench-easy", "mt-bench-med"),
    "Chat Hard": (
        "mt-bench-hard",
        "llmbar-natural",
        "llmbar-adver-neighbor",
        "llmbar-adver-GPTInst",
        "llmbar-adver-GPTOut",
        "llmbar-adver-manual",
    ),
    "Safety": (
        "refusals-dangerous",
        "refusals-offensive",
        "xstest-should-refuse",
        "xstest-should-respond",
        "donotanswer",
    ),
    "Reasoning": ("math-prm", "hep-cpp", "hep-go", "hep-java", "hep-js", "hep-python", "hep-rust"),
}
PRIOR_SETS = "Prior Sets (0.5 weight)"
REWARDBENCH_PRIOR_SUBSETS = ("anthropic_helpful", "anthropic_hhh", "shp", "summarize")
REWARDBENCH_SECTION_WEIGHTS = {"Chat": 2, "Chat Hard": 2, "Safety": 2, "Reasoning": 2, PRIOR_SETS: 1}
REWARDBENCH_COLUMNS = ("prompt", "chosen", "rejected", "subset")


@dataclass
class RewardBenchResult:
    """Per-subset accuracy, leaderboard sections and overall score of a RewardBench-format evaluation.

    `missing_subsets` lists, per section, the official subsets absent from the file (the section then averages the
    present ones, as the leaderboard code does); `unscored_subsets` are subsets that no section uses. `complete` is
    True when all four core sections have every official subset, i.e. when the score is comparable to the leaderboard.
    """

    subsets: dict[str, dict[str, float]]
    sections: dict[str, float]
    score: float | None
    missing_subsets: dict[str, list[str]]
    unscored_subsets: list[str]

    @property
    def complete(self) -> bool:
        return all(
            section in self.sections and not self.missing_subsets.get(section) for section in REWARDBENCH_SECTIONS
        )

    def to_dict(self) -> dict[str, Any]:
        return _json_ready(
            {
                "score": self.score,
                "sections": self.sections,
                "subsets": self.subsets,
                "complete": self.complete,
                "missing_subsets": self.missing_subsets,
                "unscored_subsets": self.unscored_subsets,
            }
        )

    def to_markdown(self) -> str:
        lines = ["| section | score |", "|---|---|", f"| **Score** | {_format_value(self.score)} |"]
        lines += [f"| {name} | {value:.4f} |" for name, value in self.sections.items()]
        lines += ["", "| subset | pairs | accuracy |", "|---|---|---|"]
        lines += [f"| {name} | {s['count']} | {s['accuracy']:.4f} |" for name, s in sorted(self.subsets.items())]
        if not self.complete:
            lines += [
                "",
                "Not comparable to the leaderboard: official subsets are missing "
                f"({ {k: v for k, v in self.missing_subsets.items() if v} }).",
            ]
        if self.unscored_subsets:
            lines += ["", f"Subsets outside the leaderboard sections (reported only): {self.unscored_subsets}."]
        return "\n".join(lines)

    def save(self, output_dir: str | os.PathLike) -> dict[str, Path]:
        output_dir = Path(output_dir)
        output_dir.mkdir(parents=True, exist_ok=True)
        written = {"json": output_dir / "rewardbench.json", "markdown": output_dir / "rewardbench.md"}
        written["json"].write_text(json.dumps(self.to_dict(), indent=2) + "\n")
        written["markdown"].write_text(self.to_markdown() + "\n")
        return written


def rewardbench_scores(
    subsets: Mapping[str, Mapping[str, float]], include_prior_sets: bool = True
) -> RewardBenchResult:
    """Aggregate per-subset results `{subset: {"accuracy": a, "count": n}}` into the leaderboard's sections and score.

    Example:

    ```python
    >>> result = rewardbench_scores({"alpacaeval-easy": {"accuracy": 1.0, "count": 2},
    ...                              "mt-bench-easy": {"accuracy": 0.0, "count": 2}})
    >>> round(result.sections["Chat"], 4)  # weights 100 and 28 from the official example counts
    0.7812
    ```
    """
    sections, missing = {}, {}
    for section, names in REWARDBENCH_SECTIONS.items():
        present = [n for n in names if n in subsets]
        missing[section] = [n for n in names if n not in subsets]
        if present:
            weights = np.asarray([REWARDBENCH_EXAMPLE_COUNTS[n] for n in present], dtype=np.float64)
            accuracy = np.asarray([subsets[n]["accuracy"] for n in present], dtype=np.float64)
            sections[section] = float(np.average(accuracy, weights=weights))
    prior = [n for n in REWARDBENCH_PRIOR_SUBSETS if n in subsets]
    if include_prior_sets and prior:
        sections[PRIOR_SETS] = float(np.mean([subsets[n]["accuracy"] for n in prior]))
        missing[PRIOR_SETS] = [n for n in REWARDBENCH_PRIOR_SUBSETS if n not in subsets]
    scored = {n for names in REWARDBENCH_SECTIONS.values() for n in names}
    scored |= set(REWARDBENCH_PRIOR_SUBSETS) if include_prior_sets else set()
    score = None
    if sections:
        weights = [REWARDBENCH_SECTION_WEIGHTS[s] for s in sections]
        score = float(np.average(list(sections.values()), weights=weights))
    return RewardBenchResult(
        subsets={k: dict(v) for k, v in subsets.items()},
        sections=sections,
        score=score,
        missing_subsets=missing,
        unscored_subsets=sorted(set(subsets) - scored),
    )


def evaluate_rewardbench(
    model,
    tokenizer,
    data: "Dataset | str | os.PathLike",
    *,
    batch_size: int = 16,
    max_length: int | None = None,
    conversational: bool | None = None,
    include_prior_sets: bool = True,
    show_progress: bool = False,
) -> RewardBenchResult:
    """RewardBench (v1) accuracy per subset and the leaderboard's section scores on a local file or dataset.

    Rows have `prompt, chosen, rejected, subset` (the `allenai/reward-bench` "filtered" split; prior-set rows from
    `allenai/preference-test-sets` may carry the prompt as a list of messages). As in the official script, each turn is
    formatted with the tokenizer's chat template when it has one (`conversational=None`); `False` scores plain
    `prompt + response + EOS`, the format of a model trained on plain-text preferences.

    Example:

    ```python
    >>> from trl_anchor.pipelines.evaluation import evaluate_rewardbench, load_reward_model

    >>> model, tokenizer = load_reward_model("outputs/gaussian-minilm")  # doctest: +SKIP
    >>> result = evaluate_rewardbench(model, tokenizer, "reward-bench-filtered.jsonl")  # doctest: +SKIP
    >>> result.score, result.sections  # doctest: +SKIP
    ```
    """
    dataset = load_local_dataset(data) if isinstance(data, (str, os.PathLike)) else data
    if isinstance(dataset, DatasetDict):
        raise ValueError(f"Expected one RewardBench split, got splits {list(dataset)}; select one.")
    missing = [c for c in REWARDBENCH_COLUMNS if c not in dataset.column_names]
    if missing:
        raise ValueError(f"RewardBench rows need columns {REWARDBENCH_COLUMNS}; missing {missing}.")
    if len(dataset) == 0:
        raise ValueError("The RewardBench dataset is empty.")
    if conversational is None:
        conversational = getattr(tokenizer, "chat_template", None) is not None
    prompts = [_rewardbench_prompt(p, conversational, i) for i, p in enumerate(dataset["prompt"])]
    sides = {}
    for side in ("chosen", "rejected"):
        responses = [[{"role": "assistant", "content": r}] if conversational else r for r in dataset[side]]
        sides[side] = score_responses(
            model,
            tokenizer,
            responses,
            prompts,
            batch_size=batch_size,
            max_length=max_length,
            show_progress=show_progress,
        ).mean
    correct = sides["chosen"] > sides["rejected"]
    subset_names = np.asarray(dataset["subset"])
    subsets = {
        name: {"accuracy": float(correct[subset_names == name].mean()), "count": int((subset_names == name).sum())}
        for name in np.unique(subset_names)
    }
    result = rewardbench_scores(subsets, include_prior_sets=include_prior_sets)
    if not result.complete:
        logger.warning(
            "RewardBench file lacks official subsets %s; the score is not comparable to the leaderboard.",
            {k: v for k, v in result.missing_subsets.items() if v},
        )
    if result.unscored_subsets:
        logger.info("Subsets outside the leaderboard sections, reported only: %s", result.unscored_subsets)
    return result


def _rewardbench_prompt(prompt, conversational: bool, row: int):
    if isinstance(prompt, str):
        return [{"role": "user", "content": prompt}] if conversational else prompt
    if isinstance(prompt, list) and all(isinstance(m, Mapping) for m in prompt):
        if not conversational:
            raise ValueError(
                f"Row {row} has a conversational prompt; it needs `conversational=True` and a chat template."
            )
        return prompt
    raise ValueError(f"Row {row}: `prompt` must be a string or a list of messages, got {type(prompt).__name__}.")
