"""Caption-contest crowd votes: every real file and layout, recomputed statistics, vote-distribution soft labels
against brute force, pair sampling, contest splits, missing descriptions and merged files, the downloader's offline
path, and training. Malformed single files are in test_caption_contest_files.py."""

import csv
import json

import numpy as np
import pytest
from datasets import Dataset

from trl_anchor.data.caption_contest import (
    DEFAULT_MIN_VOTES,
    STRATEGIES,
    CaptionContestData,
    CaptionContestFormatError,
    check_contest_overlap,
    download_caption_contest,
    load_caption_contest,
    pairwise_soft_labels,
    quickstart_splits,
    read_summary_file,
    sample_pairs,
    split_by_contest,
    vote_statistics,
)

SMALL = [538, 636, 656]  # small contest files keep the sampling tests fast


@pytest.fixture(scope="module")
def all_contests(caption_data_dir):
    """Every contest of the shared data, parsed once for the module (~570k rows)."""
    return CaptionContestData.from_dir(caption_data_dir)


@pytest.fixture(scope="module")
def small(caption_data_dir):
    return CaptionContestData.from_dir(caption_data_dir, contests=SMALL)


def _independent_count(path, min_votes=DEFAULT_MIN_VOTES):
    """Kept and merged rows of a summary file recomputed with the csv module alone (no loader code)."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    seen, empty, few = set(), 0, 0
    for row in rows:
        caption = " ".join(row["caption"].split())
        votes = int(row["funny"]) + int(row["somewhat_funny"]) + int(row["unfunny"])
        if not caption:
            empty += 1
        elif votes < min_votes:
            few += 1
        else:
            seen.add(caption)
    return len(rows), len(seen), len(rows) - empty - few - len(seen), empty, few


# ------------------------------------------------------------------------------------------- real data, all files
def test_reads_every_usable_contest_with_per_file_reports(all_contests, caption_data_dir):
    files = sorted((caption_data_dir / "summaries").glob("*.csv"))
    assert len(files) == 102
    assert len(all_contests.tables) == 102 - all_contests.source_report.num_dropped
    assert set(all_contests.tables) <= set(all_contests.descriptions)
    for report in all_contests.reports:
        assert report.total == report.kept + report.merged + report.num_dropped, report.summary()
    assert sum(len(t) for t in all_contests.tables.values()) == sum(r.kept for r in all_contests.reports)
    assert sum(r.total for r in all_contests.reports) > 540_000
    assert sum(r.merged for r in all_contests.reports) > 0  # the README: some captions appear twice
    for contest in (545, 557, 653):
        path = next((caption_data_dir / "summaries").glob(f"{contest}_*.csv"))
        total, kept, merged, empty, few = _independent_count(path)
        report = all_contests.tables[contest].report
        assert (report.total, report.kept, report.merged) == (total, kept, merged)
        assert report.dropped.get("empty_caption", 0) == empty and report.dropped.get("too_few_votes", 0) == few


def test_loading_all_shared_data_reports_its_known_defects_by_rule(all_contests, caption_data_dir):
    import pandas as pd

    report = all_contests.source_report
    assert report.unit == "files" and report.total == 102
    assert dict(report.dropped) == {"corrupted_votes": 1, "not_funniness_question": 1, "no_usable_captions": 1}
    assert report.examples["corrupted_votes"][0].startswith("592_summary_KLUCB.csv (")
    assert report.examples["not_funniness_question"][0].startswith("560_summary_KLUCB_original.csv (")
    assert report.examples["no_usable_captions"][0].startswith("513_summary_LilUCB.csv (0 captions")
    assert report.adjusted == {"duplicate_description": 2}
    assert report.examples["duplicate_description"] == ["contests [644, 645]"]
    assert {513, 560, 592}.isdisjoint(all_contests.tables) and {562, 572, 644, 645} <= set(all_contests.tables)
    # The shares the rule judged, recomputed from the raw files with pandas: 592 is corrupted; 562 and 572 have many
    # unanimous captions overall (the README's 35-42%) but none among those with at least 30 votes, so they are kept.
    for contest in (592, 562, 572, 608):
        frame = pd.read_csv(next((caption_data_dir / "summaries").glob(f"{contest}_*.csv")), keep_default_na=False)
        frame["caption"] = frame["caption"].map(lambda text: " ".join(str(text).split()))
        columns = ["unfunny", "somewhat_funny", "funny"]
        usable = (frame["caption"] != "") & (frame[columns].sum(axis=1) >= DEFAULT_MIN_VOTES)  # as the loader, rows
        counts = frame[usable].groupby("caption", sort=False)[columns].sum().to_numpy()  # first, then duplicates
        votes = counts.sum(1)
        unanimous = (counts == votes[:, None]).any(1)
        share = unanimous[votes >= 30].mean()
        assert all_contests.sources.unanimity[contest].well_voted_share == pytest.approx(share)
        assert (share > 0.5) == (contest == 592)
        if contest in (562, 572):
            overall = pd.read_csv(next((caption_data_dir / "summaries").glob(f"{contest}_*.csv")))[columns].to_numpy()
            assert (overall == overall.sum(1, keepdims=True)).any(1).mean() > 0.34 and share == 0.0
    for seed in range(10):
        splits = all_contests.split_contests(test_size=0.1, validation_size=0.1, seed=seed)
        assert sum({644, 645} <= set(ids) for ids in splits.values()) == 1


def test_recomputed_statistics_match_the_stored_ones_where_they_are_right(all_contests, caption_data_dir):
    import pandas as pd

    stored = pd.read_csv(next((caption_data_dir / "summaries").glob("656_*.csv")))
    table = all_contests.tables[656]
    assert "stored_mean_recomputed" not in table.report.adjusted
    mean, se = table.stats
    by_caption = dict(zip(table.captions, zip(mean, se, strict=True), strict=True))
    head = stored.iloc[:200]
    for caption, score, precision in zip(head["caption"], head["score"], head["precision"], strict=True):
        assert by_caption[" ".join(caption.split())] == pytest.approx((score, precision), abs=1e-9)
    # older contests store a floored precision for unanimous captions; it is recomputed and counted
    old = CaptionContestData.from_dir(caption_data_dir, contests=[510], min_votes=2).tables[510]
    assert old.report.adjusted["stored_precision_recomputed"] > 0


def test_every_other_format_layout(caption_data_dir, all_contests):
    tables = {
        path.name: read_summary_file(path, min_votes=2)
        for path in sorted((caption_data_dir / "other_formats").glob("*.csv"))
    }
    assert len(tables) == 4
    assert len({t.layout for t in tables.values()}) == 4
    for table in tables.values():
        assert table.report.total == table.report.kept + table.report.merged + table.report.num_dropped
        assert len(table) > 0 and (table.votes > 0).all()
    unquoted = tables["510_summary_LilUCB_unformatted.csv"]
    assert unquoted.report.adjusted["rejoined_caption_commas"] == 90
    assert unquoted.report.num_dropped == 0
    # the same contest's summary holds the same captions and counts (5 captions lost their quote marks there)
    summary = CaptionContestData.from_dir(caption_data_dir, contests=[510], min_votes=2).tables[510]
    reference = dict(zip(summary.captions, summary.counts.tolist(), strict=True))
    shared = [(c, n.tolist()) for c, n in zip(unquoted.captions, unquoted.counts, strict=True) if c in reference]
    assert len(shared) >= 295
    assert all(reference[c] == n for c, n in shared)
    assert "Hey pal, can I interest you in a reverse mortgage?" in dict(shared)
    newest = tables["598_lil-KLUCB_head.csv"]
    assert newest.layout == ("rank", "caption", "mean", "precision", "votes", "unfunny", "somewhat_funny", "funny")
    assert newest.contest == 598 and newest.counts[0].tolist() == [1059, 1141, 715]


# ------------------------------------------------------------------------------------------------- soft labels
def _brute_force(counts_a, counts_b) -> float:
    votes_a = np.repeat([1, 2, 3], counts_a)
    votes_b = np.repeat([1, 2, 3], counts_b)
    diff = np.subtract.outer(votes_a, votes_b)
    return float((diff > 0).mean() + 0.5 * (diff == 0).mean())


def test_pair_soft_labels_match_brute_force_over_the_votes(small):
    pairs = small.pairs(strategy="random", pairs_per_contest=40, seed=3)
    tables = small.tables
    rng = np.random.default_rng(0)
    for row in rng.choice(len(pairs), 40, replace=False):
        example = pairs[int(row)]
        counts_c, counts_r = example["chosen_anchor_counts"], example["rejected_anchor_counts"]
        assert example["soft_label"] == pytest.approx(_brute_force(counts_c, counts_r), abs=1e-12)
        assert example["chosen_mean"] >= example["rejected_mean"]
        table = tables[example["contest"]]
        captions = dict(zip(table.captions, table.counts.tolist(), strict=True))
        assert captions[example["chosen"][0]["content"]] == counts_c
        assert example["prompt"] == [{"role": "user", "content": small.descriptions[example["contest"]]}]


def test_soft_label_formula_edge_cases():
    assert pairwise_soft_labels(np.array([[5, 0, 0]]), np.array([[0, 0, 5]])).item() == 0.0
    assert pairwise_soft_labels(np.array([[1, 2, 3]]), np.array([[1, 2, 3]])).item() == 0.5
    a, b = np.array([[3, 1, 4]]), np.array([[1, 5, 9]])
    assert pairwise_soft_labels(a, b).item() + pairwise_soft_labels(b, a).item() == pytest.approx(1.0)
    mean, se = vote_statistics(np.array([[0, 0, 1], [2, 0, 0]]))
    assert mean.tolist() == [3.0, 1.0] and np.isnan(se[0]) and se[1] == 0.0


# ---------------------------------------------------------------------------------------------------- sampling
def test_pairs_have_the_trainer_columns_and_are_seeded(small):
    pairs = small.pairs(strategy="random", pairs_per_contest=30, seed=1)
    for column in ("prompt", "chosen", "rejected", "soft_label", "chosen_anchor_counts", "rejected_anchor_counts"):
        assert column in pairs.column_names
    assert len(pairs) == 30 * len(SMALL)
    assert pairs["chosen"] == small.pairs(strategy="random", pairs_per_contest=30, seed=1)["chosen"]
    assert pairs["chosen"] != small.pairs(strategy="random", pairs_per_contest=30, seed=2)["chosen"]
    keys = {
        (c, frozenset((a[0]["content"], b[0]["content"])))
        for c, a, b in zip(pairs["contest"], pairs["chosen"], pairs["rejected"], strict=True)
    }
    assert len(keys) == len(pairs)  # distinct unordered pairs


def test_pairs_of_a_contest_do_not_depend_on_the_other_contests(small, caption_data_dir):
    alone = CaptionContestData.from_dir(caption_data_dir, contests=[SMALL[0]])
    together = small.pairs(strategy="rank_stratified", pairs_per_contest=20, seed=5)
    mine = together.filter(lambda c: c == SMALL[0], input_columns="contest")
    assert alone.pairs(strategy="rank_stratified", pairs_per_contest=20, seed=5)["chosen"] == mine["chosen"]


def test_clearly_separated_pairs_pass_the_three_sigma_filter(small):
    pairs = small.pairs(strategy="clearly_separated", pairs_per_contest=50, seed=0)
    gap = np.abs(np.array(pairs["chosen_mean"]) - np.array(pairs["rejected_mean"]))
    spread = np.sqrt(np.array(pairs["chosen_se"]) ** 2 + np.array(pairs["rejected_se"]) ** 2)
    assert len(pairs) == 50 * len(SMALL)
    assert (gap > 3 * spread).all()
    random_gap = np.abs(
        np.subtract(
            *small.pairs("random", 50, seed=0)
            .select_columns(["chosen_mean", "rejected_mean"])
            .to_pandas()
            .to_numpy()
            .T
        )
    )
    assert np.median(gap) > np.median(random_gap)


def test_rank_stratified_covers_every_stratum_pair():
    rng = np.random.default_rng(0)
    mean = rng.normal(size=300)
    se = np.full(300, 0.1)
    i, j = sample_pairs(mean, se, 150, "rank_stratified", np.random.default_rng(1), num_strata=5)
    rank = np.empty(300, int)
    rank[np.argsort(-mean)] = np.arange(300)
    cells = {tuple(sorted((a // 60, b // 60))) for a, b in zip(rank[i], rank[j], strict=True)}
    assert cells == {(a, b) for a in range(5) for b in range(a, 5)}
    assert len(set(zip(i.tolist(), j.tolist(), strict=True))) == 150 and (i != j).all()


def test_sampling_reports_a_shortfall_and_rejects_unknown_strategies(caplog):
    import logging

    from trl_anchor.data._common import FilterReport
    from trl_anchor.data.caption_contest_files import ContestTable

    mean, se = np.array([1.0, 1.1, 1.2]), np.array([0.5, 0.5, 0.5])
    i, _ = sample_pairs(mean, se, 10, "random", np.random.default_rng(0))
    assert len(i) == 3  # only three pairs exist
    table = ContestTable(701, ["a", "b", "c"], np.array([[20, 0, 0], [10, 10, 0], [0, 10, 10]]), FilterReport("t"))
    with caplog.at_level(logging.WARNING, logger="trl_anchor.data"):
        pairs = CaptionContestData({701: table}, {701: "A cartoon."}).pairs(pairs_per_contest=10)
    assert len(pairs) == 3
    assert "contest 701 pairs: 10 rows read, 3 kept, 7 dropped (not_enough_eligible_pairs=7)" in caplog.text
    i, _ = sample_pairs(mean, se, 10, "clearly_separated", np.random.default_rng(0))
    assert len(i) == 0
    with pytest.raises(ValueError, match="strategy"):
        sample_pairs(mean, se, 1, "best")
    assert set(STRATEGIES) == {"random", "rank_stratified", "clearly_separated"}


# ------------------------------------------------------------------------------------------------------ splits
def test_splits_by_contest_never_overlap_and_are_seeded(caption_data_dir):
    contests = [510, 512, 513, 538, 636, 656]
    kwargs = dict(contests=contests, output="captions", test_size=0.34, validation_size=0.17, seed=0)
    splits = load_caption_contest(caption_data_dir, **kwargs)
    groups = {name: set(split["contest"]) for name, split in splits.items()}
    loaded = set(CaptionContestData.from_dir(caption_data_dir, contests=contests).tables)
    assert 513 not in loaded  # no caption with 20 votes: left out, and counted
    assert set().union(*groups.values()) == loaded
    assert sum(len(g) for g in groups.values()) == len(loaded)
    again = load_caption_contest(caption_data_dir, **kwargs)
    assert {n: set(s["contest"]) for n, s in again.items()} == groups
    check_contest_overlap(splits)
    # The split is drawn over every contest found: leaving 513 out moves no other contest.
    with_513 = load_caption_contest(caption_data_dir, min_votes=2, **kwargs)
    assert {n: set(s["contest"]) - {513} for n, s in with_513.items()} == groups


def test_overlapping_splits_raise():
    train = Dataset.from_dict({"contest": [1, 2, 3], "x": [0, 0, 0]})
    test = Dataset.from_dict({"contest": [3, 4], "x": [0, 0]})
    with pytest.raises(ValueError, match=r"\[3\].*'train'.*'test'"):
        check_contest_overlap({"train": train, "test": test})
    with pytest.raises(ValueError, match="train split would be empty"):
        split_by_contest(train, test_size=0.5, validation_size=0.5)


def test_caption_rows_and_quickstart_splits(caption_data_dir):
    data = CaptionContestData.from_dir(caption_data_dir, contests=[538])
    captions = data.captions(conversational=False)
    assert captions.column_names[:4] == ["contest", "prompt", "completion", "anchor_counts"]
    assert captions["prompt"][0] == data.descriptions[538] + "\n"
    counts = np.asarray(captions["anchor_counts"])
    assert (counts.sum(1) == np.asarray(captions["votes"])).all()
    assert sorted(captions["rank"]) == list(range(1, len(captions) + 1))
    assert np.asarray(captions["mean"])[np.argsort(captions["rank"])].tolist() == sorted(
        captions["mean"], reverse=True
    )
    splits = quickstart_splits(caption_data_dir, contests=[538, 636, 656, 510], pairs_per_contest=8)
    assert set(splits) == {"train", "test"} and isinstance(splits["train"]["chosen"][0], str)
    assert {"chosen_vote_std", "rejected_vote_std"} <= set(splits["train"].column_names)


# ------------------------------------------------------------------------------------------ descriptions, files
HEADER = "rank,caption,mean,precision,votes,not_funny,somewhat_funny,funny\n"


def _write(tmp_path, name, text, encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding) if isinstance(text, str) else text)
    return path


def test_missing_description_is_a_clear_error(tmp_path):
    (tmp_path / "summaries").mkdir()
    _write(tmp_path / "summaries", "705_summary_X.csv", HEADER + "0,A,2.0,0.5,3,1,1,1\n1,B,1.0,0.0,2,2,0,0\n")
    _write(tmp_path, "descriptions.csv", "contest,description\n706,Another cartoon\n")
    data = CaptionContestData.from_dir(tmp_path, min_votes=2)
    with pytest.raises(CaptionContestFormatError, match=r"No cartoon description for contest 705"):
        data.pairs(pairs_per_contest=1)
    with pytest.raises(CaptionContestFormatError, match="705"):
        data.captions()
    _write(tmp_path, "bad_descriptions.csv", "contest,description\nfive,A cartoon\n")
    with pytest.raises(CaptionContestFormatError, match="'five' is not an integer"):
        CaptionContestData.from_dir(tmp_path, descriptions=tmp_path / "bad_descriptions.csv", min_votes=2)


def test_several_algorithm_files_of_one_contest_are_not_summed_unless_asked(tmp_path):
    (tmp_path / "summaries").mkdir()
    _write(
        tmp_path / "summaries", "707_summary_KLUCB.csv", HEADER + "0,Shared,2.0,0.5,3,1,1,1\n1,Only here,1,0,2,2,0,0\n"
    )
    _write(tmp_path / "summaries", "707_summary_Random.csv", "caption,unfunny,somewhat_funny,funny\nShared,0,0,4\n")
    data = CaptionContestData.from_dir(tmp_path, descriptions={707: "A cartoon"}, min_votes=2)
    table = data.tables[707]
    counts = dict(zip(table.captions, table.counts.tolist(), strict=True))
    assert counts == {"Shared": [1, 1, 1], "Only here": [2, 0, 0]}
    assert data.source_report.dropped == {"other_algorithm_file": 1}
    assert "707_summary_Random.csv" in data.source_report.examples["other_algorithm_file"][0]

    summed = CaptionContestData.from_dir(
        tmp_path, descriptions={707: "A cartoon"}, min_votes=2, merge_algorithm_files=True
    )
    table = summed.tables[707]
    counts = dict(zip(table.captions, table.counts.tolist(), strict=True))
    assert counts == {"Shared": [1, 1, 5], "Only here": [2, 0, 0]}
    assert table.report.merged == 1 and table.report.total == 3 and len(table.sources) == 2
    assert summed.source_report.adjusted == {"merged_algorithm_files": 1}


# --------------------------------------------------------------------------------------------------- download
def test_download_from_a_listing_and_the_offline_error(tmp_path):
    source = _write(tmp_path, "708_summary_KLUCB.csv", HEADER + "0,A,2.0,0.5,3,1,1,1\n")
    listing = [
        {"name": "708_summary_KLUCB.csv", "download_url": source.as_uri()},
        {"name": "_raw-dashboards", "download_url": None},
        {"name": "709_summary_KLUCB.csv", "download_url": (tmp_path / "missing.csv").as_uri()},
    ]
    listing_path = _write(tmp_path, "listing.json", json.dumps(listing))
    cache = download_caption_contest(tmp_path / "cache", contests=[708], listing_url=listing_path.as_uri())
    assert (cache / "summaries" / "708_summary_KLUCB.csv").read_text() == source.read_text()
    with pytest.raises(ConnectionError, match="offline"):
        download_caption_contest(
            tmp_path / "cache2", listing_url="http://127.0.0.1:9/contents/contests/summaries", timeout=5
        )
    with pytest.raises(ValueError, match="download=True"):
        CaptionContestData.from_dir(None)


def test_one_epoch_training_on_caption_pairs_with_vote_count_anchors(small, tokenizer, tmp_path):
    from adapter_training import train_one_epoch

    pairs = small.pairs(strategy="clearly_separated", pairs_per_contest=4, seed=0)
    trainer = train_one_epoch(pairs, tokenizer, tmp_path, anchor_thresholds=[-0.5, 0.5])
    assert trainer.anchor_thresholds == [-0.5, 0.5]
    assert any("anchor_loss" in entry for entry in trainer.state.log_history)
