"""HelpSteer2: soft labels from every annotator's strength, anchors from the attribute ratings (both subsets)."""

import json

import pytest
from adapter_training import FIXTURES, train_one_epoch

from trl_anchor.data.helpsteer2 import anchor_class, load_helpsteer2, parse_helpsteer2_prompt


def test_preference_subset_soft_labels_and_report():
    splits, report = load_helpsteer2(FIXTURES / "helpsteer2" / "preference.jsonl", return_report=True)
    train, validation = splits["train"], splits["validation"]
    assert train["soft_label"] == pytest.approx([2 / 3, 0.875])
    assert validation["soft_label"] == [1.0, 1.0]
    assert train["chosen"][0] == [{"role": "assistant", "content": "The capital of France is Paris."}]
    assert train["chosen"][1][0]["content"].startswith("Soft rain")  # response 2 is preferred there
    assert validation["chosen"][1] == [{"role": "assistant", "content": "A spider has eight legs."}]
    assert train["num_judgements"] == [3, 4] and validation["num_judgements"] == [2, 3]
    assert (report.total, report.kept) == (6, 4)
    assert dict(report.dropped) == {"tied": 1, "no_valid_judgements": 1}
    assert report.adjusted["invalid_judgements_ignored"] == 2
    assert "chosen_anchor" not in train.column_names


def test_multi_turn_prompts_become_messages():
    train = load_helpsteer2(FIXTURES / "helpsteer2" / "preference.jsonl", split="train")
    assert [m["role"] for m in train["prompt"][1]] == ["user", "assistant", "user"]
    assert train["prompt"][1][2]["content"] == "Write a haiku about rain"
    text = load_helpsteer2(FIXTURES / "helpsteer2" / "preference.jsonl", split="train", conversational=False)
    assert text["prompt"][0] == "What is the capital of France?\n" and text["chosen"][0].startswith("The capital")


def test_three_most_similar_preferences_can_be_used():
    validation = load_helpsteer2(
        FIXTURES / "helpsteer2" / "preference.jsonl",
        split="validation",
        judgements="three_most_similar_preferences",
    )
    assert validation["soft_label"] == [1.0, 1.0]


def test_main_subset_ratings_become_anchor_classes():
    splits = load_helpsteer2(
        FIXTURES / "helpsteer2" / "preference.jsonl", ratings=FIXTURES / "helpsteer2" / "train.jsonl"
    )
    train, validation = splits["train"], splits["validation"]
    assert train["chosen_anchor"] == [2, 2] and train["rejected_anchor"] == [1, 0]
    assert train["anchor_weight"] == [1.0, 1.0]
    # row 4: the preferred response 2 has no rating, so the pair carries no anchors
    assert validation["chosen_anchor"] == [2, None] and validation["rejected_anchor"] == [0, 0]
    assert validation["anchor_weight"] == [1.0, 0.0]
    strict = load_helpsteer2(
        FIXTURES / "helpsteer2" / "preference.jsonl",
        split="train",
        ratings=FIXTURES / "helpsteer2" / "train.jsonl",
        anchor_cutoffs=(4,),
    )
    assert strict["chosen_anchor"] == [1, 0] and strict["rejected_anchor"] == [0, 0]


def test_disagreements_subset_gives_anchor_counts():
    train = load_helpsteer2(
        FIXTURES / "helpsteer2" / "preference.jsonl",
        split="train",
        ratings=FIXTURES / "helpsteer2" / "disagreements.jsonl",
    )
    assert train["chosen_anchor_counts"] == [[0, 0, 3], [0, 0, 3]]
    assert train["rejected_anchor_counts"] == [[1, 2, 0], [2, 1, 0]]


def test_helpers_and_bad_input(tmp_path):
    assert [anchor_class(r, (2, 3)) for r in range(5)] == [0, 0, 1, 2, 2]
    assert parse_helpsteer2_prompt("plain") == [{"role": "user", "content": "plain"}]
    with pytest.raises(ValueError, match="strictly increasing"):
        load_helpsteer2(
            FIXTURES / "helpsteer2" / "preference.jsonl",
            ratings=FIXTURES / "helpsteer2" / "train.jsonl",
            anchor_cutoffs=(3, 2),
        )
    with pytest.raises(ValueError, match="missing the column"):
        load_helpsteer2(FIXTURES / "helpsteer2" / "train.jsonl")
    row = json.loads((FIXTURES / "helpsteer2" / "preference.jsonl").read_text().splitlines()[0])
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({**row, "split": "dev"}) + "\n")
    with pytest.raises(ValueError, match="unknown HelpSteer2 `split` value 'dev'"):
        load_helpsteer2(bad)
    as_text = tmp_path / "repr.jsonl"
    as_text.write_text(
        json.dumps({**row, "all_preferences_unprocessed": repr(row["all_preferences_unprocessed"])}) + "\n"
    )
    assert load_helpsteer2(as_text, split="train")["soft_label"] == pytest.approx([2 / 3])


def test_one_epoch_training_with_class_anchors(tokenizer, tmp_path):
    train = load_helpsteer2(
        FIXTURES / "helpsteer2" / "preference.jsonl",
        split=None,
        ratings=FIXTURES / "helpsteer2" / "train.jsonl",
    )
    from datasets import concatenate_datasets

    # anchor_cutoffs (2, 3): classes 0..2, so K = 2 thresholds (declared, never read off the classes present)
    trainer = train_one_epoch(
        concatenate_datasets([train["train"], train["validation"]]), tokenizer, tmp_path, anchor_num_thresholds=2
    )
    assert trainer.anchor_thresholds is not None and len(trainer.anchor_thresholds) == 2
    assert any("anchor_loss" in entry for entry in trainer.state.log_history)


# ----------------------------------------------------------------------------------------- rated (main) subset
def test_rated_subset_follows_the_fixture():
    from trl_anchor.data.helpsteer2 import ATTRIBUTES

    rated, report = load_helpsteer2(FIXTURES / "helpsteer2" / "train.jsonl", subset="rated", return_report=True)
    assert rated.column_names == ["prompt", "response", *ATTRIBUTES]
    assert len(rated) == 9 and report.total == 9
    row = rated[0]
    assert row["response"] == [{"role": "assistant", "content": "The capital of France is Paris."}]
    assert [row[a] for a in ATTRIBUTES] == [4, 4, 4, 1, 2]
    assert [m["role"] for m in rated[2]["prompt"]] == ["user", "assistant", "user"]  # multi-turn prompt split


def test_disagreements_give_rounded_mean_and_annotator_std():
    path = FIXTURES / "helpsteer2" / "disagreements.jsonl"
    rated = load_helpsteer2(path, subset="disagreements", conversational=False)
    # Row 0 helpfulness [4, 3, 4]: mean 11/3 → 4, population std sqrt(2/9); row 1 [2, 1, 2] → 5/3 → 2.
    assert rated[0]["helpfulness"] == 4 and rated[1]["helpfulness"] == 2
    assert rated[0]["helpfulness_std"] == pytest.approx((2 / 9) ** 0.5)
    assert rated[0]["coherence_std"] == 0.0


def test_rated_subset_missing_and_bad_ratings(tmp_path):
    import json

    rows = [json.loads(line) for line in (FIXTURES / "helpsteer2" / "train.jsonl").read_text().splitlines()]
    rows[1]["verbosity"] = None
    path = tmp_path / "rated.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows))
    rated, report = load_helpsteer2(path, subset="rated", return_report=True)
    assert rated[1]["verbosity"] is None and len(rated) == 9
    assert report.adjusted["missing_verbosity_ratings_kept_as_None"] == 1 and report.kept == 9
    rows[3]["correctness"] = 5
    path.write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(ValueError, match=r"Row 3: HelpSteer2 rating `correctness` .* got 5"):
        load_helpsteer2(path, subset="rated")
