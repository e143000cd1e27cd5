"""Anchor labels from an external reward model: score `chosen` and `rejected` of any preference dataset.

The published recipe thresholds an external reward model's scores at their 25th/75th percentiles over the train set;
this module writes the raw scores as `chosen_score`/`rejected_score` (the trainer's "score" anchor form, resolved with
`anchor_thresholds="auto"`) and reports the thresholds they resolve to. The scorer is either a sequence-classification
reward model (loaded by `trl_anchor.models.loading.load_reward_model`, scored with its own tokenizer and chat template
through `trl_anchor.rewards.scoring.score_responses`) or any Python callable `scorer(prompts, responses) ->
list[float]`, e.g. an LLM-as-judge. Scores are cached on disk by a hash of (prompt, response, scorer identity), so
an interrupted run resumes where it stopped and repeated responses are scored once. The identity holds everything that
changes a score: the scorer's name, a fingerprint of a model's weights
(`trl_anchor.models.loading.weights_fingerprint`) and `max_length`.
"""

import hashlib
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset, DatasetDict

from ..anchors import ANCHOR_FORMS, DEFAULT_PERCENTILES, check_finite_scores, thresholds_from_scores
from ..models.loading import load_reward_model, weights_fingerprint
from ..rewards.scoring import score_responses

logger = logging.getLogger(__name__)

Text = str | list[dict[str, Any]]
Scorer = Callable[[list[Text | None], list[Text]], Sequence[float]]
SCORE_COLUMNS = ANCHOR_FORMS["score"]


@dataclass
class AnchorLabelingResult:
    """The labelled dataset and what was resolved on the way.

    `thresholds` are τ at `percentiles` of the (centred) train scores of both sides; `center` is the train mean that
    was subtracted (`None` without centring); `num_scored`/`num_cached` count the distinct (prompt, response) pairs
    scored in this run and reused from the cache.
    """

    dataset: Dataset | DatasetDict
    thresholds: list[float]
    percentiles: list[float]
    center: float | None
    scorer_id: str
    num_scored: int = 0
    num_cached: int = 0
    train_split: str | None = None
    splits: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "scorer": self.scorer_id,
            "anchor_thresholds": self.thresholds,
            "anchor_percentiles": self.percentiles,
            "center": self.center,
            "train_split": self.train_split,
            "splits": self.splits,
            "num_scored": self.num_scored,
            "num_cached": self.num_cached,
        }


class ScoreCache:
    """Append-only JSON-lines cache `{"key": sha256(prompt, response, scorer identity), "score": float}`.

    Each batch of new scores is appended and flushed, so a crash loses at most the batch being scored; a truncated last
    line (from a crash mid-write) is skipped and counted.
    """

    def __init__(self, path: str | os.PathLike | None):
        self.path = None if path is None else Path(path)
        self.scores: dict[str, float] = {}
        if self.path is not None and self.path.is_file():
            self._load()

    def _load(self) -> None:
        broken = 0
        try:
            lines = self.path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as error:
            raise ValueError(
                f"The score cache {self.path} is not UTF-8 JSON lines ({error}); is `cache_file` the right file?"
            ) from None
        for line in lines:
            try:
                entry = json.loads(line)
                self.scores[entry["key"]] = float(entry["score"])
            except (ValueError, KeyError, TypeError):
                broken += 1
        logger.info(f"Score cache {self.path}: {len(self.scores)} cached scores.")
        if broken:
            logger.warning(f"Score cache {self.path}: skipped {broken} unreadable line(s) (an interrupted write?).")

    def _ends_mid_line(self) -> bool:
        if not self.path.is_file() or self.path.stat().st_size == 0:
            return False
        with open(self.path, "rb") as handle:
            handle.seek(-1, os.SEEK_END)
            return handle.read(1) != b"\n"

    def add(self, keys: Sequence[str], scores: Sequence[float]) -> None:
        entries = dict(zip(keys, (float(s) for s in scores), strict=True))
        self.scores.update(entries)
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as handle:
            if self._ends_mid_line():
                handle.write("\n")  # never glue a new entry onto a line cut short by a crash
            handle.writelines(json.dumps({"key": k, "score": s}) + "\n" for k, s in entries.items())
            handle.flush()
            os.fsync(handle.fileno())


def cache_key(prompt: Text | None, response: Text, scorer_key: str) -> str:
    """Stable hash of one scoring request (the prompt and response as JSON, so message lists hash too) by the scorer
    whose identity is `scorer_key`."""
    payload = json.dumps([prompt, response, scorer_key], ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def model_scorer(model, tokenizer, batch_size: int = 16, max_length: int | None = None, show_progress: bool = False):
    """Wrap a reward model as a `scorer(prompts, responses)` that uses its own tokenizer and chat template."""

    def scorer(prompts: list[Text | None], responses: list[Text]) -> np.ndarray:
        has_prompt = [p is not None for p in prompts]
        if any(has_prompt) and not all(has_prompt):
            raise ValueError("Either every example has a prompt or none has (implicit-prompt datasets).")
        return score_responses(
            model,
            tokenizer,
            responses,
            prompts=prompts if all(has_prompt) else None,
            batch_size=batch_size,
            max_length=max_length,
            show_progress=show_progress,
        ).mean

    return scorer


def _resolve_scorer(scorer, tokenizer, scorer_id, batch_size, max_length, show_progress, cache_file):
    """The scoring function, its name, and its identity in the cache keys (the name and every setting that changes
    a score)."""
    from transformers import PreTrainedModel

    if isinstance(scorer, (str, os.PathLike)):
        name = str(scorer)
        # float32 whatever the checkpoint's dtype: the percentiles of these scores become the anchor thresholds.
        model, tokenizer = load_reward_model(name, dtype="float32")
        identity = {"scorer": scorer_id or name, "weights": weights_fingerprint(name), "max_length": max_length}
        return model_scorer(model, tokenizer, batch_size, max_length, show_progress), scorer_id or name, identity
    if isinstance(scorer, PreTrainedModel):
        if tokenizer is None:
            raise ValueError("Scoring with a model instance needs its `tokenizer` (for its chat template).")
        name = scorer_id or getattr(scorer.config, "_name_or_path", "") or type(scorer).__name__
        identity = {"scorer": name, "weights": weights_fingerprint(scorer), "max_length": max_length}
        return model_scorer(scorer, tokenizer, batch_size, max_length, show_progress), name, identity
    if callable(scorer):
        name = scorer_id or getattr(scorer, "__qualname__", None) or type(scorer).__name__
        if scorer_id is None and cache_file is not None and ("<lambda>" in name or "<locals>" in name):
            # Two lambdas or closures share a qualified name, so one would be served the other's cached scores.
            raise ValueError(
                f"The scorer {name!r} is a lambda or a nested function, whose name does not tell it apart from "
                "others; pass `scorer_id` (changed whenever the scorer changes) to cache its scores."
            )
        return scorer, name, {"scorer": name}
    raise TypeError(f"`scorer` must be a model id/path, a PreTrainedModel or a callable, got {type(scorer).__name__}.")


def _requests(dataset: Dataset) -> tuple[list[Text | None], list[Text]]:
    """(prompt, response) of every chosen then every rejected response; implicit-prompt rows have prompt `None`."""
    for column in ("chosen", "rejected"):
        if column not in dataset.column_names:
            raise ValueError(f"The dataset has no `{column}` column (columns: {dataset.column_names}).")
    n = len(dataset)
    prompts = dataset["prompt"] if "prompt" in dataset.column_names else [None] * n
    return list(prompts) * 2, list(dataset["chosen"]) + list(dataset["rejected"])


def _score_all(requests, scorer, scorer_key, cache: ScoreCache, chunk_size: int) -> tuple[np.ndarray, int, int]:
    """Scores for every request; distinct uncached requests are scored in chunks, each saved to the cache."""
    prompts, responses = requests
    keys = [cache_key(p, r, scorer_key) for p, r in zip(prompts, responses, strict=True)]
    todo: dict[str, int] = {}
    for i, key in enumerate(keys):
        if key not in cache.scores and key not in todo:
            todo[key] = i
    cached = len(set(keys)) - len(todo)
    pending = list(todo.items())
    for start in range(0, len(pending), chunk_size):
        chunk = pending[start : start + chunk_size]
        rows = [i for _, i in chunk]
        scores = np.asarray(scorer([prompts[i] for i in rows], [responses[i] for i in rows]), dtype=np.float64)
        if scores.shape != (len(rows),):
            raise ValueError(
                f"The scorer returned {scores.shape[0] if scores.ndim else 'a scalar'} scores for "
                f"{len(rows)} responses; it must return one float per response."
            )
        check_finite_scores(scores, "scorer output", np.asarray(rows))
        cache.add([k for k, _ in chunk], scores)
    return np.array([cache.scores[k] for k in keys]), len(todo), cached


def label_anchors(
    dataset: Dataset | DatasetDict,
    scorer: "str | os.PathLike | Any | Scorer",
    *,
    tokenizer=None,
    scorer_id: str | None = None,
    batch_size: int = 16,
    max_length: int | None = None,
    cache_file: str | os.PathLike | None = None,
    center: bool = False,
    percentiles: Sequence[float] = DEFAULT_PERCENTILES,
    train_split: str = "train",
    chunk_size: int = 1024,
    show_progress: bool = False,
) -> AnchorLabelingResult:
    """Score `chosen` and `rejected` with an external scorer and write `chosen_score`/`rejected_score`.

    Args:
        dataset: a preference `Dataset` or `DatasetDict` (TRL format, standard or conversational, explicit or implicit
            prompt). Existing `chosen_score`/`rejected_score` columns are replaced.
        scorer: a reward model id or path, a loaded sequence-classification model (pass its `tokenizer`), or a callable
            `scorer(prompts, responses) -> list[float]` (prompts are `None` for implicit-prompt data).
        scorer_id: the scorer's name in the cache keys (default: the model id, or the callable's qualified name; a
            lambda or nested function needs one when `cache_file` is set). A model's cache keys also hold a
            fingerprint of its weights and `max_length`; a callable's hold only its name, so change `scorer_id`
            whenever the callable changes, or the cache returns the old scores.
        batch_size, max_length: passed to `score_responses` for model scorers.
        cache_file: JSON-lines cache to resume from and append to (`None`: no cache).
        center: subtract the mean train score (both sides) from every split.
        percentiles: percentiles of the train scores reported as the resolved thresholds τ.
        train_split: the split of a `DatasetDict` that defines the centre and τ.
        chunk_size: how many new scores are computed between two cache writes.
        show_progress: progress bar for model scorers.

    Example:

    ```python
    >>> from datasets import Dataset
    >>> data = Dataset.from_dict({"prompt": ["Q"] * 2, "chosen": ["good answer", "fine"], "rejected": ["bad", "no"]})
    >>> result = label_anchors(data, lambda prompts, responses: [float(len(r)) for r in responses], scorer_id="len")
    >>> list(result.dataset["chosen_score"]), result.thresholds
    ([11.0, 4.0], [2.75, 5.75])
    ```
    """
    splits = dataset if isinstance(dataset, DatasetDict) else DatasetDict({train_split: dataset})
    if train_split not in splits:
        raise ValueError(f"No {train_split!r} split to resolve the thresholds on; splits: {list(splits)}.")
    score_fn, name, identity = _resolve_scorer(
        scorer, tokenizer, scorer_id, batch_size, max_length, show_progress, cache_file
    )
    scorer_key = json.dumps(identity, sort_keys=True)
    cache = ScoreCache(cache_file)
    raw, scored, cached = {}, 0, 0
    for split, data in splits.items():
        raw[split], new, reused = _score_all(_requests(data), score_fn, scorer_key, cache, chunk_size)
        scored, cached = scored + new, cached + reused
    offset = float(raw[train_split].mean()) if center else None
    thresholds = thresholds_from_scores(raw[train_split] - (offset or 0.0), percentiles)
    labelled = DatasetDict({split: _with_scores(data, raw[split] - (offset or 0.0)) for split, data in splits.items()})
    logger.info(
        f"Anchor scores by {name}: {scored} scored, {cached} from the cache; τ at percentiles {list(percentiles)} "
        f"of the {train_split} scores = {thresholds}" + (f" (centred by {offset:.4g})" if center else "")
    )
    return AnchorLabelingResult(
        dataset=labelled if isinstance(dataset, DatasetDict) else labelled[train_split],
        thresholds=thresholds,
        percentiles=[float(p) for p in percentiles],
        center=offset,
        scorer_id=name,
        num_scored=scored,
        num_cached=cached,
        train_split=train_split,
        splits=list(splits),
    )


def _with_scores(dataset: Dataset, scores: np.ndarray) -> Dataset:
    n = len(dataset)
    existing = [c for c in SCORE_COLUMNS if c in dataset.column_names]
    if existing:
        logger.warning(f"Replacing the existing columns {existing} with the new scores.")
        dataset = dataset.remove_columns(existing)
    dataset = dataset.add_column(SCORE_COLUMNS[0], scores[:n].tolist())
    return dataset.add_column(SCORE_COLUMNS[1], scores[n:].tolist())
