"""Hub model cards for multi-attribute reward models (HelpSteer2 / SteerLM format), with `huggingface_hub.ModelCard`.

The card lists the attributes with their combination weights and thresholds, says how to load μ with plain
transformers and μ, σ with trl-anchor, and reports the held-out metrics of
`trl_anchor.pipelines.multi_attribute_evaluation` (also as `model-index` entries). `update_attribute_model_card` adds
the results of `trl-anchor evaluate` (per attribute, and RewardBench of the combined reward) to an existing card.
"""

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..models.configuration_gaussian import attribute_record
from .card_results import PIPELINE_TAG, add_card_results, is_hub_dataset_id, rewardbench_eval_results

# metric key suffix → (model-index metric type, readable name)
_METRICS = {
    "spearman": ("spearmanr", "Spearman ρ(μ, rating)"),
    "pearson": ("pearsonr", "Pearson r(μ, rating)"),
    "ordinal_nll": ("nll", "ordinal NLL of the ratings"),
    "ece": ("ece", "class-probability ECE"),
    "sigma_spearman": ("spearmanr", "Spearman ρ(σ, annotator spread)"),
    "sigma_pearson": ("pearsonr", "Pearson r(σ, annotator spread)"),
    "accuracy": ("accuracy", "combined-reward pair accuracy"),
    "soft_label_nll": ("nll", "combined-reward pair soft-label NLL"),
}
WEIGHTS_SOURCE = (
    "NVIDIA's recommended HelpSteer2 combination (model card of "
    "[nvidia/Llama3-70B-SteerLM-RM](https://huggingface.co/nvidia/Llama3-70B-SteerLM-RM); HelpSteer2, "
    "[arXiv:2406.08673](https://arxiv.org/abs/2406.08673))"
)


def attribute_eval_results(metrics: Mapping[str, float], dataset_type: str, split: str | None = None):
    """`model-index` entries for `<attribute>/<metric>` and `pairs/<metric>` keys (NaN skipped)."""
    results = []
    for key, value in metrics.items():
        scope, _, metric = key.partition("/")
        if metric not in _METRICS or value is None or math.isnan(value):
            continue
        metric_type, name = _METRICS[metric]
        results.append(EvalResult(
            task_type=PIPELINE_TAG, dataset_type=dataset_type, dataset_name=dataset_type, dataset_split=split,
            metric_type=metric_type, metric_name=f"{scope}: {name}", metric_value=round(float(value), 6),
        ))
    return results


def attributes_section(settings: Mapping[str, Any], metrics: Mapping[str, float] | None = None) -> str:
    """Markdown: one row per attribute with its weight, thresholds and metrics."""
    attributes, weights = settings["attributes"], settings.get("attribute_weights") or []
    thresholds = settings.get("attribute_thresholds") or [None] * len(attributes)
    keys = [k for k in _METRICS if k not in ("accuracy", "soft_label_nll")]
    shown = [k for k in keys if metrics and any(f"{a}/{k}" in metrics for a in attributes)]
    lines = ["| attribute | weight | thresholds | " + " | ".join(_METRICS[k][1] for k in shown) + " |",
             "|---|---|---|" + "---|" * len(shown)]
    for i, name in enumerate(attributes):
        weight = f"{weights[i]:g}" if i < len(weights) else "—"
        cuts = "—" if thresholds[i] is None else ", ".join(f"{t:.3g}" for t in thresholds[i])
        cells = [_cell((metrics or {}).get(f"{name}/{k}")) for k in shown]
        lines.append(f"| {name} | {weight} | {cuts} | " + " | ".join(cells) + " |")
    for key in ("pairs/accuracy", "pairs/soft_label_nll"):
        if metrics and key in metrics:
            lines.append(f"\n{_METRICS[key.split('/')[1]][1]}: {_cell(metrics[key])}")
    return "\n".join(lines)


def build_attribute_model_card(
    model_name: str,
    settings: Mapping[str, Any],
    *,
    metrics: Mapping[str, float] | None = None,
    eval_dataset: str = "held-out ratings",
    base_model: str | None = None,
    dataset_name: str | None = None,
    license: str | None = None,
) -> ModelCard:
    """The card of a multi-attribute reward model (`settings`: `config.gaussian_reward` or `config.attribute_reward`).

    Example:

    ```python
    >>> card = build_attribute_model_card("rm", {"attributes": ["helpfulness", "verbosity"],
    ...                                          "attribute_weights": [1.0, -0.4], "loss_type": "ordinal"},
    ...                                   metrics={"helpfulness/spearman": 0.8})
    >>> "| helpfulness | 1 |" in card.text, card.data.eval_results[0].metric_value
    (True, 0.8)
    ```
    """
    gaussian = settings.get("loss_type", "ordinal") == "ordinal"
    data = ModelCardData(
        model_name=model_name, base_model=base_model, license=license or "other", library_name="transformers",
        pipeline_tag=PIPELINE_TAG, tags=["trl", "reward-model", "trl-anchor", "multi-attribute", "uncertainty"],
        datasets=[dataset_name] if dataset_name and "/" in dataset_name and not Path(dataset_name).exists() else None,
        eval_results=attribute_eval_results(metrics or {}, eval_dataset) or None,
    )
    kind = ("a Gaussian multi-attribute reward model: μ_a and σ_a per attribute, trained with the ordinal likelihood "
            "of the ratings" if gaussian else "a multi-attribute regression (MSE) reward model: μ_a per attribute")
    weights = settings.get("attribute_weights")
    spec = "quantile:0.1" if weights is None else ",".join(["quantile:0.1", ":".join(["weights", *map(str, weights)])])
    trained_on = f" on {dataset_name}" if dataset_name else ""
    text = f"""# {model_name}

{model_name} is {kind}, trained with trl-anchor's `MultiAttributeRewardTrainer`{trained_on}.

## Attributes

{attributes_section(settings, metrics)}

The combined reward is `r = Σ_a w_a μ_a`{' with `σ_r² = Σ_a w_a² σ_a²` (attributes independent given the response)'
if gaussian else ''}. The default weights of HelpSteer2's five attributes are {WEIGHTS_SOURCE}.

## Usage

```python
from transformers import AutoModelForSequenceClassification
model = AutoModelForSequenceClassification.from_pretrained("{model_name}")  # logits = μ per attribute
```

```python
from trl_anchor import GaussianRewardFunction
reward = GaussianRewardFunction("{model_name}", transform="{spec}")  # GRPO / RLOO
```
"""
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n{text}")


def update_attribute_model_card(
    directory: str | os.PathLike, results, *, dataset_type: str, dataset_split: str | None = None
) -> ModelCard:
    """Add evaluation results to the card (`README.md`) of a saved multi-attribute model, keeping its text.

    `results` is the metrics mapping of `evaluate_multi_attribute` or a `RewardBenchResult` (of the combined reward).
    With a Hub dataset id as `dataset_type` they go into `model-index`, otherwise into the card text only (as
    `trl_anchor.pipelines.cards.update_model_card` does for scalar models); entries for the same dataset, split and
    metric replace the old ones. A model without a card gets the one `build_attribute_model_card` writes.

    Example:

    ```python
    >>> update_attribute_model_card("outputs/helpsteer2-gaussian", {"helpfulness/spearman": 0.61},
    ...                             dataset_type="nvidia/HelpSteer2", dataset_split="validation")  # doctest: +SKIP
    ```
    """
    from .rewardbench import RewardBenchResult

    directory = Path(directory)
    path = directory / "README.md"
    card = ModelCard.load(path) if path.is_file() else _card_from_config(directory)
    if isinstance(results, RewardBenchResult):
        new = rewardbench_eval_results(results, dataset_type, dataset_split)
    else:
        new = attribute_eval_results(results, dataset_type, dataset_split)
    if is_hub_dataset_id(dataset_type):
        add_card_results(card, new, [])
    else:
        local = [{"dataset": dataset_type, "split": dataset_split, "metric": r.metric_name, "value": r.metric_value}
                 for r in new]
        add_card_results(card, [], local)
    card.save(path)
    return card


def _card_from_config(directory: Path) -> ModelCard:
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(directory)
    settings = attribute_record(config)
    if settings is None:
        raise ValueError(f"{directory} is not a multi-attribute reward model: its config records no attributes.")
    return build_attribute_model_card(directory.name, settings)


def _cell(value) -> str:
    return "—" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"
