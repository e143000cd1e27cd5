"""What a reward model was trained on, recorded in its config so that evaluations refuse to score it on that data.

`AnchorGaussianRewardTrainer` calls `record_training_data` when it is created: a Gaussian model stores the record under
`config.gaussian_reward["training_data"]`, any other reward model (a BT arm) under `config.trl_anchor_training_data`;
both are saved with the checkpoint. The record holds a content fingerprint of the train (and evaluation) rows and,
when the data has a `contest` column (caption-contest data), the train and validation contests.
`check_not_trained_on` is what the caption benchmark and `evaluate_reward_model` call before scoring.
"""

import hashlib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from datasets import Dataset

TRAINING_DATA_KEY = "training_data"
CONFIG_ATTRIBUTE = "trl_anchor_training_data"
_TEXT_COLUMNS = ("prompt", "chosen", "rejected")
_HASH_BATCH_ROWS = 10_000


class TrainedOnEvaluationDataError(ValueError):
    """A reward model was asked to be scored on data (contests, rows) it was trained on."""


def dataset_fingerprint(dataset) -> str | None:
    """SHA-256 (16 hex digits) of the prompt / chosen / rejected columns of a map-style dataset, independent of how
    it was built (`datasets`' own fingerprints differ for the same rows made twice in memory); `None` for a streamed
    dataset or one without these columns."""
    if not isinstance(dataset, Dataset):
        return None
    columns = [c for c in _TEXT_COLUMNS if c in dataset.column_names]
    if not columns:
        return None
    table = dataset.select_columns(columns).with_format("arrow")[:]
    digest = hashlib.sha256(json.dumps(columns).encode())
    for start in range(0, table.num_rows, _HASH_BATCH_ROWS):  # the values, not their memory layout or chunks
        rows = table.slice(start, _HASH_BATCH_ROWS).to_pylist()
        digest.update(json.dumps(rows, sort_keys=True, ensure_ascii=False).encode())
    return digest.hexdigest()[:16]


def _contests(dataset) -> list[int]:
    if not isinstance(dataset, Dataset) or "contest" not in dataset.column_names:
        return []
    return sorted({int(c) for c in dataset.unique("contest")})


def training_data_record(train_dataset, eval_dataset=None) -> dict[str, Any]:
    """The record `record_training_data` stores: fingerprints and rows of the train and evaluation data, and the
    train / validation contests of caption-contest data (empty lists otherwise)."""
    evaluations = list(eval_dataset.values()) if isinstance(eval_dataset, Mapping) else [eval_dataset]
    evaluations = [d for d in evaluations if d is not None]
    return {
        "train_fingerprint": dataset_fingerprint(train_dataset),
        "train_rows": len(train_dataset) if isinstance(train_dataset, Dataset) else None,
        "train_contests": _contests(train_dataset),
        "validation_fingerprints": [f for f in map(dataset_fingerprint, evaluations) if f is not None],
        "validation_contests": sorted({c for d in evaluations for c in _contests(d)}),
    }


def record_training_data(model, train_dataset, eval_dataset=None) -> dict[str, Any]:
    """Store `training_data_record(train_dataset, eval_dataset)` in the model's config (see the module docstring)."""
    model = model.get_base_model() if hasattr(model, "get_base_model") else model
    record = training_data_record(train_dataset, eval_dataset)
    config = model.config
    settings = getattr(config, "gaussian_reward", None)
    if isinstance(settings, Mapping):
        config.gaussian_reward = {**settings, TRAINING_DATA_KEY: record}
    else:
        setattr(config, CONFIG_ATTRIBUTE, record)
    return record


def recorded_training_data(config) -> dict[str, Any] | None:
    """The training-data record of a model config, or `None` when it has none (a model trained elsewhere)."""
    settings = getattr(config, "gaussian_reward", None)
    if isinstance(settings, Mapping) and settings.get(TRAINING_DATA_KEY):
        return settings[TRAINING_DATA_KEY]
    return getattr(config, CONFIG_ATTRIBUTE, None) or None


def check_not_trained_on(
    config, contests: Iterable[int] | None = None, dataset=None, what: str = "this evaluation"
) -> list[str]:
    """Raise `TrainedOnEvaluationDataError` when `contests` (or the `contest` column of `dataset`) include contests
    the model was trained on, or when `dataset` holds exactly its training rows. Returns notes for what is allowed but
    worth saying: validation contests (used for choices during training) and a model without a record."""
    record = recorded_training_data(config)
    if record is None:
        return ["The model records no training data, so overlap with the evaluation data could not be checked."]
    contests = sorted({int(c) for c in (contests or [])} | set(_contests(dataset)))
    trained = sorted(set(contests) & set(record.get("train_contests") or []))
    if trained:
        raise TrainedOnEvaluationDataError(
            f"The reward model was trained on contests {trained}, which {what} would score it on: that measures "
            f"memorisation, not held-out performance. Use contests it did not train on (it trained on "
            f"{len(record['train_contests'])} contests; its record is in the config's training data), or pass "
            "`allow_training_data=True` to score them anyway."
        )
    fingerprint = dataset_fingerprint(dataset) if dataset is not None else None
    if fingerprint is not None and fingerprint == record.get("train_fingerprint"):
        raise TrainedOnEvaluationDataError(
            f"The data of {what} is the reward model's training set (same rows, fingerprint {fingerprint}); pass "
            "held-out data, or `allow_training_data=True` to score it anyway."
        )
    notes = []
    validation = sorted(set(contests) & set(record.get("validation_contests") or []))
    if validation or (fingerprint is not None and fingerprint in (record.get("validation_fingerprints") or [])):
        notes.append(
            "This data was the model's validation data during training (used for its choices, e.g. early stopping "
            f"or λ){f': contests {validation}' if validation else ''}; it is not a held-out test."
        )
    return notes
