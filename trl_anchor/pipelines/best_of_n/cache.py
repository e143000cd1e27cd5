"""Resumable stage caches of best-of-N: one jsonl file per stage, keyed by `(prompt_id, sample_index)`, with the
settings that produced it in `<stage>.meta.json`. Rows are flushed after every batch, so an interrupted run resumes
where it stopped, and a cache written with other settings is refused with an error that says what differs."""

import hashlib
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transformers.utils import logging

logger = logging.get_logger(__name__)

Key = tuple[str, int]


class BestOfNCacheError(ValueError):
    """A stage cache that does not belong to this run (other N, model, settings or prompts) or cannot be read."""


def fingerprint(value: Any) -> str:
    """Short stable hash of JSON-serialisable data (a prompt, a completion), stored with cached rows to detect
    changes."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


class StageCache:
    """Rows of one stage in `<directory>/<name>.jsonl`, keyed by `(prompt_id, sample_index)`, with the settings
    that produced them in `<name>.meta.json`.

    Opening checks that the stored settings equal the requested ones (raising `BestOfNCacheError` with each
    difference otherwise), reads the rows, and repairs a last line cut short by a crash (it is re-computed).
    """

    def __init__(self, directory: str | os.PathLike, name: str, settings: dict[str, Any], required: Sequence[str]):
        self.directory = Path(directory)
        self.name = name
        self.path = self.directory / f"{name}.jsonl"
        self.meta_path = self.directory / f"{name}.meta.json"
        self.settings = json.loads(json.dumps(settings, default=str))
        self.required = ("prompt_id", "sample_index", *required)
        self.rows: dict[Key, dict[str, Any]] = {}

    def open(self) -> "StageCache":
        self.directory.mkdir(parents=True, exist_ok=True)
        if self.meta_path.is_file():
            self._check_settings(self._read_settings())
        elif self.path.is_file() and self.path.stat().st_size > 0:
            raise BestOfNCacheError(f"{self.path} exists without its {self.meta_path.name}; cannot tell what made it.")
        self.rows = self._read_rows() if self.path.is_file() else {}
        return self

    def _read_settings(self) -> dict[str, Any]:
        try:
            return json.loads(self.meta_path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as error:
            raise BestOfNCacheError(f"{self.meta_path} is not a JSON settings file ({error}).") from None

    def _check_settings(self, stored: dict[str, Any]) -> None:
        keys = sorted(set(stored) | set(self.settings))
        differences = [
            f"{key}: cached {stored.get(key)!r}, requested {self.settings.get(key)!r}"
            for key in keys
            if stored.get(key) != self.settings.get(key)
        ]
        if differences:
            raise BestOfNCacheError(
                f"The {self.name} cache in {self.directory} was written with other settings:\n  "
                + "\n  ".join(differences)
                + f"\nUse another output_dir, or delete {self.path.name} and {self.meta_path.name} (and the stages "
                "after it) to recompute."
            )

    def _read_rows(self) -> dict[Key, dict[str, Any]]:
        rows: dict[Key, dict[str, Any]] = {}
        try:
            lines = self.path.read_text(encoding="utf-8").split("\n")
        except UnicodeDecodeError as error:
            raise BestOfNCacheError(f"{self.path} is not UTF-8 JSON lines ({error}).") from None
        complete_lines = lines[:-1]  # the text after the last newline is an unfinished write (or empty)
        if lines[-1].strip():
            logger.warning(f"{self.path}: the last line was cut short by an interruption; recomputing that row.")
            self.path.write_text("".join(line + "\n" for line in complete_lines), encoding="utf-8")
        for number, line in enumerate(complete_lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise BestOfNCacheError(f"{self.path}, line {number}: not valid JSON ({error}).") from None
            missing = [column for column in self.required if column not in row]
            if missing:
                raise BestOfNCacheError(f"{self.path}, line {number}: missing field(s) {missing}.")
            key = (str(row["prompt_id"]), int(row["sample_index"]))
            if key in rows:
                raise BestOfNCacheError(
                    f"{self.path}, line {number}: duplicate row for prompt {key[0]!r} sample {key[1]}."
                )
            rows[key] = row
        return rows

    def append(self, rows: Sequence[dict[str, Any]]) -> None:
        """Write rows and flush them to disk before returning, so a later crash keeps them."""
        if not self.meta_path.is_file():
            # Written with the first rows, not at open: a run that fails before producing anything binds nothing.
            self.meta_path.write_text(json.dumps(self.settings, indent=2, sort_keys=True) + "\n")
        with self.path.open("a", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        for row in rows:
            self.rows[(str(row["prompt_id"]), int(row["sample_index"]))] = row

    def __contains__(self, key: Key) -> bool:
        return key in self.rows


def describe_keys(keys: Sequence[Key], limit: int = 4) -> str:
    """The prompts and samples of `keys` for error messages: `prompt 'a' sample(s) [0, 1]; and 3 more prompt(s)`."""
    by_prompt: dict[str, list[int]] = {}
    for prompt_id, sample in keys:
        by_prompt.setdefault(prompt_id, []).append(sample)
    parts = [f"prompt {pid!r} sample(s) {samples}" for pid, samples in list(by_prompt.items())[:limit]]
    more = len(by_prompt) - limit
    return "; ".join(parts) + (f"; and {more} more prompt(s)" if more > 0 else "")
