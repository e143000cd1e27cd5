"""Which caption-contest sources hold usable funniness votes, decided by rules rather than by a list of contest
numbers: the public data has known defects (see the shared data's README, "Known defects") and other releases have
other contests broken the same way (e.g. 591), so the loader recognises what a defect looks like.

- **Not funniness ratings**, by file name (after the leading contest number) or header: `original` (the crowd was asked
  "how original is this caption?"), `round2`, `round3`, ... (a later voting round on captions picked from round 1),
  `dueling` (a pairwise "which is funnier?" question). Reason `not_funniness_question`, `later_voting_round` or
  `pairwise_question`.
- **Several funniness files of one contest** (one per sampling algorithm, e.g. `510_summary_LilUCB.csv` and
  `510_summary_RoundRobin.csv`): their vote counts are not added up unless asked (`merge_algorithm_files=True`; the
  official `caption_contest_data` API never does); the file with the most votes is used and the others are counted as
  `other_algorithm_file`.
- **Corrupted vote counts** (`corrupted_votes`): more than `MAX_UNANIMOUS_SHARE` of the captions with at least
  `UNANIMITY_MIN_VOTES` votes have every vote in one category. In the shared data that share is at most 4.6% for 101
  contests (median 0.4%) and 98.9% for 592, whose counts are broken. Captions with few votes are often unanimous for a
  benign reason: adaptive samplers stop showing a caption once its first votes are all "unfunny". That is why 562 and
  572 have 42% and 35% unanimous captions overall but none among those with ≥ 30 votes; they are kept. The share of
  every contest is reported (`SourceCheck.unanimity`).
- **One description for several contests** (`duplicate_description`, e.g. 644 carries 645's): warned, kept, and the
  contests are put in the same split (`split_contests`) so that one prompt text never sits in train and test.

Each decision is counted in `SourceCheck.report`, a `FilterReport` over files (rows dropped inside files are counted
in each file's own report); `keep_suspect=True` (or a list of reasons) keeps flagged sources, still reported.
"""

import csv
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset

from ._common import FilterReport, logger, split_by_group
from .caption_contest_files import (
    DEFAULT_MIN_VOTES,
    CaptionContestFormatError,
    ContestTable,
    contest_from_filename,
    merge_tables,
    read_summary_file,
)

UNANIMITY_MIN_VOTES = 30
MAX_UNANIMOUS_SHARE = 0.5
MIN_CAPTIONS_TO_ASSESS = 50  # fewer well-voted captions than this: the share is reported but not judged
SOURCE_REASONS = (
    "not_funniness_question",
    "later_voting_round",
    "pairwise_question",
    "other_algorithm_file",
    "corrupted_votes",
    "no_usable_captions",
)
_NAME_RULES = (
    (re.compile(r"original"), "not_funniness_question"),
    (re.compile(r"round[\s_-]*(?:[2-9]|\d{2,})"), "later_voting_round"),
    (re.compile(r"duel"), "pairwise_question"),
)


def file_rule(path: str | os.PathLike) -> str | None:
    """The reason a summary file does not hold the contest's funniness ratings, from its name (after the leading
    contest number) and its header; `None` for a funniness file.

    Example:

    ```python
    >>> [file_rule(name) for name in ("560_summary_KLUCB_original.csv", "508-round2_summary_RoundRobin.csv",
    ...                               "508-round1_summary_LilUCB.csv", "560_summary_KLUCB_funny.csv")]
    ['not_funniness_question', 'later_voting_round', None, None]
    ```
    """
    path = Path(path)
    name = re.sub(r"^\d+", "", path.name.lower())
    for pattern, reason in _NAME_RULES:
        if pattern.search(name):
            return reason
    if path.is_file():
        with open(path, newline="", encoding="utf-8-sig", errors="replace") as handle:
            header = next(csv.reader(handle), [])
        if any("original" in column.lower() for column in header):
            return "not_funniness_question"
    return None


@dataclass
class Unanimity:
    """How many captions of a contest have every vote in one category: over all its captions and over those with at
    least `UNANIMITY_MIN_VOTES` votes (`well_voted`), which the corruption rule judges."""

    share: float
    well_voted: int
    well_voted_share: float | None

    @property
    def corrupted(self) -> bool:
        return (
            self.well_voted >= MIN_CAPTIONS_TO_ASSESS
            and self.well_voted_share is not None
            and self.well_voted_share > MAX_UNANIMOUS_SHARE
        )

    def describe(self) -> str:
        judged = "" if self.well_voted >= MIN_CAPTIONS_TO_ASSESS else ", too few to judge"
        share = "n/a" if self.well_voted_share is None else f"{self.well_voted_share:.1%}"
        return (
            f"{share} of {self.well_voted} captions with ≥ {UNANIMITY_MIN_VOTES} votes unanimous{judged}"
            f" ({self.share:.1%} of all captions kept)"
        )


def unanimity(table: ContestTable) -> Unanimity:
    """The unanimous-caption shares of one contest (see `Unanimity`)."""
    votes = table.counts.sum(1)
    unanimous = (table.counts == votes[:, None]).any(1) & (votes > 0)
    well_voted = votes >= UNANIMITY_MIN_VOTES
    return Unanimity(
        share=float(unanimous.mean()) if len(votes) else 0.0,
        well_voted=int(well_voted.sum()),
        well_voted_share=float(unanimous[well_voted].mean()) if well_voted.any() else None,
    )


@dataclass
class SourceCheck:
    """The outcome of `check_sources`: the usable contests and every decision taken on the way.

    Attributes:
        tables: contest → its cleaned votes (one per contest).
        report: counts over files: `total` files found, `kept` files used, `dropped[reason]` files left out,
            `adjusted` decisions that keep data (`merged_algorithm_files`, `kept_despite_<reason>`,
            `duplicate_description`), with examples.
        unanimity: contest → its unanimous-caption shares (every funniness file read, before exclusion).
        contests_found: every contest with a summary file, usable or not: the groups that `split_contests` assigns,
            so that excluding a contest never reshuffles the others.
        excluded: contest → why it has no usable votes.
        file_reports: the per-file row reports of files left out, by file name.
    """

    tables: dict[int, ContestTable]
    report: FilterReport
    unanimity: dict[int, Unanimity] = field(default_factory=dict)
    contests_found: list[int] = field(default_factory=list)
    excluded: dict[int, str] = field(default_factory=dict)
    file_reports: dict[str, FilterReport] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.report.as_dict(),
            "examples": {reason: list(where) for reason, where in self.report.examples.items()},
            "excluded_contests": {str(c): why for c, why in sorted(self.excluded.items())},
            "unanimity": {
                str(c): {"share": u.share, "well_voted": u.well_voted, "well_voted_share": u.well_voted_share}
                for c, u in sorted(self.unanimity.items())
            },
        }


def check_sources(
    files: Sequence[Path],
    min_votes: int = DEFAULT_MIN_VOTES,
    on_bad_rows: str = "skip",
    keep_suspect: bool | Sequence[str] = False,
    merge_algorithm_files: bool = False,
    source: str = "caption-contest files",
) -> SourceCheck:
    """Read the summary files and apply the source rules of this module (see its docstring)."""
    keep = set(SOURCE_REASONS) if keep_suspect is True else set(keep_suspect or ())
    unknown = keep - set(SOURCE_REASONS)
    if unknown:
        raise ValueError(f"`keep_suspect` names unknown reasons {sorted(unknown)}; known: {list(SOURCE_REASONS)}.")
    check = SourceCheck({}, FilterReport(source, total=len(files), unit="files"))
    by_contest: dict[int, list[ContestTable]] = {}
    for path in files:
        reason = file_rule(path)
        try:
            table = read_summary_file(path, min_votes=min_votes, on_bad_rows=on_bad_rows, log=False)
        except CaptionContestFormatError:
            if reason is None or reason in keep or contest_from_filename(path) is None:
                raise
            # Not funniness data in a layout of its own (e.g. "original" columns): counted, never parsed.
            table = ContestTable(contest_from_filename(path), [], np.zeros((0, 3), np.int64), FilterReport(path.name))
            table.sources.append(str(path))
        check.contests_found.append(table.contest)
        if reason is not None and not _keep(check, keep, reason, path.name, table):
            continue
        by_contest.setdefault(table.contest, []).append(table)
    for contest, tables in sorted(by_contest.items()):
        table = _one_table(check, tables, merge_algorithm_files)
        check.unanimity[contest] = unanimity(table)
        if check.unanimity[contest].corrupted and not _keep(check, keep, "corrupted_votes", _name(table), table):
            continue
        if len(table) == 0 and not _keep(check, keep, "no_usable_captions", _name(table), table):
            continue
        check.tables[contest] = table
    check.contests_found = sorted(set(check.contests_found))
    check.excluded = {c: why for c, why in check.excluded.items() if c not in check.tables}
    check.report.kept = check.report.total - check.report.num_dropped
    return check


def _name(table: ContestTable) -> str:
    return " + ".join(Path(s).name for s in table.sources)


def _keep(check: SourceCheck, keep: set[str], reason: str, name: str, table: ContestTable) -> bool:
    """Record a rule's finding on a file; True when the caller keeps it anyway."""
    detail = f"{name} ({len(table)} captions" + (
        f"; {check.unanimity[table.contest].describe()})" if reason == "corrupted_votes" else ")"
    )
    if reason in keep:
        check.report.adjust(f"kept_despite_{reason}", detail)
        return True
    files = max(1, len(table.sources))
    check.report.drop(reason, detail, count=files)
    check.excluded.setdefault(table.contest, f"{reason}: {detail}")
    check.file_reports[name] = table.report
    return False


def _one_table(check: SourceCheck, tables: list[ContestTable], merge: bool) -> ContestTable:
    """One table per contest: the funniness files of several sampling algorithms summed when asked, else the one with
    the most votes."""
    if len(tables) == 1:
        return tables[0]
    names = ", ".join(_name(t) for t in tables)
    if merge:
        check.report.adjust("merged_algorithm_files", names, count=len(tables) - 1)
        return merge_tables(tables)
    ranked = sorted(tables, key=lambda t: (-int(t.votes.sum()), _name(t)))
    for other in ranked[1:]:
        check.report.drop("other_algorithm_file", f"{_name(other)} (used {_name(ranked[0])}: more votes)")
        check.file_reports[_name(other)] = other.report
    return ranked[0]


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


def shared_descriptions(descriptions: Mapping[int, str], contests: Iterable[int] | None = None) -> list[list[int]]:
    """Groups of contests (among `contests`) whose descriptions are the same text up to case and whitespace.

    Example:

    ```python
    >>> shared_descriptions({644: "A golf course", 645: "a  golf course ", 646: "A cat"})
    [[644, 645]]
    ```
    """
    wanted = None if contests is None else set(contests)
    by_text: dict[str, list[int]] = {}
    for contest, text in sorted(descriptions.items()):
        if text and (wanted is None or contest in wanted):
            by_text.setdefault(" ".join(text.lower().split()), []).append(contest)
    return [group for group in by_text.values() if len(group) > 1]


def split_contests(
    contests: Iterable[int],
    test_size: float = 0.1,
    validation_size: float = 0.0,
    seed: int = 0,
    descriptions: Mapping[int, str] | None = None,
) -> dict[str, list[int]]:
    """Seeded train / validation / test contest ids. Contests sharing a description (`shared_descriptions`) form one
    group and land in the same split; groups are drawn as `split_by_group` draws contests, so without shared
    descriptions the split is the one `split_by_group(..., "contest", ...)` makes of these contests.

    Example:

    ```python
    >>> splits = split_contests([644, 645, 646, 647], test_size=0.5, seed=0, descriptions={644: "x", 645: "x"})
    >>> any({644, 645} <= set(ids) for ids in splits.values())
    True
    ```
    """
    contests = sorted({int(c) for c in contests})
    group = {c: c for c in contests}
    for members in shared_descriptions(descriptions or {}, contests):
        group.update({c: members[0] for c in members})
    keys = Dataset.from_dict({"group": sorted(set(group.values()))})
    assigned = split_by_group(keys, "group", test_size=test_size, validation_size=validation_size, seed=seed)
    out = {"train": [], "validation": [], "test": []}
    for name, split in assigned.items():
        members = set(split["group"])
        out[name] = [c for c in contests if group[c] in members]
    return out


def warn_shared_descriptions(report: FilterReport, descriptions: Mapping[int, str], contests: Iterable[int]) -> None:
    """Count and warn about contests that share a description (a copy in the source metadata)."""
    for members in shared_descriptions(descriptions, contests):
        report.adjust("duplicate_description", f"contests {members}", count=len(members))
        logger.warning(
            f"Caption contests {members} have the same description {descriptions[members[0]]!r}: a copy in the source "
            "metadata (a prompt that does not describe its captions). They are kept and always put in the same split."
        )


def contest_ids(files: Iterable[Path]) -> list[int]:
    """Contest ids of summary files from their names; a file without a leading number is an error."""
    ids, unnamed = [], []
    for path in files:
        contest = contest_from_filename(path)
        (unnamed if contest is None else ids).append(path.name if contest is None else contest)
    if unnamed:
        raise ValueError(f"Cannot tell the contest of {unnamed[:5]} from the file name.")
    return sorted(set(ids))

