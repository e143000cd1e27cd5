"""The pieces the adapters share: reports, soft labels, orientation, formatting, source loading, group splits."""

import logging

import numpy as np
import pytest
from datasets import Dataset, DatasetDict

from trl_anchor.data._common import (
    FilterReport,
    check_no_group_overlap,
    format_prompt,
    load_local_dataset,
    load_source,
    orient_pairs,
    pair_columns,
    soft_label_from_votes,
    split_by_group,
)


def test_filter_report_counts_logs_and_combines(caplog):
    report = FilterReport("a.csv", total=5, kept=2)
    report.drop("empty_caption", "row 3")
    report.drop("zero_votes", ["row 4", "row 5"], count=1)
    report.merge("row 2")
    report.adjust("repaired", "row 1")
    assert report.total == report.kept + report.merged + report.num_dropped
    with caplog.at_level(logging.INFO, logger="trl_anchor.data"):
        report.log()
    assert (
        "a.csv: 5 rows read, 2 kept, 1 merged into duplicates, 2 dropped (empty_caption=1, zero_votes=1)"
        in caplog.text
    )
    assert "row 3" in caplog.text and caplog.records[0].levelno == logging.WARNING
    both = FilterReport.combine("all", [report, FilterReport("b.csv", total=1, kept=1)])
    assert both.as_dict() == {
        "source": "all",
        "unit": "rows",
        "total": 6,
        "kept": 3,
        "merged": 1,
        "dropped": {"empty_caption": 1, "zero_votes": 1},
        "adjusted": {"repaired": 1},
    }


def test_soft_labels_and_orientation():
    assert soft_label_from_votes([2, 0], [1, 0], [1, 4]).tolist() == [0.625, 0.5]
    with pytest.raises(ValueError, match="without judgements"):
        soft_label_from_votes([0], [0], [0])
    soft, chosen, rejected = orient_pairs(
        [0.2, 0.9], {"text": ["a", "b"], "anchor": [0, 1]}, {"text": ["c", "d"], "anchor": [2, 3]}
    )
    assert soft.tolist() == [0.8, 0.9]
    assert chosen == {"text": ["c", "b"], "anchor": [2, 1]} and rejected == {"text": ["a", "d"], "anchor": [0, 3]}
    with pytest.raises(ValueError, match="same fields"):
        orient_pairs([0.5], {"text": ["a"]}, {"txt": ["b"]})


def test_prompt_formatting():
    assert format_prompt("Hi", conversational=True) == [{"role": "user", "content": "Hi"}]
    assert format_prompt("Hi", conversational=False) == "Hi\n"
    assert format_prompt("Hi ", conversational=False) == "Hi "
    messages = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    assert format_prompt(messages, conversational=True) == messages
    with pytest.raises(ValueError, match="conversational=True"):
        format_prompt(messages, conversational=False)


def test_pair_columns_drops_and_counts():
    report = FilterReport("toy", total=6)
    columns = pair_columns(
        ["p"] * 6,
        ["a", "same", "", "x", "m", "q"],
        ["b", "same", "y", "z", "n", "r"],
        ([0, 3, 1, 1, 0, 1], [2, 0, 0, 1, 0, 2], [1, 0, 0, 0, 0, 1]),
        report,
        ids=[f"id{i}" for i in range(6)],
        first_side={"anchor": [0, 1, 2, 3, 4, 5]},
        second_side={"anchor": [10, 11, 12, 13, 14, 15]},
        metadata={"source": list("ABCDEF")},
        conversational=False,
    )
    assert dict(report.dropped) == {"identical_responses": 1, "empty_response": 1, "tied": 1, "no_valid_judgements": 1}
    assert report.kept == 2 and columns["source"] == ["A", "F"]
    assert columns["chosen"] == ["b", "r"] and columns["rejected"] == ["a", "q"]
    assert columns["soft_label"] == pytest.approx([2.5 / 3, 2.5 / 4])
    assert columns["chosen_anchor"] == [10, 15] and columns["rejected_anchor"] == [0, 5]
    assert columns["prompt"] == ["p\n", "p\n"] and columns["num_judgements"] == [3, 4]


def test_load_source_resolves_every_kind(tmp_path):
    data = Dataset.from_dict({"x": [1, 2]})
    assert load_source(data, "train") is data
    assert load_source(DatasetDict({"train": data, "test": data}), None).num_rows == 4
    data.to_json(tmp_path / "d.jsonl")
    assert load_source(tmp_path / "d.jsonl", None)["x"] == [1, 2]
    data.save_to_disk(tmp_path / "saved")
    assert load_source(tmp_path / "saved", None)["x"] == [1, 2]
    (tmp_path / "d.txt").write_text("x")
    with pytest.raises(ValueError, match="Cannot read"):
        load_source(tmp_path / "d.txt", None)


def test_local_files_honour_split_and_gzipped_csv_is_csv(tmp_path):
    import gzip

    rows = "prompt,chosen,rejected\n" + "".join(f"p{i},c{i},r{i}\n" for i in range(10))
    with gzip.open(tmp_path / "pairs.csv.gz", "wt", encoding="utf-8") as handle:
        handle.write(rows)
    loaded = load_source(tmp_path / "pairs.csv.gz", "test")
    assert loaded.column_names == ["prompt", "chosen", "rejected"] and loaded["chosen"][9] == "c9"
    assert load_source(tmp_path / "pairs.csv.gz", "test[:3]")["prompt"] == ["p0", "p1", "p2"]
    (tmp_path / "pairs.csv").write_text(rows)
    assert load_source(tmp_path / "pairs.csv", "train[-2:]")["rejected"] == ["r8", "r9"]
    assert load_local_dataset(tmp_path / "pairs.csv.gz").num_rows == 10


def test_split_by_group_is_disjoint_seeded_and_checked():
    data = Dataset.from_dict({"group": np.repeat(np.arange(20), 3).tolist(), "x": list(range(60))})
    splits = split_by_group(data, "group", test_size=0.2, validation_size=0.1, seed=1)
    groups = {name: set(split["group"]) for name, split in splits.items()}
    assert [len(groups[n]) for n in ("train", "validation", "test")] == [14, 2, 4]
    assert sum(len(s) for s in splits.values()) == 60
    assert (
        split_by_group(data, "group", test_size=0.2, validation_size=0.1, seed=1)["test"]["x"] == splits["test"]["x"]
    )
    assert split_by_group(data, "group", test_size=0.2, seed=2)["test"]["x"] != splits["test"]["x"]
    assert list(split_by_group(data, "group", test_size=0.0)) == ["train"]
    with pytest.raises(ValueError, match="test_size"):
        split_by_group(data, "group", test_size=1.5)
    with pytest.raises(ValueError, match=r"\[0\].*'train'.*'test'"):
        check_no_group_overlap({"train": data.select([0, 1]), "test": data.select([2])}, "group")
    with pytest.raises(ValueError, match="no `group` column"):
        check_no_group_overlap({"train": data.remove_columns("group")}, "group")
