"""Reading the New Yorker caption-contest files (NEXT / nextml, CC-BY 4.0): the contest summary CSVs, in every layout
seen in the wild (see `COLUMN_ALIASES`), and the cartoon descriptions.

Every summary file is parsed into a `ContestTable` whose `FilterReport` counts each decision (kept, merged duplicates,
dropped rows by reason, repaired rows). Mean and standard error are always recomputed from the vote counts
(`vote_statistics`), because the stored scores are buggy in some contests. `trl_anchor.data.caption_contest` builds the
data sets from these tables.
"""

import csv
import io
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pv

from ._common import FilterReport
from .csv_quotes import scan_quotes

CATEGORIES = ("unfunny", "somewhat_funny", "funny")  # ordered classes 0 < 1 < 2 = votes 1, 2, 3
VOTE_VALUES = np.array([1.0, 2.0, 3.0])
BAD_ROW_POLICIES = ("skip", "raise")

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
GARBLED_REASONS = (
    "malformed_row",
    "unbalanced_quote",
    "unterminated_quote",
    "invalid_counts",
    "inconsistent_total",
    "contest_mismatch",
)
# Captions with fewer votes are left out everywhere (loader, caption benchmark, caption study): their mean vote is
# noise (its standard error is ~0.15 on the 1–3 scale at 20 votes, the spread of most contests' middle half).
DEFAULT_MIN_VOTES = 20
_STAT_TOLERANCE = 1e-6
_WHOLE_NUMBER = re.compile(r"\d+(\.0*)?")  # some layouts store counts as floats ("564.0")


class CaptionContestFormatError(ValueError):
    """A caption-contest file that cannot be read as intended (unknown header, malformed row under
    `on_bad_rows='raise'`,
    missing description, ...)."""

def vote_statistics(counts: np.ndarray, pseudo_votes: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Mean vote (1..3) and its standard error (sample std, ddof=1, over √n) from counts `[unfunny, somewhat, funny]`.

    With `pseudo_votes=0` this is the dataset's own definition of `score`/`precision`: with fewer than two votes the
    standard error is undefined (NaN), and a unanimous caption gets a standard error of 0 whatever its number of votes.
    `pseudo_votes=1` adds one vote to every category first (add-one smoothing): the standard error is then positive for
    every caption and large for captions with few votes, which is what tests of a difference need
    (`separation_se`).

    Example:

    ```python
    >>> mean, se = vote_statistics(np.array([[24, 27, 18]]))
    >>> round(float(mean[0]), 4), round(float(se[0]), 4)
    (1.913, 0.094)
    >>> [round(float(x), 3) for x in vote_statistics(np.array([[3, 0, 0]]), pseudo_votes=1)[1]]
    [0.327]
    ```
    """
    counts = np.asarray(counts, dtype=np.float64).reshape(-1, 3) + pseudo_votes
    n = counts.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = counts @ VOTE_VALUES / n
        sq_dev = (counts * (VOTE_VALUES[None, :] - mean[:, None]) ** 2).sum(1)
        se = np.sqrt(sq_dev / (n - 1) / n)
    se[n < 2] = np.nan
    return mean, se


def separation_se(counts: np.ndarray) -> np.ndarray:
    """Standard error of the mean vote used to call two captions clearly separated: add-one smoothed
    (`vote_statistics(counts, pseudo_votes=1)`), so a unanimous caption with few votes is not treated as exact."""
    return vote_statistics(counts, pseudo_votes=1.0)[1]


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

    @property
    def separation_se(self) -> np.ndarray:
        return separation_se(self.counts)

    def __len__(self) -> int:
        return len(self.captions)


def canonical_header(header: Sequence[str], source: str) -> tuple[str, ...]:
    """Map a header row to canonical column names; unknown or missing columns raise `CaptionContestFormatError`."""
    names = tuple(COLUMN_ALIASES.get(_normalize_name(name), None) for name in header)
    unknown = [raw for raw, name in zip(header, names, strict=True) if name is None]
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
    min_votes: int = DEFAULT_MIN_VOTES,
    on_bad_rows: str = "skip",
    log: bool = True,
) -> ContestTable:
    """Parse one caption-contest CSV in any known layout into a cleaned `ContestTable`.

    Decisions, each counted in `table.report` and logged: a row with too many fields whose last column is the caption
    is repaired by re-joining the unquoted commas (`adjusted["rejoined_caption_commas"]`); a quoted caption that never
    closes is dropped as `unbalanced_quote` when the lines after it are rows of their own (they are read as rows
    again) or as `unterminated_quote` when the file ends inside it (a truncated file: the fragment is no caption), and
    the rows read are checked against the raw line count (`csv_quotes.scan_quotes`); other rows with a wrong number of
    fields, non-integer/NaN/negative counts, a stored total that disagrees with the counts or a different contest id
    are dropped as garbled (all of these raise with `on_bad_rows="raise"`); a missing stored total is counted
    (`adjusted["missing_stored_total"]`) and the row kept, since its counts are what is used; blank lines, empty
    captions, zero-vote rows and rows with fewer than `min_votes` votes are dropped; duplicate captions (same text up
    to whitespace) are merged by adding their counts. Stored means/standard errors that differ from the recomputed
    ones are counted. Rows are referred to as "row N", the N-th well-formed data row; malformed ones by their line
    number or text. The report is logged unless `log=False`.

    Example:

    ```python
    >>> import tempfile
    >>> path = Path(tempfile.mkdtemp()) / "700_summary_KLUCB.csv"
    >>> _ = path.write_text("rank,caption,mean,precision,votes,not_funny,somewhat_funny,funny\\n"
    ...                     "0,Hello,2.0,0.5,3,1,1,1\\n1,Hello ,1.0,0.0,2,2,0,0\\n2,,1.0,0.0,1,1,0,0\\n")
    >>> table = read_summary_file(path, min_votes=2)
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
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        # Undecodable bytes become U+FFFD; rows containing it are dropped as `undecodable_text` when cleaning.
        report.adjust("file_not_utf8", path.name)
        text = raw.decode("utf-8-sig", errors="replace")
    # One line break, as the CSV reader sees all three, so that raw lines can be counted against its rows.
    return text.replace("\r\n", "\n").replace("\r", "\n")


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
    scan = scan_quotes(text, _row_detector(layout))
    for line, reason, raw in scan.bad_rows:
        detail = "the file ends inside this quoted field" if reason == "unterminated_quote" else (
            "a quote opens a field that the next data row interrupts"
        )
        _bad_row(report, on_bad_rows, reason, source, f"line {line} {raw[:60]!r}", detail)
    invalid: list[str] = []

    def on_invalid(row) -> str:
        invalid.append(row.text)
        return "skip"

    table = pv.read_csv(
        io.BytesIO(scan.text.encode("utf-8")),
        read_options=pv.ReadOptions(column_names=names, skip_rows=1),
        parse_options=pv.ParseOptions(
            newlines_in_values=True, ignore_empty_lines=False, invalid_row_handler=on_invalid
        ),
        convert_options=pv.ConvertOptions(column_types={caption: pa.string()}, strings_can_be_null=False),
    )
    if table.num_rows + len(invalid) != scan.expected_rows:
        raise CaptionContestFormatError(
            f"{source}: the CSV reader returned {table.num_rows + len(invalid)} rows for {scan.expected_rows} data "
            f"lines ({scan.physical_lines} lines, {scan.continuation_lines} continuing multi-line captions, "
            f"{scan.removed_lines} removed); a quoted field swallowed rows that cannot be accounted for."
        )
    repaired = _repair_rows(invalid, header, layout, source, report, on_bad_rows)
    report.total = table.num_rows + len(invalid) + len(scan.bad_rows)
    return layout, _columns(table, names, layout, repaired)


def _row_detector(layout: tuple[str, ...]):
    """Whether one raw line is a complete data row of this layout: the header's number of fields and whole,
    non-negative vote counts. Tells a quote typo (the next line is a row) from a genuine two-line caption."""
    count_fields = [layout.index(name) for name in CATEGORIES]

    def looks_like_row(line: str) -> bool:
        if line.count(",") < len(layout) - 1:
            return False
        row = next(csv.reader([line]), [])
        if len(row) != len(layout) and not (len(row) > len(layout) and layout[-1] == "caption"):
            return False
        return all(_WHOLE_NUMBER.fullmatch(row[k].strip()) for k in count_fields)

    return looks_like_row


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
    for name, canonical in zip(names, layout, strict=True):
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
        stored = columns.numbers["votes"]
        missing = _missing(columns, "votes")
        reject(
            ~missing & (stored != total),
            "inconsistent_total",
            lambda i: f"stored total {columns.show('votes', i)} ≠ sum of the counts {total[i]:g}",
        )
        kept_missing = missing & keep
        if kept_missing.any():  # the counts are what is used; a missing total loses nothing
            report.adjust("missing_stored_total", list(columns.labels[kept_missing][:5]), int(kept_missing.sum()))
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


def _missing(columns: _Columns, name: str) -> np.ndarray:
    """Cells of a numeric column left empty (not text that fails to parse as a number)."""
    if name in columns.raw:
        return np.array([not str(value).strip() for value in columns.raw[name]], dtype=bool)
    return np.isnan(columns.numbers[name])


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
