"""Source checks of the caption-contest loader, on copies of the real files (made in tmp_path, never committed): a
contest with corrupted vote counts found by rule under another contest number, files that are not funniness ratings
(by name and by header), one description for two contests (warned, never split), clear pairs that need a positive
standard error, and one `min_votes` default everywhere."""

import csv
import inspect
import logging
import shutil

import numpy as np
import pytest
from datasets import Dataset, DatasetDict

from trl_anchor.data._common import FilterReport
from trl_anchor.data.caption_contest import (
    DEFAULT_MIN_VOTES,
    CaptionContestData,
    check_contest_overlap,
    load_caption_contest,
    split_by_contest,
)
from trl_anchor.data.caption_contest_files import ContestTable, read_summary_file
from trl_anchor.data.caption_contest_sources import file_rule


def _copy(source, target, contest=None, rows=None, rename_columns=None):
    """A copy of a real summary file, optionally re-numbered (its `contest` column too), cut to its first `rows` rows
    or with renamed columns."""
    with open(source, newline="", encoding="utf-8") as handle:
        header, *body = list(csv.reader(handle))
    if contest is not None and "contest" in header:
        k = header.index("contest")
        for row in body:
            row[k] = str(contest)
    if rename_columns:
        header = [rename_columns.get(name, name) for name in header]
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle, lineterminator="\n").writerows([header, *body[:rows]])
    return target


@pytest.fixture
def folder(tmp_path, caption_data_dir):
    (tmp_path / "summaries").mkdir()
    shutil.copy(caption_data_dir / "descriptions.csv", tmp_path / "descriptions.csv")
    return tmp_path


def _real(caption_data_dir, contest):
    return next((caption_data_dir / "summaries").glob(f"{contest}_*.csv"))


def test_corrupted_votes_are_found_by_rule_under_any_contest_number(folder, caption_data_dir):
    # Contest 591 is broken the same way as 592 in other releases: the rule must not depend on the number.
    _copy(_real(caption_data_dir, 592), folder / "summaries" / "591_summary_KLUCB.csv", contest=591)
    for contest in (538, 636):
        shutil.copy(_real(caption_data_dir, contest), folder / "summaries")
    data = CaptionContestData.from_dir(folder)
    assert set(data.tables) == {538, 636}
    assert dict(data.source_report.dropped) == {"corrupted_votes": 1}
    assert data.source_report.examples["corrupted_votes"][0].startswith("591_summary_KLUCB.csv")
    assert data.sources.excluded[591].startswith("corrupted_votes")
    shares = {c: u.well_voted_share for c, u in data.sources.unanimity.items()}
    assert shares[591] > 0.95 and shares[538] < 0.05 and shares[636] < 0.05  # every contest's share is reported

    for keep in (True, ["corrupted_votes"]):
        kept = CaptionContestData.from_dir(folder, keep_suspect=keep)
        assert 591 in kept.tables and kept.source_report.num_dropped == 0
        assert kept.source_report.adjusted == {"kept_despite_corrupted_votes": 1}
    with pytest.raises(ValueError, match="unknown reasons"):
        CaptionContestData.from_dir(folder, keep_suspect=["broken"])


def test_files_that_are_not_funniness_ratings_are_left_out(folder, caption_data_dir):
    summaries = folder / "summaries"
    shutil.copy(caption_data_dir / "summaries" / "560_summary_KLUCB_original.csv", summaries)
    _copy(_real(caption_data_dir, 538), summaries / "560_summary_KLUCB_funny.csv", contest=560)
    _copy(_real(caption_data_dir, 636), summaries / "508-round1_summary_LilUCB.csv", contest=508, rows=300)
    _copy(_real(caption_data_dir, 636), summaries / "508-round2_summary_RoundRobin.csv", contest=508, rows=30)
    # A funniness-looking name whose columns ask about originality: caught by the header.
    original = {"unfunny": "unoriginal", "somewhat_funny": "somewhat_original", "funny": "original"}
    _copy(_real(caption_data_dir, 561), summaries / "561_summary_KLUCB.csv", rows=100, rename_columns=original)
    data = CaptionContestData.from_dir(folder, descriptions={508: "a", 560: "b", 561: "c"})

    assert dict(data.source_report.dropped) == {"not_funniness_question": 2, "later_voting_round": 1}
    assert set(data.tables) == {508, 560}
    funny = read_summary_file(summaries / "560_summary_KLUCB_funny.csv")
    assert data.tables[560].captions == funny.captions  # the funniness file, not the "how original?" one
    assert len(data.tables[508]) == len(read_summary_file(summaries / "508-round1_summary_LilUCB.csv"))
    assert sorted(data.sources.contests_found) == [508, 560, 561]


def test_every_file_name_of_the_shared_data_is_classified(caption_data_dir):
    flagged = {
        path.name: file_rule(path)
        for folder in ("summaries", "other_formats")
        for path in sorted((caption_data_dir / folder).glob("*.csv"))
        if file_rule(path) is not None
    }
    assert flagged == {"560_summary_KLUCB_original.csv": "not_funniness_question"}


def test_one_description_for_two_contests_is_warned_and_never_split(folder, caption_data_dir, caplog):
    for contest in (636, 637, 638, 644, 645):
        _copy(_real(caption_data_dir, contest), folder / "summaries" / _real(caption_data_dir, contest).name, rows=150)
    with caplog.at_level(logging.WARNING, logger="trl_anchor.data"):
        data = CaptionContestData.from_dir(folder)
    assert "[644, 645] have the same description" in caplog.text
    assert data.source_report.adjusted == {"duplicate_description": 2}
    for seed in range(12):
        splits = load_caption_contest(folder, output="captions", test_size=0.4, seed=seed)
        together = [name for name, split in splits.items() if {644, 645} & set(split["contest"])]
        assert len(together) == 1, (seed, {n: sorted(set(s["contest"])) for n, s in splits.items()})
        check_contest_overlap(splits)
        split = split_by_contest(data.captions(), test_size=0.4, seed=seed)
        assert len([name for name, s in split.items() if {644, 645} & set(s["contest"])]) == 1


def test_the_overlap_check_catches_a_prompt_in_two_splits():
    train = Dataset.from_dict({"contest": [644], "prompt": ["A golf course"]})
    test = Dataset.from_dict({"contest": [645], "prompt": ["A golf course"]})
    with pytest.raises(ValueError, match="'A golf course' appears in both the 'train' and the 'test' split"):
        check_contest_overlap(DatasetDict({"train": train, "test": test}))


def _add_one_se(counts):
    """Standard error of the mean vote after adding one vote per category, written out by hand."""
    counts = np.asarray(counts, dtype=np.float64) + 1.0
    n = counts.sum(1)
    values = np.array([1.0, 2.0, 3.0])
    mean = counts @ values / n
    variance = (counts * (values - mean[:, None]) ** 2).sum(1) / (n - 1)
    return np.sqrt(variance / n)


def test_clear_pairs_do_not_trust_a_zero_standard_error():
    # Unanimous captions have a raw standard error of 0: two votes each would look "clearly separated".
    counts = np.array([[2, 0, 0], [0, 2, 0], [100, 0, 0], [0, 100, 0]])
    table = ContestTable(700, ["a", "b", "c", "d"], counts, FilterReport("toy"))
    data = CaptionContestData({700: table}, {700: "A cartoon."})
    pairs = data.pairs(strategy="clearly_separated", pairs_per_contest=10, conversational=False)
    found = {frozenset((c, r)) for c, r in zip(pairs["chosen"], pairs["rejected"], strict=True)}
    mean = counts @ [1, 2, 3] / counts.sum(1)
    se = _add_one_se(counts)
    names = "abcd"
    expected = {
        frozenset((names[i], names[j]))
        for i in range(4)
        for j in range(i + 1, 4)
        if abs(mean[i] - mean[j]) > 3 * np.hypot(se[i], se[j])
    }
    assert found == expected and frozenset("ab") not in found and frozenset("cd") in found
    np.testing.assert_allclose(table.separation_se, se)


def test_min_votes_has_one_default_everywhere():
    from trl_anchor.studies.caption_benchmark import load_benchmark_captions, run_caption_benchmark
    from trl_anchor.studies.caption_study import CaptionStudyConfig

    defaults = {
        "read_summary_file": inspect.signature(read_summary_file).parameters["min_votes"].default,
        "from_dir": inspect.signature(CaptionContestData.from_dir).parameters["min_votes"].default,
        "load_caption_contest": inspect.signature(load_caption_contest).parameters["min_votes"].default,
        "benchmark": inspect.signature(run_caption_benchmark).parameters["min_votes"].default,
        "benchmark captions": inspect.signature(load_benchmark_captions).parameters["min_votes"].default,
        "study": CaptionStudyConfig().min_eval_votes,
    }
    assert set(defaults.values()) == {DEFAULT_MIN_VOTES} == {20}, defaults
