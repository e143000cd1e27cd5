"""HelpSteer3 preference: multi-turn conversational pairs with soft labels from up to three annotators."""

import json

import pytest
from adapter_training import FIXTURES, train_and_check_learning
from datasets import Dataset

from trl_anchor.data import load_helpsteer3

SOURCE = FIXTURES / "helpsteer3" / "train.jsonl"


def test_soft_labels_from_individual_scores():
    pairs, report = load_helpsteer3(SOURCE, return_report=True)
    assert pairs["domain"] == ["general", "code", "stem"]
    assert pairs["soft_label"] == pytest.approx([1.0, 2 / 3, 2.5 / 3])
    assert pairs["chosen"][0] == [{"role": "assistant", "content": "How about 'Rise & Shine Bakery'?"}]
    assert pairs["chosen"][1][0]["content"].startswith("def add(a: int")  # response 2 preferred
    assert [m["role"] for m in pairs["prompt"][1]] == ["user", "assistant", "user"]
    assert dict(report.dropped) == {"tied": 1}


def test_domain_filter_and_ties():
    pairs, report = load_helpsteer3(SOURCE, domains=("stem", "multilingual"), drop_ties=False, return_report=True)
    assert pairs["domain"] == ["multilingual", "stem"] and pairs["soft_label"] == pytest.approx([0.5, 2.5 / 3])
    assert report.dropped["domain_not_selected"] == 2 and report.total == 4


def test_bad_scores_and_context(tmp_path):
    rows = [json.loads(line) for line in SOURCE.read_text().splitlines()]
    rows[0]["individual_preference"].append({"score": 7, "reasoning": "?"})
    bad = tmp_path / "scores.jsonl"
    bad.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    pairs, report = load_helpsteer3(bad, return_report=True)
    assert report.adjusted["invalid_judgements_ignored"] == 1 and pairs["num_judgements"][0] == 3
    broken = Dataset.from_list([{**rows[0], "context": [{"role": "user", "text": "no content key"}]}])
    with pytest.raises(ValueError, match=r"Row 0: HelpSteer3 `context` must be a non-empty list of \{role, content\}"):
        load_helpsteer3(broken)
    with pytest.raises(ValueError, match="missing the column"):
        load_helpsteer3(Dataset.from_list([{"context": [], "response1": "a", "response2": "b"}]))


def test_training_learns_the_pairs(tokenizer, tmp_path):
    train_and_check_learning(load_helpsteer3(SOURCE), tokenizer, tmp_path)
