"""Held-out evaluation of multi-attribute reward models (Gaussian-ordinal or MSE regression), side by side.

Per attribute a, on rated responses: Spearman and Pearson correlation of μ_a with the held-out ratings; the ordinal NLL
of the ratings and the calibration (ECE over all classes' predicted probabilities) of
`P(rating = j) = Φ((μ_a − τ_{a,j})/σ_a) − Φ((μ_a − τ_{a,j+1})/σ_a)`; and, where a per-response disagreement is known
(HelpSteer2's `disagreements` subset: `<a>_std`; synthetic data: the true `true_std_<a>`), the Spearman/Pearson
correlation of σ_a with it. An MSE model has no σ: its class probabilities use one constant σ_a per attribute (its
residual RMSE on a reference set, `residual_std`), the usual way to read a regression model probabilistically. On
preference pairs: the accuracy of the combined reward `wᵀμ` against the majority side and, for Gaussian models, the
soft-label NLL with `Var(r) = Σ w_a² σ_a²`.
"""

import math

import numpy as np
import torch
from datasets import Dataset

from ..losses import gaussian_preference_log_probs, ordinal_log_probs, soft_label_nll
from ..metrics import expected_calibration_error, spearman
from ..models.configuration_gaussian import attribute_record
from ..rewards.scoring import score_responses


def _pearson(x, y) -> float:
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.size < 2 or np.std(x) == 0 or np.std(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def _disagreement_column(columns: list[str], attribute: str) -> str | None:
    for name in (f"{attribute}_std", f"true_std_{attribute}"):
        if name in columns:
            return name
    return None


def rating_metrics(
    mean: np.ndarray, std: np.ndarray | None, ratings: list, thresholds: list[float], disagreement=None
) -> dict[str, float]:
    """Metrics of one attribute from μ, σ (None: no probabilistic metrics) and ratings (None = missing)."""
    rated = np.array([r is not None for r in ratings])
    values = np.array([r for r in ratings if r is not None], dtype=np.int64)
    mean_rated = mean[rated]
    metrics = {"spearman": spearman(mean_rated, values), "pearson": _pearson(mean_rated, values)}
    if std is not None:
        per_response = np.ndim(std) > 0  # a constant σ (the MSE arm) has nothing to correlate
        std = np.broadcast_to(std, mean.shape)
        log_probs = ordinal_log_probs(
            torch.as_tensor(mean_rated), torch.as_tensor(std[rated]), torch.as_tensor(thresholds)
        ).numpy()
        metrics["ordinal_nll"] = float(-log_probs[np.arange(values.size), values].mean())
        onehot = np.eye(len(thresholds) + 1)[values]
        metrics["ece"] = expected_calibration_error(np.exp(log_probs).ravel(), onehot.ravel())
        if disagreement is not None and per_response:
            metrics["sigma_spearman"] = spearman(std, disagreement)
            metrics["sigma_pearson"] = _pearson(std, disagreement)
    return metrics


def evaluate_multi_attribute(
    model,
    tokenizer,
    rated: Dataset,
    pairs: Dataset | None = None,
    *,
    weights: list[float] | None = None,
    thresholds: list[list[float]] | None = None,
    residual_std: list[float] | None = None,
    batch_size: int = 64,
    max_length: int | None = None,
) -> dict[str, float]:
    """Flat metrics `<attribute>/<metric>` and `pairs/<metric>` of a multi-attribute model (see module docstring).

    `weights` and `thresholds` default to those recorded in the model's config; `residual_std` (one σ per attribute)
    gives an MSE model its probabilistic metrics.
    """
    settings = attribute_record(model.config) or {}
    attributes = settings.get("attributes") or [model.config.id2label[i] for i in range(model.config.num_labels)]
    weights = np.asarray(weights if weights is not None else settings["attribute_weights"], np.float64)
    thresholds = thresholds or settings.get("attribute_thresholds") or _midpoints(settings, len(attributes))
    scores = score_responses(model, tokenizer, rated["response"], _prompts(rated), batch_size, max_length)
    results = {}
    for a, name in enumerate(attributes):
        std = scores.std[:, a] if scores.std is not None else None
        if std is None and residual_std is not None:
            std = np.float64(residual_std[a])
        column = _disagreement_column(rated.column_names, name)
        disagreement = None if column is None else np.asarray(rated[column], np.float64)
        metrics = rating_metrics(scores.mean[:, a], std, rated[name], thresholds[a], disagreement)
        results.update({f"{name}/{key}": value for key, value in metrics.items()})
    if pairs is not None:
        results.update(pair_metrics(model, tokenizer, pairs, weights, batch_size, max_length))
    return results


def pair_metrics(model, tokenizer, pairs: Dataset, weights: np.ndarray, batch_size: int, max_length) -> dict:
    """Accuracy (and, for Gaussian models, soft-label NLL) of the combined reward on preference pairs."""
    prompts = _prompts(pairs)
    chosen = score_responses(model, tokenizer, pairs["chosen"], prompts, batch_size, max_length)
    rejected = score_responses(model, tokenizer, pairs["rejected"], prompts, batch_size, max_length)
    labels = np.asarray(pairs["soft_label"], np.float64)
    decided = labels != 0.5
    reward_c, reward_r = chosen.mean @ weights, rejected.mean @ weights
    metrics = {"pairs/accuracy": float(((reward_c > reward_r) == (labels > 0.5))[decided].mean())}
    if chosen.variance is not None:
        log_p, log_q = gaussian_preference_log_probs(
            *(torch.as_tensor(x) for x in (reward_c, chosen.variance @ weights**2, reward_r,
                                           rejected.variance @ weights**2))
        )
        metrics["pairs/soft_label_nll"] = float(soft_label_nll(log_p, log_q, torch.as_tensor(labels)).mean())
    return metrics


def residual_std(model, tokenizer, rated: Dataset, attributes: list[str], batch_size: int = 64, max_length=None):
    """Per-attribute RMSE of μ against the ratings of `rated`: the constant σ_a of a regression (MSE) model."""
    scores = score_responses(model, tokenizer, rated["response"], _prompts(rated), batch_size, max_length)
    out = []
    for a, name in enumerate(attributes):
        pairs = [(m, r) for m, r in zip(scores.mean[:, a], rated[name], strict=True) if r is not None]
        out.append(math.sqrt(np.mean([(m - r) ** 2 for m, r in pairs])))
    return out


def comparison_table(results: dict[str, dict[str, float]], attributes: list[str]) -> str:
    """Markdown table, one row per attribute; each cell lists the arms' values in order ("—" where an arm has none)."""
    metrics = [("spearman", "μ Spearman"), ("pearson", "μ Pearson"), ("ordinal_nll", "ordinal NLL"),
               ("ece", "class ECE"), ("sigma_spearman", "σ vs spread Spearman"),
               ("sigma_pearson", "σ vs spread Pearson")]
    arms = " / ".join(results)
    lines = [f"| attribute ({arms}) | " + " | ".join(label for _, label in metrics) + " |",
             "|---|" + "---|" * len(metrics)]
    for name in attributes:
        cells = [" / ".join(_cell(r.get(f"{name}/{key}")) for r in results.values()) for key, _ in metrics]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for key, label in (("pairs/accuracy", "combined-reward pair accuracy"),
                       ("pairs/soft_label_nll", "pair soft-label NLL")):
        lines.append(f"| {label} | " + " / ".join(_cell(r.get(key)) for r in results.values()) + " |" + " |" * 5)
    return "\n".join(lines)


def _cell(value) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def _prompts(dataset: Dataset):
    return dataset["prompt"] if "prompt" in dataset.column_names else None


def _midpoints(settings: dict, num_attributes: int) -> list[list[float]]:
    max_rating = settings.get("max_rating", 4)
    return [[k - 0.5 for k in range(1, max_rating + 1)]] * num_attributes
