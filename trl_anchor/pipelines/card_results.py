"""Evaluation results in a model card: `model-index` entries for data with a Hub dataset id, a card-text table for the
rest, and the card's regenerable "Evaluation results" section.

The Hub's `model-index` names a dataset by its Hub id (`dataset.type`), so results on local files, on a trl-anchor
adapter's output or on a trainer's evaluation split cannot go there: they are listed in the card's text (and kept in
the card metadata under `trl_anchor_local_results`, so that later updates regenerate the same table).
"""

import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult

PIPELINE_TAG = "text-classification"
EVALUATION_START = "<!-- trl-anchor:evaluation:start -->"
EVALUATION_END = "<!-- trl-anchor:evaluation:end -->"
LOCAL_RESULTS_KEY = "trl_anchor_local_results"
_REPO_ID = re.compile(r"[\w.-]+(/[\w.-]+)?")
_DATA_FILE_SUFFIXES = {".json", ".jsonl", ".csv", ".parquet", ".arrow", ".txt", ".tsv", ".gz"}

# metric key → (model-index metric type, display name). Keys are those of `EvaluationResult.metrics` and of the
# trainer's eval logs (without the `eval_` prefix).
METRIC_NAMES = {
    "accuracy": ("accuracy", "Pairwise accuracy"),
    "brier": ("brier_score", "Brier score"),
    "soft_ce": ("cross_entropy", "Soft-label cross-entropy"),
    "ece": ("ece", "Expected calibration error"),
    "anchor_accuracy": ("anchor_accuracy", "Anchor accuracy"),
    "anchor_nll": ("anchor_nll", "Anchor NLL"),
    "anchor_nll_base_rate": ("anchor_nll", "Anchor NLL of the train base rate (reference)"),
    "mean_sigma": ("mean_sigma", "Mean σ"),
    "mean_std": ("mean_sigma", "Mean σ"),
    "sigma_spread": ("sigma_spread", "σ spread (std across responses)"),
    "sigma_spearman_soft_label": ("spearmanr", "Spearman ρ(σ, soft-label disagreement)"),
    "sigma_spearman_vote_spread": ("spearmanr", "Spearman ρ(σ, vote spread)"),
    # The vote spread is almost a function of the crowd mean: this is what σ says beyond μ.
    "sigma_partial_vote_spread": ("spearmanr", "Partial Spearman ρ(σ, vote spread | crowd mean)"),
}


def is_hub_dataset_id(name: str | None) -> bool:
    """Whether `name` can be a Hub dataset id (`org/name` or a canonical `name`), not a local path, a data file, a
    trl-anchor adapter module or a description.

    Example:

    ```python
    >>> [is_hub_dataset_id(n) for n in ("me/prefs", "data/test.jsonl", "trl_anchor.data.synthetic", "eval split")]
    [True, False, False, False]
    ```
    """
    return bool(name) and bool(_REPO_ID.fullmatch(name)) and not _looks_local(name) and "trl_anchor." not in name


def hub_dataset_ids(names: Sequence[str] | str | None) -> list[str] | None:
    """Only Hub dataset ids belong in the `datasets` metadata, not local paths or descriptions."""
    names = [names] if isinstance(names, str) else list(names or [])
    ids = [n for n in names if is_hub_dataset_id(n)]
    return ids or None


def _looks_local(name: str) -> bool:
    return os.path.exists(name) or name.startswith((".", "~")) or Path(name).suffix in _DATA_FILE_SUFFIXES


def metric_names(key: str) -> tuple[str, str] | None:
    """(metric type, display name) of a metric key; `None` for metrics a card does not show."""
    if key in METRIC_NAMES:
        return METRIC_NAMES[key]
    if key.startswith("sigma_spearman_"):
        return "spearmanr", f"Spearman ρ(σ, {key.removeprefix('sigma_spearman_')})"
    if key.startswith("sigma_partial_"):
        return "spearmanr", f"Partial Spearman ρ(σ, {key.removeprefix('sigma_partial_')} | true mean)"
    return None


def _named_values(metrics: Mapping[str, float]):
    for key, value in metrics.items():
        names = metric_names(key)
        if names is not None and value is not None and not math.isnan(value):
            yield names, round(float(value), 6)


def eval_results_from_metrics(
    metrics: Mapping[str, float],
    dataset_type: str,
    dataset_name: str | None = None,
    dataset_split: str | None = None,
) -> list[EvalResult]:
    """`model-index` entries for the metrics trl-anchor knows how to name (others are skipped); NaN values skipped.
    `dataset_type` must be a Hub dataset id (`is_hub_dataset_id`); use `local_results_from_metrics` otherwise."""
    if not is_hub_dataset_id(dataset_type):
        raise ValueError(
            f"`dataset_type` must be a Hub dataset id (e.g. 'org/name'), got {dataset_type!r}: the Hub's model-index "
            "names datasets by id. Results on other data go to the card text (`local_results_from_metrics`)."
        )
    return [
        EvalResult(
            task_type=PIPELINE_TAG,
            dataset_type=dataset_type,
            dataset_name=dataset_name or dataset_type,
            dataset_split=dataset_split,
            metric_type=metric_type,
            metric_name=metric_name,
            metric_value=value,
        )
        for (metric_type, metric_name), value in _named_values(metrics)
    ]


def local_results_from_metrics(
    metrics: Mapping[str, float], dataset: str, dataset_split: str | None = None
) -> list[dict[str, Any]]:
    """Card-text rows (`dataset`, `split`, `metric`, `value`) for results on data without a Hub id."""
    return [
        {"dataset": dataset, "split": dataset_split, "metric": metric_name, "value": value}
        for (_, metric_name), value in _named_values(metrics)
    ]


def rewardbench_values(result) -> dict[str, float]:
    """Metric display name → value of a `RewardBenchResult`: the overall score and each section."""
    return {f"RewardBench {name}": value for name, value in {"Score": result.score, **result.sections}.items()}


def rewardbench_eval_results(
    result, dataset_type: str = "allenai/reward-bench", dataset_split: str | None = "filtered"
) -> list[EvalResult]:
    """`model-index` entries of a `RewardBenchResult`: the overall score and each section (accuracy in [0, 1])."""
    return [
        EvalResult(
            task_type=PIPELINE_TAG,
            dataset_type=dataset_type,
            dataset_name="RewardBench",
            dataset_split=dataset_split,
            metric_type="accuracy",
            metric_name=name,
            metric_value=round(float(value), 6),
        )
        for name, value in rewardbench_values(result).items()
        if value is not None
    ]


def evaluation_section(
    eval_results: Sequence[EvalResult] | None, local_results: Sequence[Mapping[str, Any]] | None = None
) -> str:
    """The markdown section listing the card's results (`model-index` ones, then those on local data), between
    markers so it can be regenerated."""
    lines = [EVALUATION_START, "## Evaluation results", ""]
    rows = [
        (r.dataset_name, r.dataset_split, r.metric_name or r.metric_type, r.metric_value) for r in eval_results or []
    ]
    rows += [(f"{r['dataset']} (local)", r["split"], r["metric"], r["value"]) for r in local_results or []]
    if rows:
        lines += ["| dataset | split | metric | value |", "|---|---|---|---|"]
        for dataset, split, metric, value in rows:
            shown = f"{value:.4f}" if isinstance(value, float) else str(value)
            metric = str(metric).replace("|", "\\|")  # "ρ(σ, x | mean)" must not split the table cell
            lines.append(f"| {dataset} | {split or '—'} | {metric} | {shown} |")
        if local_results:
            lines += ["", "Rows marked (local) are on data without a Hub dataset id; they are not in `model-index`."]
    else:
        lines.append(
            "No evaluation results yet: `trl-anchor evaluate --model_name_or_path <dir> ... "
            "--update_model_card` adds them."
        )
    lines.append(EVALUATION_END)
    return "\n".join(lines)


def replace_evaluation_section(text: str, section: str) -> str:
    start, end = text.find(EVALUATION_START), text.find(EVALUATION_END)
    if start != -1 and end != -1:
        return text[:start] + section + text[end + len(EVALUATION_END) :]
    # A card written by someone else: append the section before the citations, or at the end.
    anchor = text.find("\n## Citations")
    if anchor == -1:
        return text.rstrip() + "\n\n" + section + "\n"
    return text[:anchor] + "\n" + section + "\n" + text[anchor:]


def add_card_results(card, eval_results: Sequence[EvalResult], local_results: Sequence[Mapping[str, Any]]) -> None:
    """Add `model-index` entries and local-data rows to `card` (a `huggingface_hub.ModelCard`) in place: a new entry
    replaces an old one for the same dataset, split and metric, and the "Evaluation results" section is regenerated;
    the rest of the card is kept."""
    if eval_results:
        replaced = {(r.dataset_type, r.dataset_split, r.metric_name) for r in eval_results}
        old = card.data.eval_results or []
        kept = [r for r in old if (r.dataset_type, r.dataset_split, r.metric_name) not in replaced]
        card.data.eval_results = kept + list(eval_results)
    if local_results:
        replaced_local = {(r["dataset"], r["split"], r["metric"]) for r in local_results}
        old_local = card.data.to_dict().get(LOCAL_RESULTS_KEY) or []
        kept_local = [r for r in old_local if (r["dataset"], r["split"], r["metric"]) not in replaced_local]
        setattr(card.data, LOCAL_RESULTS_KEY, kept_local + list(local_results))
    local = card.data.to_dict().get(LOCAL_RESULTS_KEY)
    card.text = replace_evaluation_section(card.text, evaluation_section(card.data.eval_results, local))
