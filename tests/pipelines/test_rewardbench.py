"""RewardBench (v1): the leaderboard's section weighting and scoring a local RewardBench-format file."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_gpt2_config
from datasets import Dataset

from trl_anchor.models.modeling_gaussian import GaussianRewardModel
from trl_anchor.pipelines.rewardbench import (
    REWARDBENCH_EXAMPLE_COUNTS,
    REWARDBENCH_SECTIONS,
    evaluate_rewardbench,
    rewardbench_scores,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "rewardbench"


@pytest.fixture
def gaussian_model(tokenizer):
    torch.manual_seed(0)
    return GaussianRewardModel.from_config(tiny_gpt2_config(tokenizer)).eval()


def test_rewardbench_weighting_matches_official_formula():
    rng = np.random.default_rng(0)
    subsets = {
        n: {"accuracy": float(rng.uniform()), "count": 3} for names in REWARDBENCH_SECTIONS.values() for n in names
    }
    prior = {"anthropic_helpful": 0.6, "anthropic_hhh": 0.7, "shp": 0.5, "summarize": 0.8, "mtbench_human": 0.1}
    subsets.update({n: {"accuracy": a, "count": 3} for n, a in prior.items()})
    result = rewardbench_scores(subsets)

    def weighted(names):
        return sum(subsets[n]["accuracy"] * REWARDBENCH_EXAMPLE_COUNTS[n] for n in names) / sum(
            REWARDBENCH_EXAMPLE_COUNTS[n] for n in names
        )

    # Reasoning: math-prm (984) weighs as much as the six code subsets (6 × 164) together.
    code = np.mean([subsets[f"hep-{lang}"]["accuracy"] for lang in ("cpp", "go", "java", "js", "python", "rust")])
    assert result.sections["Reasoning"] == pytest.approx((subsets["math-prm"]["accuracy"] + code) / 2)
    for section in ("Chat", "Chat Hard", "Safety"):
        assert result.sections[section] == pytest.approx(weighted(REWARDBENCH_SECTIONS[section]))
    prior_sets = np.mean([0.6, 0.7, 0.5, 0.8])
    assert result.sections["Prior Sets (0.5 weight)"] == pytest.approx(prior_sets)
    core = [result.sections[s] for s in ("Chat", "Chat Hard", "Safety", "Reasoning")]
    assert result.score == pytest.approx((2 * sum(core) + prior_sets) / 9)
    assert result.complete and result.unscored_subsets == ["mtbench_human"]
    assert rewardbench_scores(subsets, include_prior_sets=False).score == pytest.approx(np.mean(core))


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
