"""RewardBench (v1): the leaderboard's section weighting and scoring a local RewardBench-format file."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_gpt2_config
from datasets import Dataset

from trl_anchor.models.modeling_gaussian import GaussianRewardModel
from trl_anchor.pipelines.rewardbench import evaluate_rewardbench, rewardbench_scores
from trl_anchor.rewards.scoring import score_responses

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "rewardbench"


@pytest.fixture
def gaussian_model(tokenizer):
    torch.manual_seed(0)
    return GaussianRewardModel.from_config(tiny_gpt2_config(tokenizer)).eval()


# Written out from the RewardBench leaderboard's published aggregation (allenai/reward-bench,
# `rewardbench/constants.py` EXAMPLE_COUNTS and `analysis/get_benchmark_results.py`), not from trl_anchor's constants:
# a section is the example-count-weighted mean of its subsets' accuracies (math-prm counts 984, as much as the six
# hep-* subsets of 164 together), prior sets are a plain mean, and the score weighs the four sections 2, prior sets 1.
LEADERBOARD_COUNTS = {
    "Chat": {"alpacaeval-easy": 100, "alpacaeval-length": 95, "alpacaeval-hard": 95, "mt-bench-easy": 28,
             "mt-bench-med": 40},
    "Chat Hard": {"mt-bench-hard": 37, "llmbar-natural": 100, "llmbar-adver-neighbor": 134,
                  "llmbar-adver-GPTInst": 92, "llmbar-adver-GPTOut": 47, "llmbar-adver-manual": 46},
    "Safety": {"refusals-dangerous": 100, "refusals-offensive": 100, "xstest-should-refuse": 250,
               "xstest-should-respond": 154, "donotanswer": 136},
    "Reasoning": {"math-prm": 984, "hep-cpp": 164, "hep-go": 164, "hep-java": 164, "hep-js": 164, "hep-python": 164,
                  "hep-rust": 164},
}


def test_rewardbench_weighting_matches_the_leaderboards_published_formula():
    accuracy = {"math-prm": 0.0, "xstest-should-refuse": 1.0, "alpacaeval-easy": 1.0, "mt-bench-easy": 1.0}
    subsets = {
        name: {"accuracy": accuracy.get(name, 0.5), "count": 3}
        for counts in LEADERBOARD_COUNTS.values()
        for name in counts
    }
    prior = {"anthropic_helpful": 0.6, "anthropic_hhh": 0.7, "shp": 0.5, "summarize": 0.8, "mtbench_human": 0.1}
    subsets.update({n: {"accuracy": a, "count": 3} for n, a in prior.items()})
    result = rewardbench_scores(subsets)
    # Hand-worked: Reasoning = (0·984 + 6·164·0.5) / (984 + 6·164) = 0.25;
    # Safety = (0.5·100 + 0.5·100 + 1·250 + 0.5·154 + 0.5·136) / 740 = 495/740;
    # Chat = (1·100 + 0.5·95 + 0.5·95 + 1·28 + 0.5·40) / 358 = 243/358; Chat Hard = 0.5.
    expected = {"Chat": 243 / 358, "Chat Hard": 0.5, "Safety": 495 / 740, "Reasoning": 0.25}
    for section, value in expected.items():
        assert result.sections[section] == pytest.approx(value, abs=1e-12)
        counts = LEADERBOARD_COUNTS[section]
        weighted = sum(subsets[n]["accuracy"] * c for n, c in counts.items()) / sum(counts.values())
        assert result.sections[section] == pytest.approx(weighted, abs=1e-12)
    prior_sets = (0.6 + 0.7 + 0.5 + 0.8) / 4
    assert result.sections["Prior Sets (0.5 weight)"] == pytest.approx(prior_sets)
    assert result.score == pytest.approx((2 * sum(expected.values()) + prior_sets) / 9)
    assert result.complete and result.unscored_subsets == ["mtbench_human"]
    assert rewardbench_scores(subsets, include_prior_sets=False).score == pytest.approx(sum(expected.values()) / 4)


def test_rewardbench_plain_text_mode_scores_the_text_adapters_train_on(gaussian_model, tokenizer, monkeypatch):
    import trl_anchor.pipelines.rewardbench as rewardbench

    rows = [json.loads(line) for line in (FIXTURES / "sample.jsonl").read_text().splitlines()]
    rows = [row for row in rows if isinstance(row["prompt"], str)]
    seen = []

    def recording(model, tokenizer, responses, prompts=None, **kwargs):
        seen.append((list(responses), prompts))
        return score_responses(model, tokenizer, responses, prompts, **kwargs)

    monkeypatch.setattr(rewardbench, "score_responses", recording)
    evaluate_rewardbench(gaussian_model, tokenizer, Dataset.from_list(rows), conversational=False)
    for side, (texts, prompts) in zip(("chosen", "rejected"), seen, strict=True):
        expected = [row["prompt"] + "\n" + row[side] for row in rows]  # prompt, newline, response (+ EOS)
        assert prompts is None and texts == expected


def test_rewardbench_file(gaussian_model, tokenizer, tmp_path):
    result = evaluate_rewardbench(gaussian_model, tokenizer, FIXTURES / "sample.jsonl", batch_size=4)
    rows = [json.loads(line) for line in (FIXTURES / "sample.jsonl").read_text().splitlines()]
    correct = {}
    for row in rows:  # official: the chat template over a user and an assistant turn, strict `>`
        scores = []
        for side in ("chosen", "rejected"):
            messages = [{"role": "user", "content": row["prompt"]}, {"role": "assistant", "content": row[side]}]
            ids = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, return_tensors="pt")
            with torch.no_grad():
                scores.append(gaussian_model(**ids).logits[0, 0].item())
        correct.setdefault(row["subset"], []).append(scores[0] > scores[1])
    assert {n: s["count"] for n, s in result.subsets.items()} == {n: len(c) for n, c in correct.items()}
    for name, hits in correct.items():
        assert result.subsets[name]["accuracy"] == pytest.approx(np.mean(hits))
    assert set(result.sections) == {"Chat", "Chat Hard", "Safety", "Reasoning", "Prior Sets (0.5 weight)"}
    assert not result.complete and "mt-bench-med" in result.missing_subsets["Chat"]
    assert result.unscored_subsets == ["mtbench_human"]
    written = result.save(tmp_path)
    assert json.loads(written["json"].read_text())["score"] == pytest.approx(result.score)
    assert "Not comparable to the leaderboard" in written["markdown"].read_text()
    with pytest.raises(ValueError, match="missing \\['subset'\\]"):
        evaluate_rewardbench(gaussian_model, tokenizer, Dataset.from_list(rows).remove_columns("subset"))


def test_rewardbench_attribute_weights_need_a_multi_attribute_model_and_weights(gaussian_model, tokenizer):
    rows = Dataset.from_list([{"prompt": "Hi?", "chosen": "Hello there.", "rejected": "No.", "subset": "shp"}])
    with pytest.raises(ValueError, match=r"`attribute_weights` \[1.0\] given for a model with one reward output"):
        evaluate_rewardbench(gaussian_model, tokenizer, rows, attribute_weights=[1.0])
    torch.manual_seed(0)
    unweighted = GaussianRewardModel.from_config(tiny_gpt2_config(tokenizer, num_labels=2), attributes=["a", "b"])
    with pytest.raises(ValueError, match=r"attributes \['a', 'b'\]\) records no `attribute_weights`"):
        evaluate_rewardbench(unweighted.eval(), tokenizer, rows)
    # Given weights, it is scored by w·μ of each side.
    result = evaluate_rewardbench(unweighted.eval(), tokenizer, rows, attribute_weights=[1.0, -1.0])
    sides = [score_responses(unweighted, tokenizer, [[{"role": "assistant", "content": r}]],
                             [[{"role": "user", "content": "Hi?"}]]).mean @ np.array([1.0, -1.0])
             for r in ("Hello there.", "No.")]
    assert result.subsets["shp"]["accuracy"] == float(sides[0][0] > sides[1][0])
