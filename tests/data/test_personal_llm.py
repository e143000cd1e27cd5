"""PersonalLLM: the ten reward models vote on all 28 response pairs of each prompt."""

import pytest
from adapter_training import FIXTURES, train_one_epoch

from trl_anchor.data import load_personal_llm
from trl_anchor.data.personal_llm import REWARD_MODELS

SOURCE = FIXTURES / "personal_llm" / "train.jsonl"


def _pair(pairs, prompt_id, a, b):
    for i in range(len(pairs)):
        if pairs["prompt_id"][i] == prompt_id and {
            pairs["chosen_response_index"][i],
            pairs["rejected_response_index"][i],
        } == {a, b}:
            return pairs[i]
    return None


def test_all_pairs_and_hand_checked_soft_labels():
    pairs, report = load_personal_llm(SOURCE, return_report=True)
    assert (report.total, report.kept, len(pairs)) == (56, 48, 48)
    assert dict(report.dropped) == {"empty_response": 7, "tied": 1}
    assert report.adjusted["missing_scores_abstain"] == 1
    first = pairs.filter(lambda p: p == 0, input_columns="prompt_id")
    assert len(first) == 28 and set(first["soft_label"]) == {1.0}
    assert all(c > r for c, r in zip(first["chosen_response_index"], first["rejected_response_index"]))
    expected = {
        (1, 2): (1, 0.7, 10),
        (1, 3): (1, 0.6, 10),
        (2, 3): (3, 0.6, 10),
        (1, 4): (4, 1.0, 9),
        (2, 5): (5, 0.7, 10),
    }
    for (a, b), (winner, soft, judges) in expected.items():
        example = _pair(pairs, 1, a, b)
        assert (example["chosen_response_index"], example["soft_label"], example["num_judgements"]) == (
            winner,
            pytest.approx(soft),
            judges,
        )
    assert _pair(pairs, 1, 1, 5) is None and _pair(pairs, 1, 3, 8) is None
    example = _pair(pairs, 1, 1, 2)
    assert example["chosen"] == [{"role": "assistant", "content": "Boil it for nine minutes."}]
    assert example["chosen_model"] == "gpt-4o" and example["prompt"][0]["content"] == "How do I boil an egg?"


def test_model_subset_and_negated_costs():
    pairs = load_personal_llm(SOURCE, reward_models=REWARD_MODELS[:7], drop_ties=False)
    assert _pair(pairs, 1, 1, 2)["soft_label"] == 1.0  # the seven first models all prefer response 1
    flipped = load_personal_llm(SOURCE, negate=REWARD_MODELS, drop_ties=False)
    assert _pair(flipped, 0, 1, 8)["chosen_response_index"] == 1  # all scores negated: the order reverses
    with pytest.raises(ValueError, match="Unknown reward models"):
        load_personal_llm(SOURCE, reward_models=("gpt_judge",))


def test_one_epoch_training(tokenizer, tmp_path):
    train_one_epoch(load_personal_llm(SOURCE), tokenizer, tmp_path, per_device_train_batch_size=16)


def test_a_scorer_that_ranks_against_the_others_is_flagged(tmp_path, caplog):
    import json
    import logging

    rows = [json.loads(line) for line in SOURCE.read_text().splitlines()]
    assert load_personal_llm(SOURCE, return_report=True)[1].adjusted.get("scorer_disagrees_with_the_others") is None
    for row in rows:  # as if the published beaver_7b column were a cost: its sign flipped
        for k in range(1, 9):
            if row[f"response_{k}_beaver_7b"] is not None:
                row[f"response_{k}_beaver_7b"] = -row[f"response_{k}_beaver_7b"]
    flipped = tmp_path / "train.jsonl"
    flipped.write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    with caplog.at_level(logging.WARNING, logger="trl_anchor.data"):
        _, report = load_personal_llm(flipped, return_report=True)
    assert report.adjusted["scorer_disagrees_with_the_others"] == 1
    assert report.examples["scorer_disagrees_with_the_others"][0].startswith("beaver_7b (Spearman ρ -")
    assert "negate=('beaver_7b',)" in caplog.text
    _, fixed = load_personal_llm(flipped, negate=("beaver_7b",), return_report=True)
    assert "scorer_disagrees_with_the_others" not in fixed.adjusted
