"""What several dataset adapters share: filtering reports, soft labels from individual judgements, chosen/rejected
orientation, conversational formatting, source loading and group-wise splits.

Every adapter produces the trainer's column spec: TRL preference format (`prompt` + `chosen`/`rejected`, standard or
conversational) plus `soft_label` = P(chosen ≻ rejected) ≥ 0.5 and, where the source has them, anchor columns.
"""

import logging
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset, DatasetDict, concatenate_datasets, load_dataset

logger = logging.getLogger("trl_anchor.data")

Text = str | list[dict[str, str]]

LOCAL_FORMATS = {".json": "json", ".jsonl": "json", ".parquet": "parquet", ".csv": "csv"}
# Text-format prompts get this separator so the prompt's last token never fuses with the response's first.
TEXT_PROMPT_SEPARATOR = "\n"
_EXAMPLES_PER_REASON = 5


@dataclass
class FilterReport:
    """Counted decisions taken while loading one source (a file, a dataset split): nothing is dropped silently.

    `dropped[reason]` counts rows left out, `merged` counts rows folded into another row (duplicates whose counts were
    added up), `adjusted[reason]` counts rows kept but changed (repaired fields, recomputed statistics);
    `examples[reason]` keeps the first few locations for the log. `total == kept + merged + num_dropped`. `unit` names
    what is counted (rows by default; files for decisions on whole sources).

    Example:

    ```python
    >>> report = FilterReport("toy.csv", total=3)
    >>> report.drop("empty_caption", "line 4")
    >>> report.kept = 2
    >>> report.summary()
    'toy.csv: 3 rows read, 2 kept, 1 dropped (empty_caption=1)'
    ```
    """

    source: str
    total: int = 0
    kept: int = 0
    merged: int = 0
    dropped: Counter = field(default_factory=Counter)
    adjusted: Counter = field(default_factory=Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)
    unit: str = "rows"

    def drop(self, reason: str, where: Any = None, count: int = 1) -> None:
        self.dropped[reason] += count
        self._remember(reason, where)

    def merge(self, where: Any = None, count: int = 1) -> None:
        self.merged += count
        self._remember("merged_duplicates", where)

    def adjust(self, reason: str, where: Any = None, count: int = 1) -> None:
        self.adjusted[reason] += count
        self._remember(reason, where)

    def _remember(self, reason: str, where: Any) -> None:
        if where is None:
            return
        seen = self.examples.setdefault(reason, [])
        items = where if isinstance(where, (list, tuple, np.ndarray)) else [where]
        seen.extend(str(item) for item in items[: max(0, _EXAMPLES_PER_REASON - len(seen))])

    @property
    def num_dropped(self) -> int:
        return sum(self.dropped.values())

    def summary(self) -> str:
        text = f"{self.source}: {self.total} {self.unit} read, {self.kept} kept"
        if self.merged:
            text += f", {self.merged} merged into duplicates"
        if self.dropped:
            text += f", {self.num_dropped} dropped ({_format_counts(self.dropped)})"
        if self.adjusted:
            text += f", adjusted: {_format_counts(self.adjusted)}"
        return text

    @classmethod
    def combine(cls, source: str, reports: Sequence["FilterReport"]) -> "FilterReport":
        """One report adding up several (e.g. every file of a data set)."""
        total = cls(source)
        for report in reports:
            total.total += report.total
            total.kept += report.kept
            total.merged += report.merged
            total.dropped.update(report.dropped)
            total.adjusted.update(report.adjusted)
        return total

    def log(self, level: int | None = None) -> None:
        """Log the summary (warning level when rows were dropped) and where the first cases of each reason are."""
        if level is None:
            level = logging.WARNING if self.dropped else logging.INFO
        logger.log(level, self.summary())
        for reason, where in self.examples.items():
            logger.log(level, f"  {self.source} {reason}: e.g. {', '.join(where)}")

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "unit": self.unit,
            "total": self.total,
            "kept": self.kept,
            "merged": self.merged,
            "dropped": dict(self.dropped),
            "adjusted": dict(self.adjusted),
        }


def _format_counts(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{reason}={n}" for reason, n in sorted(counts.items()))


def soft_label_from_votes(first_wins, second_wins, ties) -> np.ndarray:
    """P(first ≻ second) from individual judgements: the share of judges preferring the first, a tie counting ½.

    Example:

    ```python
    >>> soft_label_from_votes([3, 1], [1, 1], [0, 2]).tolist()
    [0.75, 0.5]
    ```
    """
    first, second, tie = (np.asarray(x, dtype=np.float64) for x in (first_wins, second_wins, ties))
    total = first + second + tie
    if np.any(total <= 0):
        raise ValueError(f"Cannot form a soft label without judgements (row {int(np.flatnonzero(total <= 0)[0])}).")
    return (first + 0.5 * tie) / total


def orient_pairs(
    p_first: Sequence[float], first: Mapping[str, Sequence], second: Mapping[str, Sequence]
) -> tuple[np.ndarray, dict[str, list], dict[str, list]]:
    """Make the majority-preferred side `chosen` so that `soft_label` = P(chosen ≻ rejected) ≥ 0.5.

    `first`/`second` map per-side field names (e.g. `"text"`, `"anchor"`, `"model"`) to values; the result gives the
    same fields for the chosen and the rejected side. An exact tie (0.5) keeps the first side as chosen.

    Example:

    ```python
    >>> soft, chosen, rejected = orient_pairs([0.25, 0.5], {"text": ["a", "b"]}, {"text": ["c", "d"]})
    >>> soft.tolist(), chosen["text"], rejected["text"]
    ([0.75, 0.5], ['c', 'b'], ['a', 'd'])
    ```
    """
    p_first = np.asarray(p_first, dtype=np.float64)
    if set(first) != set(second):
        raise ValueError(f"Both sides need the same fields, got {sorted(first)} and {sorted(second)}.")
    swap = p_first < 0.5
    chosen = {key: [b if s else a for a, b, s in zip(first[key], second[key], swap, strict=True)] for key in first}
    rejected = {key: [a if s else b for a, b, s in zip(first[key], second[key], swap, strict=True)] for key in first}
    return np.where(swap, 1.0 - p_first, p_first), chosen, rejected


def user_turn(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def assistant_turn(text: str) -> list[dict[str, str]]:
    return [{"role": "assistant", "content": text}]


def format_prompt(prompt: Text, conversational: bool) -> Text:
    """A prompt in TRL's conversational form (a list of messages), or as text ending in a separator."""
    if conversational:
        return user_turn(prompt) if isinstance(prompt, str) else prompt
    if not isinstance(prompt, str):
        raise ValueError("A multi-turn (message list) prompt needs `conversational=True`.")
    return prompt if prompt[-1:].isspace() else prompt + TEXT_PROMPT_SEPARATOR


def plain_text(prompt: str | None, response: str) -> str:
    """The text a reward model trained on text-format data reads for (prompt, response): `prompt + "\\n" +
    response`, as the text adapters build it (`format_prompt(prompt, conversational=False) + response`; no separator
    when the prompt already ends in whitespace, none without a prompt). RewardBench's plain-text mode and the model
    cards' usage snippets build their inputs with this one function, so a model is scored on the text it was trained
    on (the tokenizer then appends EOS, as TRL does).

    Example:

    ```python
    >>> plain_text("Tell me a joke.", "Why did the chicken cross the road?")
    'Tell me a joke.\\nWhy did the chicken cross the road?'
    ```
    """
    return response if prompt is None else format_prompt(prompt, conversational=False) + response


def format_response(response: str, conversational: bool) -> Text:
    return assistant_turn(response) if conversational else response


def is_blank(text: Any) -> bool:
    return text is None or (isinstance(text, float) and np.isnan(text)) or (isinstance(text, str) and not text.strip())


def load_source(
    source: "str | os.PathLike | Dataset | DatasetDict",
    split: str | None,
    name: str | None = None,
    **load_kwargs,
) -> Dataset:
    """Resolve an adapter's `source`: an already-loaded `Dataset`, a local json/jsonl/parquet/csv file (optionally
    `.gz`-compressed: `data.csv.gz` is read as CSV), or a Hub id loaded with `datasets.load_dataset(source, name,
    split=split, **load_kwargs)`. A `DatasetDict` (or a Hub id with `split=None`) gives all its splits concatenated.
    A local file is the split it is loaded as: `split="test[:100]"` reads its first 100 rows."""
    if isinstance(source, DatasetDict):
        return source[split] if split is not None else concatenate_datasets(list(source.values()))
    if isinstance(source, Dataset):
        return source
    path = Path(source)
    if path.is_file():
        split = split or "train"
        name = split.split("[", 1)[0]  # a slice like "train[:10%]" applies to the file
        return load_dataset(local_format(path), data_files={name: str(path)}, split=split)
    if path.is_dir() and ((path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file()):
        from datasets import load_from_disk

        return load_source(load_from_disk(str(path)), split)
    loaded = load_dataset(str(source), name, split=split, **load_kwargs)
    return loaded if isinstance(loaded, Dataset) else concatenate_datasets(list(loaded.values()))


def local_format(path: Path) -> str:
    """The `datasets` builder of a local data file from its extension, a trailing `.gz` ignored (`datasets`
    decompresses it)."""
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes[-1:] == [".gz"]:
        suffixes.pop()
    fmt = LOCAL_FORMATS.get(suffixes[-1] if suffixes else "")
    if fmt is None:
        raise ValueError(f"Cannot read {path}: expected one of {sorted(LOCAL_FORMATS)} files (optionally .gz).")
    return fmt


def load_local_dataset(path: str | os.PathLike) -> Dataset | DatasetDict:
    """A dataset from a local `.json`/`.jsonl`/`.parquet`/`.csv` file (optionally `.gz`) or a `save_to_disk`
    directory (whose splits are kept)."""
    from datasets import load_from_disk

    path = Path(path)
    if path.is_dir():
        return load_from_disk(str(path))
    fmt = local_format(path)
    if not path.is_file():
        raise FileNotFoundError(f"No such file: {path}")
    return load_dataset(fmt, data_files=str(path), split="train")


def require_columns(dataset: Dataset, columns: Sequence[str], source: str) -> None:
    missing = [c for c in columns if c not in dataset.column_names]
    if missing:
        raise ValueError(
            f"{source} is missing the column(s) {missing}; found {dataset.column_names}. Is this the right dataset "
            "(and subset/config)?"
        )


def split_by_group(
    dataset: Dataset,
    group_column: str,
    test_size: float = 0.1,
    validation_size: float = 0.0,
    seed: int = 0,
) -> DatasetDict:
    """Split so that every value of `group_column` (a contest, a prompt) lands in exactly one split; seeded.

    `test_size`/`validation_size` are fractions of the groups (at least one group each when > 0).

    Example:

    ```python
    >>> ds = Dataset.from_dict({"contest": [1, 1, 2, 3, 3, 4], "x": range(6)})
    >>> splits = split_by_group(ds, "contest", test_size=0.25, seed=0)
    >>> sorted(splits), len(set(splits["train"]["contest"]) & set(splits["test"]["contest"]))
    (['test', 'train'], 0)
    ```
    """
    for name, size in (("test_size", test_size), ("validation_size", validation_size)):
        if not 0.0 <= size < 1.0:
            raise ValueError(f"`{name}` must lie in [0, 1), got {size}.")
    groups = np.asarray(dataset[group_column])
    unique = np.unique(groups)
    order = np.random.default_rng(seed).permutation(len(unique))
    counts = {
        name: _num_groups(size, len(unique)) for name, size in (("test", test_size), ("validation", validation_size))
    }
    if counts["test"] + counts["validation"] >= len(unique):
        raise ValueError(
            f"Cannot split {len(unique)} `{group_column}` groups with test_size={test_size} "
            f"and validation_size={validation_size}: the train split would be empty."
        )
    assignment = {}
    start = 0
    for name in ("test", "validation"):
        assignment[name] = unique[order[start : start + counts[name]]]
        start += counts[name]
    assignment["train"] = unique[order[start:]]
    splits = DatasetDict(
        {
            name: dataset.select(np.flatnonzero(np.isin(groups, members)))
            for name, members in assignment.items()
            if len(members)
        }
    )
    check_no_group_overlap(splits, group_column)
    return DatasetDict({name: splits[name] for name in ("train", "validation", "test") if name in splits})


def _num_groups(size: float, total: int) -> int:
    return 0 if size == 0 else max(1, int(round(size * total)))


def check_no_group_overlap(splits: Mapping[str, Dataset], group_column: str) -> None:
    """Raise if any `group_column` value (e.g. a contest) appears in more than one split."""
    seen: dict[Any, str] = {}
    for split, dataset in splits.items():
        if group_column not in dataset.column_names:
            raise ValueError(f"Split {split!r} has no `{group_column}` column to check for overlap.")
        for value in set(dataset[group_column]):
            if value in seen:
                overlap = sorted(set(dataset[group_column]) & set(splits[seen[value]][group_column]))
                raise ValueError(
                    f"`{group_column}` values {overlap[:10]} appear in both the {seen[value]!r} and the {split!r} "
                    f"split; a {group_column} must stay in one split (it would leak between train and evaluation)."
                )
            seen[value] = split


def pair_columns(
    prompts: Sequence[Text],
    first: Sequence[Any],
    second: Sequence[Any],
    votes: tuple[Sequence[float], Sequence[float], Sequence[float]],
    report: FilterReport,
    *,
    ids: Sequence[Any] | None = None,
    drop_ties: bool = True,
    conversational: bool = True,
    first_side: Mapping[str, Sequence] | None = None,
    second_side: Mapping[str, Sequence] | None = None,
    metadata: Mapping[str, Sequence] | None = None,
) -> dict[str, list]:
    """Trainer columns for two-response comparisons judged by several annotators.

    `votes = (first_wins, second_wins, ties)` per pair. Pairs without judgements, with an empty response, with two
    identical responses or (with `drop_ties`) with a soft label of exactly 0.5 are dropped and counted in `report`.
    `first_side`/`second_side` hold per-response fields (e.g. `{"anchor": ...}`) that follow the orientation and come
    out as `chosen_<field>`/`rejected_<field>`; `metadata` columns are kept as they are.
    """
    n = len(prompts)
    ids = list(range(n)) if ids is None else list(ids)
    first_wins, second_wins, ties = (np.asarray(v, dtype=np.float64) for v in votes)
    keep = np.ones(n, dtype=bool)

    def reject(mask: np.ndarray, reason: str) -> None:
        mask = mask & keep
        if mask.any():
            report.drop(reason, [ids[i] for i in np.flatnonzero(mask)[:_EXAMPLES_PER_REASON]], count=int(mask.sum()))
        keep[mask] = False

    reject((first_wins + second_wins + ties) <= 0, "no_valid_judgements")
    blank = [is_blank(a) or is_blank(b) for a, b in zip(first, second, strict=True)]
    reject(np.array(blank, dtype=bool), "empty_response")
    reject(np.array([a == b for a, b in zip(first, second, strict=True)], dtype=bool), "identical_responses")
    p_first = np.full(n, 0.5)
    p_first[keep] = soft_label_from_votes(first_wins[keep], second_wins[keep], ties[keep])
    if drop_ties:
        reject(p_first == 0.5, "tied")
    rows = np.flatnonzero(keep)
    report.kept = len(rows)

    def pick(values: Sequence) -> list:
        return [values[i] for i in rows]

    first_fields = {"text": pick(first), **{k: pick(v) for k, v in (first_side or {}).items()}}
    second_fields = {"text": pick(second), **{k: pick(v) for k, v in (second_side or {}).items()}}
    soft, chosen, rejected = orient_pairs(p_first[rows], first_fields, second_fields)
    columns = {
        "prompt": [format_prompt(prompts[i], conversational) for i in rows],
        "chosen": [format_response(t, conversational) for t in chosen.pop("text")],
        "rejected": [format_response(t, conversational) for t in rejected.pop("text")],
        "soft_label": soft.tolist(),
    }
    for key in chosen:
        columns[f"chosen_{key}"] = chosen[key]
        columns[f"rejected_{key}"] = rejected[key]
    columns["num_judgements"] = (first_wins + second_wins + ties)[rows].astype(int).tolist()
    for key, values in (metadata or {}).items():
        columns[key] = pick(values)
    report.log()
    return columns
