"""Hub model cards for trl-anchor reward models, built with `huggingface_hub.ModelCard`.

The card says what μ and σ are and in which units (those of the anchor thresholds), how the anchors were built, the
training hyperparameters, how to read μ with plain transformers and μ/σ/quantile rewards with trl-anchor, the
framework versions and the citations. Its metadata carries `license`, `base_model`, `datasets`,
`pipeline_tag: text-classification`, the tags and a `model-index` with evaluation results.

`AnchorGaussianRewardTrainer.create_model_card` writes it at every checkpoint and on `push_to_hub` (through
`write_trainer_model_card`); `update_model_card` adds the results of `trl-anchor evaluate` to a saved model's card
(`model-index` for data with a Hub dataset id, the card text otherwise: `trl_anchor.pipelines.card_results`).
"""

import os
from collections.abc import Mapping, Sequence
from enum import Enum
from importlib import resources
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub import constants as hub_constants
from transformers import AutoConfig
from transformers.utils import logging

from ..data._common import plain_text
from ..models.configuration_gaussian import gaussian_settings, is_gaussian_config
from .card_results import (
    EVALUATION_END,
    EVALUATION_START,
    LOCAL_RESULTS_KEY,
    METRIC_NAMES,
    PIPELINE_TAG,
    add_card_results,
    eval_results_from_metrics,
    evaluation_section,
    hub_dataset_ids,
    is_hub_dataset_id,
    local_results_from_metrics,
    rewardbench_eval_results,
    rewardbench_values,
)

__all__ = [
    "EVALUATION_END",
    "EVALUATION_START",
    "METRIC_NAMES",
    "build_model_card",
    "card_for_trainer",
    "eval_results_from_metrics",
    "evaluation_section",
    "local_results_from_metrics",
    "resolve_license",
    "rewardbench_eval_results",
    "training_hyperparameters",
    "update_model_card",
    "write_trainer_model_card",
]

logger = logging.get_logger(__name__)

TEMPLATE = "gaussian_rm_model_card.md"
CARD_TAGS = ("trl", "reward-model", "trl-anchor", "uncertainty")
# A license outside the Hub's list must be named and linked (`license_name`, `license_link`); an unknown one gets
# placeholders that point at the LICENSE file the owner still has to add, and the card text says so.
UNKNOWN_LICENSE = {"license": "other", "license_name": "unknown", "license_link": "LICENSE"}

# The usage snippets' example; its plain text comes from `trl_anchor.data.plain_text`, as in training.
EXAMPLE_PROMPT = "Tell me a joke."
EXAMPLE_RESPONSE = "Why did the chicken cross the road?"
PAPER_TITLE = "Variance-aware Reward Modeling with Anchor Guidance"
PAPER_ARXIV_ID = "2605.11865"
PAPER_CITATION = """@misc{fang2026varianceaware,
  title         = {{Variance-aware Reward Modeling with Anchor Guidance}},
  author        = {Fang, Shuxing and Han, Ruijian and Zhang, Liangyu and Zhou, Fan},
  year          = {2026},
  eprint        = {2605.11865},
  archivePrefix = {arXiv},
  primaryClass  = {stat.ML},
  url           = {https://arxiv.org/abs/2605.11865}
}"""
# TRL's own BibTeX entry (as in TRL's model-card templates).
_TRL_AUTHORS = " and ".join(
    [
        "von Werra, Leandro",
        "Belkada, Younes",
        "Tunstall, Lewis",
        "Beeching, Edward",
        "Thrush, Tristan",
        "Lambert, Nathan",
        "Huang, Shengyi",
        "Rasul, Kashif",
        "Gallouédec, Quentin",
    ]
)
TRL_CITATION = f"""@software{{vonwerra2020trl,
  title   = {{{{TRL: Transformers Reinforcement Learning}}}},
  author  = {{{_TRL_AUTHORS}}},
  license = {{Apache-2.0}},
  url     = {{https://github.com/huggingface/trl}},
  year    = {{2020}}
}}"""

# Training arguments shown in the card, in this order (those the run did not set are left out).
HYPERPARAMETERS = (
    "reward_type", "learning_rate", "per_device_train_batch_size", "gradient_accumulation_steps",
    "num_train_epochs", "max_steps", "lr_scheduler_type", "warmup_steps", "optim", "weight_decay", "max_length",
    "anchor_lambda", "anchor_fraction", "anchor_thresholds", "anchor_percentiles", "normalize_anchor_counts",
    "variance_floor", "center_rewards_coefficient", "bf16", "fp16", "gradient_checkpointing", "seed",
)
_GAUSSIAN_ONLY = ("normalize_anchor_counts", "variance_floor")


# ------------------------------------------------------------------------------------------------------- text
def _format_thresholds(thresholds: Sequence[float]) -> str:
    return ", ".join(f"τ_{k + 1} = {t:.4g}" for k, t in enumerate(thresholds))


def units_text(settings: Mapping[str, Any]) -> str:
    """What the unit of μ and σ is, given the anchor thresholds recorded in `config.gaussian_reward`."""
    thresholds = settings.get("anchor_thresholds")
    if not thresholds:
        return (
            "**Units.** This model was trained without anchor labels, so μ and σ are identified only up to a common "
            "scale: pairwise preferences fix `(μ_a − μ_b) / √(σ_a² + σ_b²)`, not σ itself. Compare responses with the "
            "probability above; do not read σ as an absolute amount of disagreement."
        )
    classes = len(thresholds) + 1
    return (
        "**Units.** μ and σ live on the latent reward scale fixed by the anchor thresholds "
        f"{_format_thresholds(thresholds)}: a response's anchor class (0 … {classes - 1}) is the number of thresholds "
        "its latent reward exceeds, so "
        "`P(class ≥ k) = Φ((μ − τ_k) / σ)`. A response with μ = τ_k is as likely to be rated above τ_k as below, and "
        "σ is the spread of people's rewards in the same units as the gaps between thresholds."
    )


def anchors_text(settings: Mapping[str, Any]) -> str:
    """How the anchors were built: source and form, thresholds, λ, fraction, percentiles."""
    thresholds = settings.get("anchor_thresholds")
    if not thresholds:
        return "No anchor labels were used (pairwise soft labels only)."
    form = settings.get("anchor_form")
    forms = {
        "score": "external scores per response (`chosen_score`/`rejected_score`), thresholded into classes",
        "class": "anchor classes per response (`chosen_anchor`/`rejected_anchor`)",
        "counts": "counts of labels over the ordered classes per response, e.g. crowd votes "
        "(`chosen_anchor_counts`/`rejected_anchor_counts`)",
    }
    lines = [f"- **Form:** {forms.get(form, form or 'not recorded')}."]
    if settings.get("anchor_source"):
        lines.append(f"- **Source:** {settings['anchor_source']}.")
    lines.append(f"- **Thresholds:** {_format_thresholds(thresholds)}.")
    if settings.get("anchor_percentiles"):
        percentiles = ", ".join(f"{p:g}" for p in settings["anchor_percentiles"])
        lines.append(f"- **Threshold choice:** the {percentiles} percentiles of the train external scores.")
    if settings.get("anchor_lambda") is not None:
        lines.append(
            f"- **Anchor weight λ:** {settings['anchor_lambda']:g} "
            "(loss = soft-label probit loss + λ · anchor ordinal log-loss of both responses)."
        )
    if settings.get("anchor_fraction") is not None:
        lines.append(f"- **Fraction of train pairs with anchors:** {settings['anchor_fraction']:g}.")
    if settings.get("anchor_group_column") is not None:
        lines.append(
            f"- **Anchor groups:** `{settings['anchor_group_column']}`, {settings['anchor_groups']} train groups with "
            f"their own base rate (offset variance s² = {settings['anchor_group_variance']:.4g}); anchor classes of a "
            "new group's responses are read from N(μ, σ² + s²)."
        )
    if settings.get("anchor_mean_offset"):
        lines.append(
            f"- **Mean offset:** the mean head has no bias, so the anchor thresholds read μ + μ₀ with μ₀ = "
            f"{settings['anchor_mean_offset']:.4g} (the train anchors' base rate); preferences and rankings use μ."
        )
    return "\n".join(lines)


def framework_versions() -> dict[str, str]:
    versions = {}
    for name, package in (
        ("trl-anchor", "trl-anchor"),
        ("TRL", "trl"),
        ("Transformers", "transformers"),
        ("PyTorch", "torch"),
        ("Datasets", "datasets"),
        ("Tokenizers", "tokenizers"),
    ):
        try:
            versions[name] = version(package)
        except PackageNotFoundError:
            versions[name] = "not installed"
    return versions


# -------------------------------------------------------------------------------------------------- metadata
def resolve_license(license: str | None, model_name_or_path: str | None) -> str | None:
    """An explicit license, else the one on the base model's card (a local `README.md` or, online, the Hub card)."""
    if license:
        return license
    if not model_name_or_path:
        return None
    local = Path(model_name_or_path, "README.md")
    try:
        if local.is_file():
            return ModelCard.load(local).data.license
        if not hub_constants.HF_HUB_OFFLINE and not Path(model_name_or_path).exists():
            return ModelCard.load(model_name_or_path).data.license
    except Exception as error:  # best effort: a card without metadata, no network, a private repo, ...
        logger.info(f"Could not read the license of {model_name_or_path}: {error}")
    return None


# ------------------------------------------------------------------------------------------------------ cards
def build_model_card(
    *,
    model_name: str,
    settings: Mapping[str, Any] | None,
    base_model: str | None = None,
    hub_model_id: str | None = None,
    dataset_name: str | None = None,
    license: str | None = None,
    license_name: str | None = None,
    license_link: str | None = None,
    language: str | list[str] | None = None,
    tags: Sequence[str] | None = None,
    hyperparameters: Mapping[str, Any] | None = None,
    eval_results: Sequence[EvalResult] | None = None,
    local_results: Sequence[Mapping[str, Any]] | None = None,
    trainer_name: str = "Anchor Gaussian Reward",
    tracker_urls: Mapping[str, str | None] | None = None,
) -> ModelCard:
    """Build the card of a trl-anchor reward model.

    Args:
        model_name: the model's name (the `model-index` name).
        settings: `config.gaussian_reward` of a Gaussian model (thresholds, λ, ...); `None` for a BT model.
        base_model: the model it was fine-tuned from (a Hub id).
        hub_model_id: the repo the card will live in, used in the usage snippets.
        dataset_name: the training dataset (a Hub id goes into the `datasets` metadata).
        license: the license (a Hub license id); `None` is recorded as `other` with placeholder `license_name` /
            `license_link` (and the text asks to set it); `"other"` needs `license_name` and `license_link`.
        hyperparameters: training settings shown in a table.
        eval_results: `model-index` entries (see `eval_results_from_metrics`, `rewardbench_eval_results`): their
            `dataset_type` must be a Hub dataset id.
        local_results: results on data without a Hub id (`local_results_from_metrics`), shown in the card text.
        tracker_urls: `wandb_url`, `trackio_url`, `comet_url` badges.

    Example:

    ```python
    >>> from trl_anchor.pipelines.cards import build_model_card, eval_results_from_metrics

    >>> card = build_model_card(
    ...     model_name="gaussian-rm",
    ...     settings={"anchor_thresholds": [-0.6, 0.6], "anchor_form": "class", "anchor_lambda": 1.0},
    ...     license="apache-2.0",
    ...     eval_results=eval_results_from_metrics({"accuracy": 0.8}, "me/prefs", dataset_split="test"),
    ... )
    >>> card.data.pipeline_tag, card.data.eval_results[0].metric_value
    ('text-classification', 0.8)
    ```
    """
    gaussian = settings is not None and settings.get("reward_type", "gaussian") == "gaussian"
    all_tags = list(dict.fromkeys([*CARD_TAGS, *(tags or [])]))
    card_data = ModelCardData(
        model_name=model_name,
        base_model=base_model,
        datasets=hub_dataset_ids(dataset_name),
        language=language,
        **_license_metadata(license, license_name, license_link),
        library_name="transformers",
        pipeline_tag=PIPELINE_TAG,
        tags=all_tags,
        eval_results=list(eval_results) if eval_results else None,
        **({LOCAL_RESULTS_KEY: [dict(r) for r in local_results]} if local_results else {}),
    )
    template = resources.files("trl_anchor").joinpath("templates", TEMPLATE)
    return ModelCard.from_template(
        card_data,
        template_str=template.read_text(encoding="utf-8"),
        model_name=model_name,
        base_model=base_model,
        dataset_name=dataset_name,
        repo_id=hub_model_id or model_name,
        trainer_name=trainer_name,
        gaussian=gaussian,
        units_text=units_text(settings or {}),
        anchors_text=anchors_text(settings or {}),
        hyperparameters=dict(hyperparameters or {}),
        evaluation_section=evaluation_section(eval_results, local_results),
        license_unknown=license is None,
        versions=framework_versions(),
        example_prompt=repr(EXAMPLE_PROMPT),
        example_response=repr(EXAMPLE_RESPONSE),
        example_text=repr(plain_text(EXAMPLE_PROMPT, EXAMPLE_RESPONSE)),
        paper_title=PAPER_TITLE,
        paper_id=PAPER_ARXIV_ID,
        paper_citation=PAPER_CITATION,
        trl_citation=TRL_CITATION,
        **{key: url for key, url in (tracker_urls or {}).items() if url},
    )


def _license_metadata(license: str | None, name: str | None, link: str | None) -> dict[str, str | None]:
    if license is None:
        logger.warning(
            "No license given or found on the base model's card; the card says `license: other` with a placeholder "
            "`license_link: LICENSE`: add the file or pass `license=`."
        )
        return dict(UNKNOWN_LICENSE)
    if license == "other" and not (name and link):
        raise ValueError(
            "`license='other'` needs `license_name` (an id for the license) and `license_link` (a URL, or 'LICENSE' "
            "for a file in the repository), as the Hub's model-card metadata requires."
        )
    return {"license": license, "license_name": name, "license_link": link}


def training_hyperparameters(args, world_size: int = 1) -> dict[str, Any]:
    """The card's hyperparameter table from an `AnchorGaussianRewardConfig`, with the total train batch size; settings
    that did not act in this run (epochs under `max_steps`, percentiles of explicit thresholds, anchors of a BT
    arm) are left out."""
    skip = {"num_train_epochs"} if args.max_steps > 0 else set()
    if getattr(args, "reward_type", "gaussian") == "bt":
        skip |= {name for name in HYPERPARAMETERS if name.startswith("anchor_") or name in _GAUSSIAN_ONLY}
    elif isinstance(getattr(args, "anchor_thresholds", None), list):
        skip.add("anchor_percentiles")
    values = {}
    for name in HYPERPARAMETERS:
        value = getattr(args, name, None)
        if (
            name in skip
            or value is None
            or (name == "max_steps" and value <= 0)
            or (name in ("bf16", "fp16") and not value)
        ):
            continue
        values[name] = value.value if isinstance(value, Enum) else value
    values["total_train_batch_size"] = args.per_device_train_batch_size * args.gradient_accumulation_steps * world_size
    return values


def _trainer_eval_metrics(log_history: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """The metrics of the trainer's most recent evaluation, without their `eval_` prefix."""
    for entry in reversed(log_history):
        metrics = {k.removeprefix("eval_"): v for k, v in entry.items() if k.startswith("eval_")}
        if metrics:
            return metrics
    return {}


def _tracker_urls() -> dict[str, str | None]:
    from transformers import is_wandb_available
    from trl.trainer.utils import get_comet_experiment_url, get_trackio_space_url

    wandb_url = None
    if is_wandb_available():
        import wandb

        wandb_url = wandb.run.url if wandb.run is not None else None
    return {"wandb_url": wandb_url, "trackio_url": get_trackio_space_url(), "comet_url": get_comet_experiment_url()}


def card_for_trainer(
    trainer,
    model_name: str | None = None,
    dataset_name: str | None = None,
    tags: str | list[str] | None = None,
    license: str | None = None,
    finetuned_from: str | None = None,
    language: str | list[str] | None = None,
) -> ModelCard:
    """The card of the model an `AnchorGaussianRewardTrainer` is training: settings from the model config,
    hyperparameters from its arguments, `model-index` from its latest evaluation."""
    from accelerate.utils import is_peft_model
    from trl.trainer.utils import get_config_model_id

    model = trainer.accelerator.unwrap_model(trainer.model)
    if is_peft_model(model):
        model = model.get_base_model()
    loaded_from = get_config_model_id(model.config)
    source = finetuned_from or loaded_from
    # Like TRL: a local directory is not a Hub base model, but its README may still carry the license.
    base_model = source if source and not os.path.isdir(source) else None
    license = resolve_license(license, source) or resolve_license(None, loaded_from)
    tags = [tags] if isinstance(tags, str) else list(tags or [])
    tags += [t for t in getattr(trainer, "_tag_names", []) if t not in tags]
    settings = gaussian_settings(model.config) if is_gaussian_config(model.config) else None
    eval_metrics = _trainer_eval_metrics(trainer.state.log_history)
    eval_results = local_results = None
    if eval_metrics and is_hub_dataset_id(dataset_name):
        eval_results = eval_results_from_metrics(eval_metrics, dataset_name, dataset_name, "eval")
    elif eval_metrics:  # the trainer's evaluation split of local data has no Hub id for model-index
        local_results = local_results_from_metrics(eval_metrics, dataset_name or "evaluation split", "eval")
    return build_model_card(
        model_name=model_name or Path(trainer.args.output_dir).name,
        settings=settings,
        base_model=base_model,
        hub_model_id=trainer.hub_model_id,
        dataset_name=dataset_name,
        license=license,
        language=language,
        tags=tags,
        hyperparameters=training_hyperparameters(trainer.args, trainer.accelerator.num_processes),
        eval_results=eval_results,
        local_results=local_results,
        trainer_name=getattr(trainer, "_name", "Anchor Gaussian Reward"),
        tracker_urls=_tracker_urls(),
    )


def write_trainer_model_card(trainer, **kwargs) -> ModelCard:
    """Build the trainer's card (`card_for_trainer` with `kwargs`) and save it as `README.md` in its output dir."""
    card = card_for_trainer(trainer, **kwargs)
    card.save(os.path.join(trainer.args.output_dir, "README.md"))
    return card


def update_model_card(
    directory: str | os.PathLike,
    results,
    *,
    dataset_type: str,
    dataset_name: str | None = None,
    dataset_split: str | None = None,
) -> ModelCard:
    """Add evaluation results to the card (`README.md`) of a saved model, creating a card from its config if missing.

    `results` is an `EvaluationResult`, a `RewardBenchResult` or a mapping of metric names to values. With a Hub
    dataset id as `dataset_type` they go into `model-index`; otherwise (a local file, an adapter) into the card text
    only. Entries for the same dataset, split and metric replace the old ones; the "Evaluation results" section is
    regenerated.

    Example:

    ```python
    >>> from trl_anchor.pipelines.cards import update_model_card

    >>> update_model_card("outputs/gaussian-minilm", {"accuracy": 0.81, "ece": 0.03},
    ...                   dataset_type="my-org/my-prefs", dataset_split="test")  # doctest: +SKIP
    ```
    """
    directory = Path(directory)
    path = directory / "README.md"
    if path.is_file():
        card = ModelCard.load(path)
    else:
        config = AutoConfig.from_pretrained(directory)
        settings = gaussian_settings(config) if is_gaussian_config(config) else None
        card = build_model_card(
            model_name=directory.name,
            settings=settings,
            license=resolve_license(None, getattr(config, "_name_or_path", None)),
        )
    metrics = _metrics_of(results)
    card.data.model_name = card.data.model_name or directory.name
    if is_hub_dataset_id(dataset_type):
        add_card_results(card, _eval_results(results, metrics, dataset_type, dataset_name, dataset_split), [])
    else:
        add_card_results(card, [], _local_results(results, metrics, dataset_name or dataset_type, dataset_split))
    card.save(path)
    return card


def _metrics_of(results) -> dict[str, float]:
    from .evaluation import EvaluationResult
    from .rewardbench import RewardBenchResult

    if isinstance(results, RewardBenchResult):
        return {}
    return dict(results.metrics if isinstance(results, EvaluationResult) else results)


def _local_results(results, metrics, dataset, dataset_split) -> list[dict[str, Any]]:
    from .rewardbench import RewardBenchResult

    if isinstance(results, RewardBenchResult):
        values = rewardbench_values(results).items()
        return [
            {"dataset": dataset, "split": dataset_split, "metric": name, "value": round(float(value), 6)}
            for name, value in values
            if value is not None
        ]
    return local_results_from_metrics(metrics, dataset, dataset_split)


def _eval_results(results, metrics, dataset_type, dataset_name, dataset_split) -> list[EvalResult]:
    from .rewardbench import RewardBenchResult

    if isinstance(results, RewardBenchResult):
        return rewardbench_eval_results(results, dataset_type, dataset_split)
    return eval_results_from_metrics(metrics, dataset_type, dataset_name, dataset_split)
