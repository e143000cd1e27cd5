"""New Yorker cartoon caption contest crowd votes (NEXT / nextml, CC-BY 4.0) as soft preferences and human anchors.

Each caption of a contest was rated by many people as unfunny (1), somewhat funny (2) or funny (3). Those three ordered
vote counts are natural two-anchor ordinal labels (`anchor_counts`, K = 2), and two captions of the same contest give a
soft preference label P(vote_a > vote_b) + ½ P(vote_a = vote_b) computed from their vote distributions.

The summaries exist in several CSV layouts (see `COLUMN_ALIASES`); every file is parsed into a `ContestTable` whose
`FilterReport` counts each decision (kept, merged duplicates, dropped rows by reason, repaired rows). Mean and
standard error are always recomputed from the vote counts, because the stored scores are buggy in some contests.

Credit: the NEXT team (nextml) and The New Yorker. Data: https://github.com/nextml/caption-contest-data.
"""

import csv
import io
import json
import logging
import os
import re
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pv
from datasets import Dataset, DatasetDict

from ._common import (
    FilterReport,
    check_no_group_overlap,
    format_prompt,
    format_response,
    logger,
    split_by_group,
)

CATEGORIES = ("unfunny", "somewhat_funny", "funny")  # ordered classes 0 < 1 < 2 = votes 1, 2, 3
VOTE_VALUES = np.array([1.0, 2.0, 3.0])
STRATEGIES = ("random", "rank_stratified", "clearly_separated")
BAD_ROW_POLICIES = ("skip", "raise")
GITHUB_LISTING_URL = "https://api.github.com/repos/nextml/caption-contest-data/contents/contests/summaries"
DEFAULT_CACHE_DIR = Path(os.environ.get("TRL_ANCHOR_CACHE", Path.home() / ".cache" / "trl_anchor")) / "caption_contest"

# Every header spelling seen in the wild, mapped to one canonical name. Layouts:
#   rank,funny,somewhat_funny,unfunny,count,score,precision,contest,caption
#   target_id,rank,funny,somewhat_funny,unfunny,count,score,precision,contest,caption
#   Unfunny,Somewhat funny,Funny,Caption
#   ,Unfunny,Somewhat funny,Funny,Caption,Score,Precision
#   ,rank,caption,score,precision,count,unfunny,somewhat_funny,funny
#   rank,caption,mean,precision,votes,not_funny,somewhat_funny,funny   (newest)
COLUMN_ALIASES = {
    "unfunny": "unfunny",
    "not_funny": "unfunny",
    "somewhat_funny": "somewhat_funny",
    "funny": "funny",
    "caption": "caption",
    "count": "votes",
    "votes": "votes",
    "score": "mean",
    "mean": "mean",
    "precision": "precision",
    "contest": "contest",
    "rank": "rank",
    "target_id": "target_id",
    "": "index",
    "unnamed:_0": "index",
}
REQUIRED_COLUMNS = ("caption", *CATEGORIES)
# Malformed rows: with on_bad_rows="raise" these stop the load; data-quality filters are always just counted.
GARBLED_REASONS = ("malformed_row", "invalid_counts", "inconsistent_total", "contest_mismatch")
_ENUMERATE_LIMIT = 200_000  # below this many candidate pairs, enumerate them all instead of rejection sampling
_MAX_DRAW_ROUNDS = 200
_STAT_TOLERANCE = 1e-6


class CaptionContestFormatError(ValueError):
    """A caption-contest file that cannot be read as intended (unknown header, malformed row under
    `on_bad_rows='raise'`,
    missing description, ...)."""


# ------------------------------------------------------------------------------------------------ vote statistics
def vote_statistics(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean vote (1..3) and its standard error (sample std, ddof=1, over √n) from counts `[unfunny, somewhat, funny]`.

    This is the dataset's own current definition of `score`/`precision`; with fewer than two votes the standard error
    is undefined (NaN), which is why loading drops captions below `min_votes=2` by default.

    Example:

    ```python
    >>> mean, se = vote_statistics(np.array([[24, 27, 18]]))
    >>> round(float(mean[0]), 4), round(float(se[0]), 4)
    (1.913, 0.094)
    ```
    """
    counts = np.asarray(counts, dtype=np.float64).reshape(-1, 3)
    n = counts.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = counts @ VOTE_VALUES / n
        sq_dev = (counts * (VOTE_VALUES[None, :] - mean[:, None]) ** 2).sum(1)
        se = np.sqrt(sq_dev / (n - 1) / n)
    se[n < 2] = np.nan
    return mean, se


def pairwise_soft_labels(counts_a: np.ndarray, counts_b: np.ndarray) -> np.ndarray:
    """P(X_a > X_b) + ½ P(X_a = X_b) for independent votes X_a, X_b drawn from the two captions' vote distributions.

    Example:

    ```python
    >>> pairwise_soft_labels(np.array([[0, 0, 4]]), np.array([[2, 2, 0]])).tolist()
    [1.0]
    >>> pairwise_soft_labels(np.array([[1, 1, 1]]), np.array([[1, 1, 1]])).tolist()
    [0.5]
    ```
    """
    p_a = _distribution(counts_a)
    p_b = _distribution(counts_b)
    below_b = np.cumsum(p_b, axis=1) - p_b  # P(X_b < k) for each category k
    win = (p_a * below_b).sum(1)
    tie = (p_a * p_b).sum(1)
    return win + 0.5 * tie


def _vote_spread(counts: np.ndarray) -> np.ndarray:
    """Standard deviation of a caption's individual votes (the crowd's disagreement, what σ should track)."""
    p = _distribution(counts)
    mean = p @ VOTE_VALUES
    return np.sqrt(np.maximum(p @ VOTE_VALUES**2 - mean**2, 0.0))


def _distribution(counts: np.ndarray) -> np.ndarray:
    counts = np.asarray(counts, dtype=np.float64).reshape(-1, 3)
    totals = counts.sum(1, keepdims=True)
    if np.any(totals <= 0):
        raise ValueError("A vote distribution needs at least one vote.")
    return counts / totals


# ----------------------------------------------------------------------------------------------------- one file
@dataclass
class ContestTable:
    """The captions of one contest with their vote counts `[unfunny, somewhat_funny, funny]`, after cleaning."""

    contest: int
    captions: list[str]
    counts: np.ndarray
    report: FilterReport
    layout: tuple[str, ...] = ()
    sources: list[str] = field(default_factory=list)

    @property
    def votes(self) -> np.ndarray:
        return self.counts.sum(1)

    @property
    def stats(self) -> tuple[np.ndarray, np.ndarray]:
        return vote_statistics(self.counts)

    def __len__(self) -> int:
        return len(self.captions)


def canonical_header(header: Sequence[str], source: str) -> tuple[str, ...]:
    """Map a header row to canonical column names; unknown or missing columns raise `CaptionContestFormatError`."""
    names = tuple(COLUMN_ALIASES.get(_normalize_name(name), None) for name in header)
    unknown = [raw for raw, name in zip(header, names) if name is None]
    missing = [name for name in REQUIRED_COLUMNS if name not in names]
    duplicated = sorted({n for n in names if n is not None and names.count(n) > 1})
    if unknown or missing or duplicated:
        problems = []
        if unknown:
            problems.append(f"unknown column(s) {unknown}")
        if missing:
            problems.append(f"no column for {missing}")
        if duplicated:
            problems.append(f"several columns mean {duplicated}")
        raise CaptionContestFormatError(
            f"{source}: unrecognised caption-contest header {list(header)}: {'; '.join(problems)}. Known column "
            f"names (case and spaces ignored): {sorted(k for k in COLUMN_ALIASES if k)}."
        )
    return names


def _normalize_name(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def contest_from_filename(path: Path) -> int | None:
    match = re.match(r"^(\d+)", path.name)
    return int(match.group(1)) if match else None


def read_summary_file(
    path: str | os.PathLike,
    contest: int | None = None,
    min_votes: int = 2,
    on_bad_rows: str = "skip",
    log: bool = True,
) -> ContestTable:
    """Parse one caption-contest CSV in any known layout into a cleaned `ContestTable`.

    Decisions, each counted in `table.report` and logged: a row with too many fields whose last column is the caption
    is repaired by re-joining the unquoted commas (`adjusted["rejoined_caption_commas"]`); other rows with a wrong
    number of fields, non-integer/NaN/negative counts, a stored total that disagrees with the counts or a different
    contest id are dropped as garbled (or raise with `on_bad_rows="raise"`); blank lines, empty captions, zero-vote
    rows and rows with fewer than `min_votes` votes are dropped; duplicate captions (same text up to whitespace) are
    merged by adding their counts. Stored means/standard errors that differ from the recomputed ones are counted.
    Rows are referred to as "row N", the N-th well-formed data row; malformed ones by their text. The report is logged
    unless `log=False`.

    Example:

    ```python
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "700_summary_KLUCB.csv"
    >>> _ = path.write_text("rank,caption,mean,precision,votes,not_funny,somewhat_funny,funny\\n"
    ...                     "0,Hello,2.0,0.5,3,1,1,1\\n1,Hello ,1.0,0.0,2,2,0,0\\n2,,1.0,0.0,1,1,0,0\\n")
    >>> table = read_summary_file(path)
    >>> table.contest, table.captions, table.counts.tolist(), table.report.merged, dict(table.report.dropped)
    (700, ['Hello'], [[3, 1, 1]], 1, {'empty_caption': 1})
    ```
    """
    if on_bad_rows not in BAD_ROW_POLICIES:
        raise ValueError(f"`on_bad_rows` must be one of {BAD_ROW_POLICIES}, got {on_bad_rows!r}.")
    path = Path(path)
    report = FilterReport(path.name)
    text = _decode(path, report)
    layout, columns = _parse_csv(text, path.name, report, on_bad_rows)
    contest = _resolve_contest(contest, path, columns)
    table = _clean_columns(columns, contest, min_votes, on_bad_rows, report, path.name)
    table.layout = layout
    table.sources.append(str(path))
    if log:
        report.log()
    return table


def _decode(path: Path, report: FilterReport) -> str:
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Undecodable bytes become U+FFFD; rows containing it are dropped as `undecodable_text` when cleaning.
        report.adjust("file_not_utf8", path.name)
        return raw.decode("utf-8-sig", errors="replace")


@dataclass
class _Columns:
    """Parsed fields by canonical name: floats for numbers (NaN where unparsable), `raw` strings where a numeric column
    held text (to name the bad value), whitespace-normalised captions, and each row's label for messages."""

    numbers: dict[str, np.ndarray]
    raw: dict[str, list[str]]
    captions: np.ndarray
    labels: np.ndarray
    blank: np.ndarray

    def __len__(self) -> int:
        return len(self.captions)

    def show(self, name: str, i: int) -> str:
        """The field as it was written (text) or as parsed (number), for error messages."""
        return repr(self.raw[name][i]) if name in self.raw else f"{self.numbers[name][i]:g}"


def _parse_csv(text: str, source: str, report: FilterReport, on_bad_rows: str) -> tuple[tuple[str, ...], _Columns]:
    """Tokenise with pyarrow's multi-threaded CSV reader (the full set is ~570k rows); rows whose field count is wrong
    come back through `invalid_row_handler`, so nothing is skipped unseen."""
    header = next(csv.reader(io.StringIO(text, newline="")), None)
    if not header:
        raise CaptionContestFormatError(f"{source}: the file is empty (no header row).")
    layout = canonical_header(header, source)
    names = [f"c{i}" for i in range(len(header))]
    caption = names[layout.index("caption")]
    invalid: list[str] = []

    def on_invalid(row) -> str:
        invalid.append(row.text)
        return "skip"

    table = pv.read_csv(
        io.BytesIO(text.encode("utf-8")),
        read_options=pv.ReadOptions(column_names=names, skip_rows=1),
        parse_options=pv.ParseOptions(
            newlines_in_values=True, ignore_empty_lines=False, invalid_row_handler=on_invalid
        ),
        convert_options=pv.ConvertOptions(column_types={caption: pa.string()}, strings_can_be_null=False),
    )
    repaired = _repair_rows(invalid, header, layout, source, report, on_bad_rows)
    report.total = table.num_rows + len(invalid)
    return layout, _columns(table, names, layout, repaired)


def _repair_rows(invalid, header, layout, source, report, on_bad_rows) -> list[list[str]]:
    width = len(header)
    repaired = []
    for text in invalid:
        row = next(csv.reader(io.StringIO(text, newline="")), [])
        if len(row) > width and layout[-1] == "caption":
            # Writers that did not quote captions split them at their commas: the tail fields are the caption.
            repaired.append(row[: width - 1] + [",".join(row[width - 1 :])])
            report.adjust("rejoined_caption_commas", f"row {text[:60]!r}")
        else:
            _bad_row(
                report,
                on_bad_rows,
                "malformed_row",
                source,
                f"row {text[:80]!r}",
                f"{len(row)} fields where the header has {width}",
            )
    return repaired


def _columns(table, names, layout, repaired: list[list[str]]) -> _Columns:
    numbers, raw = {}, {}
    for name, canonical in zip(names, layout):
        if canonical in ("caption", "index"):
            continue
        column = table.column(name)
        values = [row[names.index(name)] for row in repaired]
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            raw[canonical] = column.to_pylist() + values
            numbers[canonical] = np.array([_to_float(v) for v in raw[canonical]], dtype=np.float64)
        else:
            floats = pc.fill_null(pc.cast(column, pa.float64()), float("nan")).to_numpy()
            numbers[canonical] = np.concatenate([floats, [_to_float(v) for v in values]])
    text = pc.utf8_trim_whitespace(
        pc.replace_substring_regex(table.column(names[layout.index("caption")]), r"\s+", " ")
    )
    captions = np.array(
        text.to_pylist() + [" ".join(r[layout.index("caption")].split()) for r in repaired], dtype=object
    )
    blank = _blank_rows(table, names, len(repaired))
    labels = np.array(
        [f"row {i}" for i in range(1, table.num_rows + 1)]
        + [f"repaired row {i}" for i in range(1, len(repaired) + 1)],
        dtype=object,
    )
    return _Columns(numbers, raw, captions, labels, blank)


def _blank_rows(table, names, extra: int) -> np.ndarray:
    """Rows where every field is empty: blank lines, which the reader keeps as rows of nulls."""
    blank = np.ones(table.num_rows, dtype=bool)
    for name in names:
        column = table.column(name)
        empty = pc.is_null(column)
        if pa.types.is_string(column.type):
            empty = pc.or_(empty, pc.equal(pc.utf8_trim_whitespace(column), ""))
        blank &= empty.to_numpy(zero_copy_only=False)
    return np.concatenate([blank, np.zeros(extra, dtype=bool)])


def _to_float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _bad_row(report: FilterReport, on_bad_rows: str, reason: str, source: str, where, detail: str) -> None:
    if on_bad_rows == "raise":
        raise CaptionContestFormatError(f"{source}, {where}: {reason.replace('_', ' ')}: {detail}.")
    report.drop(reason, f"{where} ({detail})")


def _resolve_contest(contest: int | None, path: Path, columns: _Columns) -> int:
    if contest is not None:
        return int(contest)
    from_name = contest_from_filename(path)
    if from_name is not None:
        return from_name
    ids = columns.numbers.get("contest")
    if ids is not None and np.isfinite(ids).any():
        return int(pd.Series(ids[np.isfinite(ids)]).mode().iloc[0])
    raise CaptionContestFormatError(
        f"{path.name}: cannot tell which contest this file holds (no leading number in the file name and no `contest` "
        "column); pass `contest=`."
    )


def _clean_columns(columns: _Columns, contest, min_votes, on_bad_rows, report, source) -> ContestTable:
    keep = ~columns.blank
    for i in np.flatnonzero(columns.blank):
        report.drop("blank_line", columns.labels[i])
    counts = np.column_stack([columns.numbers[name] for name in CATEGORIES])
    total = counts.sum(1)

    def reject(mask, reason, detail=None):
        mask = mask & keep
        for i in np.flatnonzero(mask):
            if reason in GARBLED_REASONS:
                _bad_row(report, on_bad_rows, reason, source, columns.labels[i], detail(i))
            else:
                report.drop(reason, columns.labels[i])
        keep[mask] = False

    valid = np.isfinite(counts).all(1) & (counts >= 0).all(1) & (counts == np.round(counts)).all(1)
    reject(
        ~valid, "invalid_counts", lambda i: "vote counts " + ", ".join(f"{c}={columns.show(c, i)}" for c in CATEGORIES)
    )
    if "votes" in columns.numbers:
        reject(
            columns.numbers["votes"] != total,
            "inconsistent_total",
            lambda i: f"stored total {columns.show('votes', i)} ≠ sum of the counts {total[i]:g}",
        )
    if "contest" in columns.numbers:
        reject(
            columns.numbers["contest"] != contest,
            "contest_mismatch",
            lambda i: f"contest {columns.show('contest', i)} in a file of contest {contest}",
        )
    reject(columns.captions == "", "empty_caption")
    reject(np.array(["\ufffd" in c for c in columns.captions], dtype=bool), "undecodable_text")
    reject(valid & (total == 0), "zero_votes")
    reject(valid & (total > 0) & (total < min_votes), "too_few_votes")
    _count_stale_statistics(columns.numbers, counts, keep, report)
    return _merge_duplicates(
        contest, columns.captions[keep], counts[keep].astype(np.int64), columns.labels[keep], report
    )


def _count_stale_statistics(numbers, counts, keep, report: FilterReport) -> None:
    """Count rows whose stored mean / standard error differ from the ones recomputed from the counts."""
    if not keep.any():
        return
    mean, se = vote_statistics(counts[keep])
    for name, fresh in (("mean", mean), ("precision", se)):
        if name in numbers:
            stale = ~np.isclose(numbers[name][keep], fresh, rtol=0.0, atol=_STAT_TOLERANCE, equal_nan=True)
            if stale.any():
                report.adjust(f"stored_{name}_recomputed", count=int(stale.sum()))


def _merge_duplicates(contest, captions, counts, labels, report: FilterReport) -> ContestTable:
    codes, unique = pd.factorize(pd.Series(captions, dtype=object))
    merged = np.zeros((len(unique), 3), dtype=np.int64)
    np.add.at(merged, codes, counts)
    first = np.zeros(len(codes), dtype=bool)
    first[np.unique(codes, return_index=True)[1]] = True
    duplicates = np.flatnonzero(~first)
    if duplicates.size:
        report.merge(list(labels[duplicates[:5]]), count=int(duplicates.size))
    report.kept = len(unique)
    return ContestTable(contest, list(unique), merged, report)


def merge_tables(tables: Sequence[ContestTable]) -> ContestTable:
    """Combine several summary files of one contest (e.g. one per sampling algorithm) by adding the counts of equal
    captions; the merged rows are counted in the combined report."""
    contest = {t.contest for t in tables}
    if len(contest) != 1:
        raise ValueError(f"Can only merge files of one contest, got contests {sorted(contest)}.")
    report = FilterReport.combine(" + ".join(t.report.source for t in tables), [t.report for t in tables])
    captions = np.array([c for t in tables for c in t.captions], dtype=object)
    counts = np.concatenate([t.counts for t in tables])
    labels = np.array([f"caption {i}" for i in range(1, len(captions) + 1)], dtype=object)
    table = _merge_duplicates(contest.pop(), captions, counts, labels, report)
    table.layout = tables[0].layout
    table.sources = [s for t in tables for s in t.sources]
    return table


# ------------------------------------------------------------------------------------------------- descriptions
def read_descriptions(path: str | os.PathLike) -> dict[int, str]:
    """`contest,description` CSV → {contest: description}; bad contest ids or duplicates raise."""
    path = Path(path)
    descriptions: dict[int, str] = {}
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if not {"contest", "description"} <= set(reader.fieldnames or ()):
            raise CaptionContestFormatError(
                f"{path.name} must have the columns `contest,description`, got {reader.fieldnames}."
            )
        for row in reader:
            try:
                contest = int(row["contest"])
            except (TypeError, ValueError):
                raise CaptionContestFormatError(
                    f"{path.name} line {reader.line_num}: contest id {row['contest']!r} is not an integer."
                ) from None
            if contest in descriptions:
                raise CaptionContestFormatError(
                    f"{path.name} line {reader.line_num}: contest {contest} appears twice."
                )
            descriptions[contest] = (row["description"] or "").strip()
    return descriptions


# ----------------------------------------------------------------------------------------------- pair sampling
def _canonical_pairs(i: np.ndarray, j: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    distinct = i != j
    i, j = i[distinct], j[distinct]
    return np.minimum(i, j), np.maximum(i, j)


def _choose_pairs(rng, m, left, right, accept=None) -> tuple[np.ndarray, np.ndarray]:
    """Up to `m` distinct unordered pairs (a ∈ left, b ∈ right, a ≠ b) passing `accept`, uniformly at random."""
    if m <= 0 or len(left) == 0 or len(right) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if len(left) * len(right) <= _ENUMERATE_LIMIT:
        i, j = (grid.ravel() for grid in np.meshgrid(left, right, indexing="ij"))
        keys = np.unique(np.stack(_canonical_pairs(i, j), 1), axis=0)
        if accept is not None:
            keys = keys[accept(keys[:, 0], keys[:, 1])]
        pick = rng.permutation(len(keys))[:m]
        return keys[pick, 0], keys[pick, 1]
    return _rejection_pairs(rng, m, np.asarray(left), np.asarray(right), accept)


def _rejection_pairs(rng, m, left, right, accept):
    seen: set[tuple[int, int]] = set()
    found_i, found_j = [], []
    for _ in range(_MAX_DRAW_ROUNDS):
        draw = max(4 * (m - len(found_i)), 4096)  # rare acceptance (clearly separated) needs big draws
        i, j = _canonical_pairs(rng.choice(left, draw), rng.choice(right, draw))
        if accept is not None:
            ok = accept(i, j)
            i, j = i[ok], j[ok]
        for a, b in zip(i.tolist(), j.tolist()):
            if (a, b) not in seen:
                seen.add((a, b))
                found_i.append(a)
                found_j.append(b)
                if len(found_i) == m:
                    return np.asarray(found_i), np.asarray(found_j)
    return np.asarray(found_i, dtype=np.int64), np.asarray(found_j, dtype=np.int64)


def sample_pairs(
    mean: np.ndarray,
    se: np.ndarray,
    num_pairs: int,
    strategy: str = "random",
    rng: np.random.Generator | None = None,
    num_strata: int = 5,
    separation: float = 3.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Indices `(i, j)` of distinct caption pairs of one contest.

    - `"random"`: uniform over all pairs.
    - `"rank_stratified"`: captions ranked by mean and cut into `num_strata` equal strata; the pairs are spread evenly
      over every (stratum, stratum) cell, so top-vs-top, top-vs-bottom, ... comparisons are all represented.
    - `"clearly_separated"`: uniform over the pairs with |mean_a − mean_b| > `separation`·√(se_a² + se_b²).

    Fewer pairs than asked come back when the contest has fewer eligible pairs.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"`strategy` must be one of {STRATEGIES}, got {strategy!r}.")
    rng = np.random.default_rng() if rng is None else rng
    everyone = np.arange(len(mean))
    if strategy == "random":
        return _choose_pairs(rng, num_pairs, everyone, everyone)
    if strategy == "clearly_separated":

        def accept(i, j):
            return np.abs(mean[i] - mean[j]) > separation * np.sqrt(se[i] ** 2 + se[j] ** 2)

        return _choose_pairs(rng, num_pairs, everyone, everyone, accept)
    strata = np.array_split(np.argsort(-mean, kind="stable"), max(1, min(num_strata, len(mean))))
    cells = [(a, b) for a in range(len(strata)) for b in range(a, len(strata))]
    quotas = np.full(len(cells), num_pairs // len(cells))
    quotas[: num_pairs % len(cells)] += 1
    picked = [_choose_pairs(rng, int(q), strata[a], strata[b]) for (a, b), q in zip(cells, quotas)]
    return np.concatenate([p[0] for p in picked]), np.concatenate([p[1] for p in picked])


# --------------------------------------------------------------------------------------------------- data set
class CaptionContestData:
    """All parsed contests plus their cartoon descriptions; builds caption rows and within-contest pairs.

    Example (with the data in `data_dir/summaries/*.csv` and `data_dir/descriptions.csv`):

    ```python
    >>> data = CaptionContestData.from_dir("../shared/data/caption_contest", contests=[510, 512])  # doctest: +SKIP
    >>> pairs = data.pairs(strategy="clearly_separated", pairs_per_contest=200, seed=0)  # doctest: +SKIP
    >>> pairs.column_names[:4]  # doctest: +SKIP
    ['prompt', 'chosen', 'rejected', 'soft_label']
    ```
    """

    def __init__(self, tables: Mapping[int, ContestTable], descriptions: Mapping[int, str] | None = None):
        self.tables = dict(sorted(tables.items()))
        self.descriptions = dict(descriptions or {})

    @classmethod
    def from_dir(
        cls,
        data_dir: str | os.PathLike | None = None,
        contests: Iterable[int] | None = None,
        descriptions: str | os.PathLike | Mapping[int, str] | None = None,
        min_votes: int = 2,
        on_bad_rows: str = "skip",
        download: bool = False,
        cache_dir: str | os.PathLike | None = None,
    ) -> "CaptionContestData":
        """Read `data_dir/summaries/*.csv` (every layout) and `data_dir/descriptions.csv`.

        Without a `data_dir`, `download=True` fetches the summaries from the public GitHub repository
        `nextml/caption-contest-data` into `cache_dir` (then `descriptions` must be given: the repository has none).
        """
        if data_dir is None:
            if not download:
                raise ValueError(
                    "Pass `data_dir` (a folder with summaries/ and descriptions.csv), or `download=True` to fetch the "
                    "summaries from github.com/nextml/caption-contest-data."
                )
            data_dir = download_caption_contest(cache_dir=cache_dir, contests=contests)
        data_dir = Path(data_dir)
        summaries = data_dir / "summaries"
        if not summaries.is_dir():
            raise FileNotFoundError(f"No summaries/ folder in {data_dir}.")
        wanted = None if contests is None else {int(c) for c in contests}
        files = sorted(p for p in summaries.glob("*.csv") if wanted is None or contest_from_filename(p) in wanted)
        if not files:
            raise FileNotFoundError(
                f"No summary CSV files{'' if wanted is None else f' for contests {sorted(wanted)}'} in {summaries}."
            )
        by_contest: dict[int, list[ContestTable]] = {}
        for path in files:
            table = read_summary_file(path, min_votes=min_votes, on_bad_rows=on_bad_rows, log=False)
            by_contest.setdefault(table.contest, []).append(table)
        tables = {c: ts[0] if len(ts) == 1 else merge_tables(ts) for c, ts in by_contest.items()}
        for table in tables.values():
            table.report.log(logging.INFO)  # per-file detail; the total below is a warning when rows were dropped
        FilterReport.combine(
            f"{len(tables)} caption contests in {summaries}", [t.report for t in tables.values()]
        ).log()
        if descriptions is None and (data_dir / "descriptions.csv").is_file():
            descriptions = data_dir / "descriptions.csv"
        if descriptions is not None and not isinstance(descriptions, Mapping):
            descriptions = read_descriptions(descriptions)
        return cls(tables, descriptions)

    @property
    def reports(self) -> list[FilterReport]:
        return [table.report for table in self.tables.values()]

    def description(self, contest: int) -> str:
        text = self.descriptions.get(contest, "")
        if not text:
            raise CaptionContestFormatError(
                f"No cartoon description for contest {contest}: the prompt of a caption is its cartoon's description. "
                f"Add a `{contest},<description>` row to descriptions.csv (or pass `descriptions=`), or leave the "
                "contest out with `contests=`."
            )
        return text

    def captions(self, conversational: bool = True) -> Dataset:
        """One row per caption: `prompt` (cartoon description), `completion` (caption), `anchor_counts`
        `[unfunny, somewhat_funny, funny]` (human two-anchor ordinal labels), `votes`, `mean`, `se`, `rank`,
        `contest`."""
        columns: dict[str, list] = {
            k: [] for k in ("contest", "prompt", "completion", "anchor_counts", "votes", "mean", "se", "rank")
        }
        for contest, table in self.tables.items():
            prompt = format_prompt(self.description(contest), conversational)
            mean, se = table.stats
            rank = np.empty(len(table), dtype=np.int64)
            rank[np.argsort(-mean, kind="stable")] = np.arange(1, len(table) + 1)
            columns["contest"] += [contest] * len(table)
            columns["prompt"] += [prompt] * len(table)
            columns["completion"] += [format_response(c, conversational) for c in table.captions]
            columns["anchor_counts"] += table.counts.tolist()
            columns["votes"] += table.votes.tolist()
            columns["mean"] += mean.tolist()
            columns["se"] += se.tolist()
            columns["rank"] += rank.tolist()
        return Dataset.from_dict(columns)

    def pairs(
        self,
        strategy: str = "random",
        pairs_per_contest: int = 1000,
        seed: int = 0,
        num_strata: int = 5,
        separation: float = 3.0,
        conversational: bool = True,
    ) -> Dataset:
        """Within-contest caption pairs in the trainer's column spec.

        `chosen` is the caption with the higher mean vote; `soft_label` = P(vote_chosen > vote_rejected) +
        ½ P(tie) from the two vote distributions (it can fall just below 0.5 when mean and pairwise majority disagree;
        such pairs are counted); `chosen_anchor_counts`/`rejected_anchor_counts` are the vote counts;
        `chosen_vote_std`/`rejected_vote_std` the spread of the individual votes. Sampling is
        seeded per contest, so a contest's pairs do not depend on which other contests are loaded.
        """
        if pairs_per_contest < 1:
            raise ValueError(f"`pairs_per_contest` must be ≥ 1, got {pairs_per_contest}.")
        parts = []
        for contest, table in self.tables.items():
            prompt = format_prompt(self.description(contest), conversational)
            rng = np.random.default_rng([seed, contest])
            mean, se = table.stats
            i, j = sample_pairs(mean, se, pairs_per_contest, strategy, rng, num_strata, separation)
            parts.append(self._pair_columns(contest, table, prompt, i, j, mean, se, pairs_per_contest, conversational))
        return Dataset.from_dict({key: [v for part in parts for v in part[key]] for key in parts[0]})

    def _pair_columns(self, contest, table, prompt, i, j, mean, se, requested, conversational) -> dict[str, list]:
        report = FilterReport(f"contest {contest} pairs", total=requested, kept=len(i))
        if len(i) < requested:
            report.drop("not_enough_eligible_pairs", count=requested - len(i))
        p_ij = pairwise_soft_labels(table.counts[i], table.counts[j])
        swap = (mean[j] > mean[i]) | ((mean[j] == mean[i]) & (p_ij < 0.5))
        chosen, rejected = np.where(swap, j, i), np.where(swap, i, j)
        soft = np.where(swap, 1.0 - p_ij, p_ij)
        below = np.flatnonzero(soft < 0.5)
        if below.size:
            report.adjust("soft_label_below_half", count=int(below.size))
        report.log()
        captions = table.captions
        vote_std = _vote_spread(table.counts)
        return {
            "prompt": [prompt] * len(chosen),
            "chosen": [format_response(captions[k], conversational) for k in chosen],
            "rejected": [format_response(captions[k], conversational) for k in rejected],
            "soft_label": soft.tolist(),
            "chosen_anchor_counts": table.counts[chosen].tolist(),
            "rejected_anchor_counts": table.counts[rejected].tolist(),
            "contest": [contest] * len(chosen),
            "chosen_mean": mean[chosen].tolist(),
            "rejected_mean": mean[rejected].tolist(),
            "chosen_se": se[chosen].tolist(),
            "rejected_se": se[rejected].tolist(),
            "chosen_vote_std": vote_std[chosen].tolist(),
            "rejected_vote_std": vote_std[rejected].tolist(),
        }


def split_by_contest(
    dataset: Dataset, test_size: float = 0.1, validation_size: float = 0.0, seed: int = 0
) -> DatasetDict:
    """Seeded train/(validation)/test split in which every contest lands in exactly one split."""
    return split_by_group(dataset, "contest", test_size=test_size, validation_size=validation_size, seed=seed)


def check_contest_overlap(splits: Mapping[str, Dataset]) -> None:
    """Raise `ValueError` if a contest appears in two splits."""
    check_no_group_overlap(splits, "contest")


def load_caption_contest(
    data_dir: str | os.PathLike | None = None,
    *,
    output: str = "pairs",
    strategy: str = "random",
    pairs_per_contest: int = 1000,
    test_size: float = 0.1,
    validation_size: float = 0.0,
    seed: int = 0,
    contests: Iterable[int] | None = None,
    conversational: bool = True,
    min_votes: int = 2,
    on_bad_rows: str = "skip",
    descriptions: str | os.PathLike | Mapping[int, str] | None = None,
    download: bool = False,
    cache_dir: str | os.PathLike | None = None,
    num_strata: int = 5,
    separation: float = 3.0,
) -> DatasetDict:
    """Caption-contest crowd votes as a `DatasetDict` split by contest.

    `output="pairs"` gives within-contest preference pairs (soft labels + vote-count anchors) for
    `AnchorGaussianRewardTrainer`; `output="captions"` gives one row per caption with its `anchor_counts`.

    Example:

    ```python
    >>> splits = load_caption_contest("../shared/data/caption_contest", contests=[510, 512, 513],
    ...                               pairs_per_contest=50, test_size=0.34)  # doctest: +SKIP
    >>> {name: len(split) for name, split in splits.items()}  # doctest: +SKIP
    {'train': 100, 'test': 50}
    ```
    """
    if output not in ("pairs", "captions"):
        raise ValueError(f"`output` must be 'pairs' or 'captions', got {output!r}.")
    data = CaptionContestData.from_dir(
        data_dir,
        contests=contests,
        descriptions=descriptions,
        min_votes=min_votes,
        on_bad_rows=on_bad_rows,
        download=download,
        cache_dir=cache_dir,
    )
    if output == "captions":
        dataset = data.captions(conversational=conversational)
    else:
        dataset = data.pairs(strategy, pairs_per_contest, seed, num_strata, separation, conversational)
    return split_by_contest(dataset, test_size=test_size, validation_size=validation_size, seed=seed)


def quickstart_splits(
    data_dir: str | os.PathLike,
    seed: int = 0,
    pairs_per_contest: int = 16,
    test_size: float = 0.25,
    contests: Iterable[int] | None = None,
) -> DatasetDict:
    """The real-data default of `trl-anchor quickstart`: random within-contest pairs of every contest (~1.2k train and
    ~0.4k test pairs, split by contest), as plain text so any encoder backbone can score them; `chosen_vote_std`/
    `rejected_vote_std` hold the crowd's vote spread to compare the predicted σ with."""
    return load_caption_contest(
        data_dir,
        pairs_per_contest=pairs_per_contest,
        test_size=test_size,
        seed=seed,
        contests=contests,
        conversational=False,
    )


# ------------------------------------------------------------------------------------------------------ download
def download_caption_contest(
    cache_dir: str | os.PathLike | None = None,
    contests: Iterable[int] | None = None,
    listing_url: str = GITHUB_LISTING_URL,
    timeout: float = 60.0,
) -> Path:
    """Download the contest summaries from the public GitHub repository `nextml/caption-contest-data` into
    `cache_dir/summaries/` (files already there are kept) and return `cache_dir`.

    The repository has no cartoon descriptions: give them to `CaptionContestData.from_dir(descriptions=...)`.
    """
    cache_dir = Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE_DIR
    target = cache_dir / "summaries"
    target.mkdir(parents=True, exist_ok=True)
    wanted = None if contests is None else {int(c) for c in contests}
    listing = json.loads(_fetch(listing_url, timeout))
    files = {
        entry["name"]: entry["download_url"]
        for entry in listing
        if entry.get("download_url")
        and re.match(r"^\d+_summary_.*\.csv$", entry.get("name", ""))
        and (wanted is None or contest_from_filename(Path(entry["name"])) in wanted)
    }
    if not files:
        raise FileNotFoundError(
            f"The listing at {listing_url} has no summary files for contests {sorted(wanted or [])}."
        )
    for name, url in sorted(files.items()):
        path = target / name
        if path.is_file():
            continue
        partial = path.with_suffix(".part")
        partial.write_bytes(_fetch(url, timeout))
        partial.replace(path)  # atomic: an interrupted download never leaves a truncated CSV behind
    logger.info(f"{len(files)} caption-contest summaries in {target}.")
    return cache_dir


def _fetch(url: str, timeout: float) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "trl-anchor"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.read()
    except (urllib.error.URLError, OSError) as error:
        raise ConnectionError(
            f"Could not download {url} ({error}). Are you offline? Download the summaries of "
            "https://github.com/nextml/caption-contest-data (contests/summaries/) by hand and pass `data_dir=`."
        ) from error
