"""MultiPref: soft labels from two crowdworkers and two experts per comparison."""

import json

import pytest
from adapter_training import FIXTURES, train_and_check_learning

from trl_anchor.data import load_multipref, split_by_group

SOURCE = FIXTURES / "multipref" / "train.jsonl"


def test_soft_labels_from_all_four_annotators():
    pairs, report = load_multipref(SOURCE, return_report=True)
    assert pairs["comparison_id"] == ["c-001", "c-002", "c-004"]
    assert pairs["soft_label"] == [0.625, 0.75, 1.0]
    assert pairs["num_judgements"] == [4, 4, 3]
    assert pairs["chosen"][1] == [{"role": "assistant", "content": "Joyful."}]  # B preferred
    assert pairs["chosen_model"] == ["allenai/tulu-2-70b", "gpt-3.5-turbo-0125", "allenai/tulu-2-7b"]
    assert pairs["prompt"][0] == [{"role": "user", "content": "Explain photosynthesis in one sentence."}]
    assert dict(report.dropped) == {"tied": 1} and report.adjusted["empty_labels_ignored"] == 1
    for column in ("prompt_id", "source", "category"):
        assert column in pairs.column_names


def test_annotator_groups_and_aspects():
    experts = load_multipref(SOURCE, annotators=("expert",), drop_ties=False)
    assert experts["soft_label"] == [0.75, 0.5, 0.5, 1.0]
    assert experts["chosen"][0] == [{"role": "assistant", "content": "Photosynthesis is when plants eat soil."}]
    normal = load_multipref(SOURCE, annotators=("normal",), conversational=False)
    assert normal["soft_label"] == [1.0, 1.0, 1.0] and isinstance(normal["chosen"][0], str)
    truthful = load_multipref(SOURCE, preference_field="truthful_pref", drop_ties=False)
    assert truthful["soft_label"] == [0.5] * 4


def test_bad_labels_and_arguments(tmp_path):
    row = json.loads(SOURCE.read_text().splitlines()[0])
    row["normal_worker_annotations"][0]["overall_pref"] = "A-is-much-better"
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(row) + "\n")
    with pytest.raises(ValueError, match=r"c-001.*unknown MultiPref `overall_pref` label 'A-is-much-better'"):
        load_multipref(bad)
    with pytest.raises(ValueError, match="annotators"):
        load_multipref(SOURCE, annotators=("crowd",))
    with pytest.raises(ValueError, match="preference_field"):
        load_multipref(SOURCE, preference_field="funny_pref")


def test_split_by_prompt_keeps_prompts_apart():
    pairs = load_multipref(SOURCE, drop_ties=False)
    splits = split_by_group(pairs, "prompt_id", test_size=0.34, seed=0)
    assert not set(splits["train"]["prompt_id"]) & set(splits["test"]["prompt_id"])
    assert len(splits["train"]) + len(splits["test"]) == 4


def test_training_learns_the_pairs(tokenizer, tmp_path):
    train_and_check_learning(load_multipref(SOURCE), tokenizer, tmp_path)
