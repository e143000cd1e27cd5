"""The `config.gaussian_reward` record of a Gaussian reward model: its variance floor, attributes, anchors and
training facts, how to read it, and how a backbone's config becomes a Gaussian model's.

The record is a plain mapping in `config.json`, so a checkpoint stays an ordinary checkpoint of the backbone's class
(see `modeling_gaussian`); every reader goes through `gaussian_settings`, which validates the variance floor.
"""

import math
from typing import Any

from transformers import PretrainedConfig

GAUSSIAN_CONFIG_KEY = "gaussian_reward"
# Where the MSE arm of `MultiAttributeRewardTrainer` (a plain model, no Gaussian record) keeps its attributes.
ATTRIBUTE_CONFIG_KEY = "attribute_reward"
DEFAULT_VARIANCE_FLOOR = 1e-4


def check_variance_floor(value: Any, where: str = "`variance_floor`") -> float:
    """`value` as a float if it is a positive finite number; a `ValueError` naming `where` otherwise.

    A floor ≤ 0 lets σ² reach 0 or go negative (NaN σ, a loss of 0 and NaN parameters), so it is refused on every
    path: the trainer's config, a model built or loaded from a config, and a variance head built directly.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
        raise ValueError(f"{where} must be a positive finite number, got {value!r}.")
    return float(value)



def gaussian_settings(config: PretrainedConfig) -> dict[str, Any]:
    settings = getattr(config, GAUSSIAN_CONFIG_KEY, None) or {"variance_floor": DEFAULT_VARIANCE_FLOOR}
    if not isinstance(settings, dict):
        raise ValueError(f"`config.{GAUSSIAN_CONFIG_KEY}` must be a mapping, got {settings!r}.")
    settings = dict(settings)
    settings.setdefault("variance_floor", DEFAULT_VARIANCE_FLOOR)
    where = f"`config.{GAUSSIAN_CONFIG_KEY}.variance_floor`"
    settings["variance_floor"] = check_variance_floor(settings["variance_floor"], where)
    return settings


def anchor_scale(settings: dict[str, Any]) -> dict[str, float]:
    """What μ and σ² need before they meet the anchor thresholds, from a `config.gaussian_reward` record: the mean
    offset μ₀ (`anchor_mean_offset`, recorded for a mean head without a bias) and the new-group variance s²
    (`anchor_group_variance`, recorded by anchor groups); both 0 when not recorded. Keyed by the field names of
    `RewardScores` and `RewardTransform` (`mean_offset`, `group_variance`: the record's keys without `anchor_`)."""
    scale = {field: float(settings.get(f"anchor_{field}") or 0.0) for field in ("mean_offset", "group_variance")}
    for field, value in scale.items():
        if not math.isfinite(value) or (field == "group_variance" and value < 0):
            bound = " ≥ 0" if field == "group_variance" else ""
            raise ValueError(
                f"`config.{GAUSSIAN_CONFIG_KEY}.anchor_{field}` must be a finite number{bound}, got "
                f"{settings.get(f'anchor_{field}')!r}."
            )
    return scale


def is_gaussian_config(config: PretrainedConfig) -> bool:
    """Whether a (saved) config belongs to a Gaussian reward model."""
    return getattr(config, GAUSSIAN_CONFIG_KEY, None) is not None


def attribute_names(config: PretrainedConfig) -> list[str] | None:
    """The attribute names of a multi-attribute Gaussian reward model, `None` for a scalar one."""
    return gaussian_settings(config).get("attributes")


def attribute_record(config: PretrainedConfig) -> dict[str, Any] | None:
    """The record of a multi-attribute reward model (its `attributes`, `attribute_weights`, `attribute_thresholds`):
    `config.gaussian_reward` of a Gaussian one, `config.attribute_reward` of the MSE arm (a plain transformers model);
    `None` for a one-output model."""
    if is_gaussian_config(config):
        settings = gaussian_settings(config)
    else:
        settings = getattr(config, ATTRIBUTE_CONFIG_KEY, None) or {}
    return settings if settings.get("attributes") is not None else None


def prepare_gaussian_config(
    config: PretrainedConfig, variance_floor: float | None, attributes: list[str] | None = None
) -> None:
    """Write the Gaussian record into `config` (in place): the attributes (`num_labels`, `id2label`) or the single
    reward's `num_labels=1` check, and the variance floor."""
    settings = gaussian_settings(config)
    if attributes is not None:
        attributes = [str(name) for name in attributes]
        if not attributes or len(set(attributes)) != len(attributes):
            raise ValueError(f"`attributes` must be distinct names, at least one, got {attributes}.")
        settings["attributes"] = attributes
        config.num_labels = len(attributes)
    attributes = settings.get("attributes")
    if attributes is None and config.num_labels != 1:
        raise ValueError(
            f"A Gaussian reward model needs `num_labels=1` (the mean reward μ), got num_labels={config.num_labels}; "
            "pass `attributes=[...]` for a multi-attribute model."
        )
    if attributes is not None:
        if len(attributes) != config.num_labels:
            raise ValueError(f"The config has num_labels={config.num_labels} but {len(attributes)} attributes.")
        # Plain transformers reports the attributes by name, and its own `labels` loss is the NeMo-style MSE.
        config.id2label = dict(enumerate(attributes))
        config.label2id = {name: i for i, name in enumerate(attributes)}
        config.problem_type = "regression"
    if variance_floor is not None:
        settings["variance_floor"] = check_variance_floor(variance_floor)
    settings.setdefault("reward_type", "gaussian")
    config.gaussian_reward = settings
