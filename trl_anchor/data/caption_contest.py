"""New Yorker cartoon caption contest crowd votes (NEXT / nextml, CC-BY 4.0) as soft preferences and human anchors.

Each caption of a contest was rated by many people as unfunny (1), somewhat funny (2) or funny (3). Those three ordered
vote counts are natural two-anchor ordinal labels (`anchor_counts`, K = 2), and two captions of the same contest give a
soft preference label P(vote_a > vote_b) + ½ P(vote_a = vote_b) computed from their vote distributions.

The files are read by `trl_anchor.data.caption_contest_files` (every CSV layout, each decision counted in a
`FilterReport`) and checked by `trl_anchor.data.caption_contest_sources` (files that are not funniness ratings,
corrupted vote counts, one description for several contests: found by rule, counted, left out by default); this module
turns the parsed contests into caption rows and within-contest preference pairs (`caption_contest_pairs`), splits them
by contest, and downloads the summaries.

Credit: the NEXT team (nextml) and The New Yorker. Data: https://github.com/nextml/caption-contest-data.
"""

import json
import logging
import os
import re
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
from datasets import Dataset, DatasetDict

from ._common import FilterReport, check_no_group_overlap, format_prompt, format_response, logger
from .caption_contest_files import (
    BAD_ROW_POLICIES,
    CATEGORIES,
    COLUMN_ALIASES,
    DEFAULT_MIN_VOTES,
    GARBLED_REASONS,
    REQUIRED_COLUMNS,
    VOTE_VALUES,
    CaptionContestFormatError,
    ContestTable,
    canonical_header,
    contest_from_filename,
    merge_tables,
    read_summary_file,
    vote_statistics,
)
from .caption_contest_pairs import STRATEGIES, pairwise_soft_labels, sample_pairs, vote_spread
from .caption_contest_sources import (
    SourceCheck,
    check_sources,
    read_descriptions,
    split_contests,
    warn_shared_descriptions,
)

__all__ = [
    "BAD_ROW_POLICIES",
    "CATEGORIES",
    "COLUMN_ALIASES",
    "DEFAULT_CACHE_DIR",
    "DEFAULT_MIN_VOTES",
    "GARBLED_REASONS",
    "GITHUB_LISTING_URL",
    "REQUIRED_COLUMNS",
    "STRATEGIES",
    "VOTE_VALUES",
    "CaptionContestData",
    "CaptionContestFormatError",
    "ContestTable",
    "canonical_header",
    "check_contest_overlap",
    "contest_from_filename",
    "download_caption_contest",
    "load_caption_contest",
    "merge_tables",
    "pairwise_soft_labels",
    "quickstart_splits",
    "read_descriptions",
    "read_summary_file",
    "sample_pairs",
    "split_by_contest",
    "split_contests",
    "vote_statistics",
]

GITHUB_LISTING_URL = "https://api.github.com/repos/nextml/caption-contest-data/contents/contests/summaries"
DEFAULT_CACHE_DIR = Path(os.environ.get("TRL_ANCHOR_CACHE", Path.home() / ".cache" / "trl_anchor")) / "caption_contest"


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

    def __init__(
        self,
        tables: Mapping[int, ContestTable],
        descriptions: Mapping[int, str] | None = None,
        sources: SourceCheck | None = None,
    ):
        self.tables = dict(sorted(tables.items()))
        self.descriptions = dict(descriptions or {})
        self.sources = sources or SourceCheck(self.tables, FilterReport("caption tables", unit="files"))
        if sources is None:
            self.sources.contests_found = list(self.tables)

    @classmethod
    def from_dir(
        cls,
        data_dir: str | os.PathLike | None = None,
        contests: Iterable[int] | None = None,
        descriptions: str | os.PathLike | Mapping[int, str] | None = None,
        min_votes: int = DEFAULT_MIN_VOTES,
        on_bad_rows: str = "skip",
        keep_suspect: bool | Sequence[str] = False,
        merge_algorithm_files: bool = False,
        download: bool = False,
        cache_dir: str | os.PathLike | None = None,
    ) -> "CaptionContestData":
        """Read `data_dir/summaries/*.csv` (every layout) and `data_dir/descriptions.csv`, and check the sources.

        Files that do not hold funniness ratings, contests with corrupted vote counts and contests left without a
        caption of `min_votes` votes are left out unless `keep_suspect` (True, or a list of reasons of
        `caption_contest_sources.SOURCE_REASONS`) keeps them; one file per contest is used unless
        `merge_algorithm_files=True` adds the votes of several algorithms' files; contests sharing a description are
        warned about. Every decision is counted in `self.source_report` (`trl_anchor.data.caption_contest_sources`).

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
        sources = check_sources(
            files, min_votes, on_bad_rows, keep_suspect, merge_algorithm_files, f"caption-contest files in {summaries}"
        )
        if descriptions is None and (data_dir / "descriptions.csv").is_file():
            descriptions = data_dir / "descriptions.csv"
        if descriptions is not None and not isinstance(descriptions, Mapping):
            descriptions = read_descriptions(descriptions)
        warn_shared_descriptions(sources.report, descriptions or {}, sources.contests_found)
        for table in sources.tables.values():
            table.report.log(logging.INFO)  # per-file detail; the totals below are warnings when data was left out
        sources.report.log()
        FilterReport.combine(
            f"{len(sources.tables)} caption contests in {summaries}", [t.report for t in sources.tables.values()]
        ).log()
        return cls(sources.tables, descriptions, sources)

    @property
    def reports(self) -> list[FilterReport]:
        return [table.report for table in self.tables.values()]

    @property
    def source_report(self) -> FilterReport:
        """The decisions on whole files and contests (see `trl_anchor.data.caption_contest_sources`)."""
        return self.sources.report

    def split_contests(self, test_size: float = 0.1, validation_size: float = 0.0, seed: int = 0):
        """Seeded train / validation / test contest ids of the loaded contests. The split is drawn over every contest
        found in the files (a contest left out keeps its place, so excluding one never moves the others), contests
        sharing a description in the same split (`caption_contest_sources.split_contests`)."""
        assigned = split_contests(self.sources.contests_found, test_size, validation_size, seed, self.descriptions)
        return {name: [c for c in ids if c in self.tables] for name, ids in assigned.items()}

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
        if not self.tables:
            raise ValueError(f"No usable caption contest to draw pairs from ({self.source_report.summary()}).")
        parts = []
        for contest, table in self.tables.items():
            prompt = format_prompt(self.description(contest), conversational)
            rng = np.random.default_rng([seed, contest])
            mean, se = table.stats
            i, j = sample_pairs(mean, table.separation_se, pairs_per_contest, strategy, rng, num_strata, separation)
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
        vote_std = vote_spread(table.counts)
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
    dataset: Dataset,
    test_size: float = 0.1,
    validation_size: float = 0.0,
    seed: int = 0,
    contests: Iterable[int] | None = None,
) -> DatasetDict:
    """Seeded train/(validation)/test split in which every contest lands in exactly one split, and contests whose rows
    share a prompt text (a description copied onto another contest) land in the same one.

    The split is drawn over `contests` (default: those in `dataset`); pass every contest of the source to get the
    split that `load_caption_contest` makes, where a contest left out of the data keeps its place.
    """
    ids = np.asarray(dataset["contest"])
    prompts = {}
    if "prompt" in dataset.column_names:
        for contest, prompt in zip(ids.tolist(), dataset["prompt"], strict=True):
            prompts.setdefault(contest, _prompt_text(prompt))
    universe = sorted(set(ids.tolist()) | {int(c) for c in (contests or ())})
    return _select_splits(dataset, split_contests(universe, test_size, validation_size, seed, prompts))


def _select_splits(dataset: Dataset, assignment: Mapping[str, list[int]]) -> DatasetDict:
    ids = np.asarray(dataset["contest"])
    splits = DatasetDict(
        {
            name: dataset.select(np.flatnonzero(np.isin(ids, members)))
            for name, members in assignment.items()
            if np.isin(ids, members).any()
        }
    )
    check_contest_overlap(splits)
    return splits


def _prompt_text(prompt) -> str:
    return prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True)


def check_contest_overlap(splits: Mapping[str, Dataset]) -> None:
    """Raise `ValueError` if a contest, or a prompt text (when the splits have a `prompt` column), appears in two
    splits."""
    check_no_group_overlap(splits, "contest")
    if not all("prompt" in split.column_names for split in splits.values()):
        return
    seen: dict[str, str] = {}
    for name, split in splits.items():
        for text in {_prompt_text(p) for p in split["prompt"]}:
            if seen.setdefault(text, name) != name:
                raise ValueError(
                    f"The prompt {text[:80]!r} appears in both the {seen[text]!r} and the {name!r} split (contests "
                    "sharing a description); it would leak between train and evaluation."
                )


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
    min_votes: int = DEFAULT_MIN_VOTES,
    on_bad_rows: str = "skip",
    keep_suspect: bool | Sequence[str] = False,
    merge_algorithm_files: bool = False,
    descriptions: str | os.PathLike | Mapping[int, str] | None = None,
    download: bool = False,
    cache_dir: str | os.PathLike | None = None,
    num_strata: int = 5,
    separation: float = 3.0,
) -> DatasetDict:
    """Caption-contest crowd votes as a `DatasetDict` split by contest.

    `output="pairs"` gives within-contest preference pairs (soft labels + vote-count anchors) for
    `AnchorGaussianRewardTrainer`; `output="captions"` gives one row per caption with its `anchor_counts`. The sources
    are checked as in `CaptionContestData.from_dir` (`keep_suspect`, `merge_algorithm_files`); the split is
    `CaptionContestData.split_contests`.

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
        keep_suspect=keep_suspect,
        merge_algorithm_files=merge_algorithm_files,
        download=download,
        cache_dir=cache_dir,
    )
    if output == "captions":
        dataset = data.captions(conversational=conversational)
    else:
        dataset = data.pairs(strategy, pairs_per_contest, seed, num_strata, separation, conversational)
    return _select_splits(dataset, data.split_contests(test_size, validation_size, seed))


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
        path = _inside(target, name, listing_url)  # the listing is remote input: never write "../x.csv"
        if path.is_file():
            continue
        partial = path.with_suffix(".part")
        partial.write_bytes(_fetch(url, timeout))
        partial.replace(path)  # atomic: an interrupted download never leaves a truncated CSV behind
    logger.info(f"{len(files)} caption-contest summaries in {target}.")
    return cache_dir


def _inside(target: Path, name: str, listing_url: str) -> Path:
    if "/" in name or "\\" in name or (target / name).resolve().parent != target.resolve():
        raise ValueError(f"The listing at {listing_url} names a file {name!r} outside {target}; nothing was written.")
    return target / name


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
