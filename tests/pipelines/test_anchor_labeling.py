"""Anchor labelling with an external scorer: scores, τ, centring, the resumable cache, model scorers, the
`label-anchors` command, and training on its output with `anchor_thresholds="auto"`."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_gpt2_config
from datasets import Dataset, DatasetDict, load_from_disk

from trl_anchor.models.loading import load_reward_model
from trl_anchor.pipelines.anchor_labeling import ScoreCache, cache_key, label_anchors
from trl_anchor.rewards.scoring import score_responses

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def _pairs(n=6, prompt=True, offset=0):
    rows = {
        "chosen": [f"a good answer number {i + offset}" for i in range(n)],
        "rejected": [f"bad {i + offset}" for i in range(n)],
    }
    if prompt:
        rows = {"prompt": [f"question {i % 2} " for i in range(n)], **rows}
    return Dataset.from_dict(rows)


class LengthScorer:
    """A callable scorer (like an LLM judge) that records how many responses it was asked to score."""

    def __init__(self, fail_after=None):
        self.calls, self.fail_after = [], fail_after

    def __call__(self, prompts, responses):
        if self.fail_after is not None and len(self.calls) >= self.fail_after:
            raise RuntimeError("judge went away")
        self.calls.append(list(zip(prompts, responses, strict=True)))
        return [float(len(r)) for r in responses]


@pytest.fixture(scope="module")
def reward_model_dir(tmp_path_factory, tokenizer_dir):
    """A saved tiny GPT-2 sequence-classification reward model with the local tokenizer."""
    from transformers import AutoTokenizer, GPT2ForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("reward_model")
    GPT2ForSequenceClassification(tiny_gpt2_config(tokenizer)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


# ----------------------------------------------------------------------------------------------- callable scorer
def test_callable_scores_and_percentile_thresholds():
    data = _pairs()
    result = label_anchors(data, LengthScorer(), scorer_id="length")
    chosen = [float(len(t)) for t in data["chosen"]]
    rejected = [float(len(t)) for t in data["rejected"]]
    assert list(result.dataset["chosen_score"]) == chosen and list(result.dataset["rejected_score"]) == rejected
    assert result.thresholds == pytest.approx(np.percentile(chosen + rejected, [25, 75]).tolist())
    assert result.center is None and result.num_scored == 12 and result.num_cached == 0
    assert label_anchors(data, LengthScorer(), percentiles=(50,)).thresholds == [float(np.median(chosen + rejected))]


def test_centring_uses_the_train_mean_for_every_split():
    splits = DatasetDict({"train": _pairs(), "test": _pairs(4, offset=100)})
    result = label_anchors(splits, LengthScorer(), center=True)
    train_raw = [float(len(t)) for t in list(splits["train"]["chosen"]) + list(splits["train"]["rejected"])]
    assert result.center == pytest.approx(np.mean(train_raw))
    train = result.dataset["train"]
    assert np.mean(list(train["chosen_score"]) + list(train["rejected_score"])) == pytest.approx(0.0, abs=1e-12)
    test_chosen = [float(len(t)) - result.center for t in splits["test"]["chosen"]]
    assert list(result.dataset["test"]["chosen_score"]) == pytest.approx(test_chosen)
    assert result.thresholds == pytest.approx((np.percentile(train_raw, [25, 75]) - result.center).tolist())
    with pytest.raises(ValueError, match="No 'train' split"):
        label_anchors(DatasetDict({"dev": _pairs()}), LengthScorer())


def test_implicit_prompt_and_repeated_responses():
    data = Dataset.from_dict({"chosen": ["same", "same", "other"], "rejected": ["x", "x", "same"]})
    scorer = LengthScorer()
    result = label_anchors(data, scorer)
    scored = [pair for call in scorer.calls for pair in call]
    assert sorted(scored) == sorted([(None, "same"), (None, "other"), (None, "x")])  # each distinct response once
    assert list(result.dataset["rejected_score"]) == [1.0, 1.0, 4.0]


def test_existing_scores_are_replaced():
    data = _pairs().add_column("chosen_score", [0.0] * 6).add_column("rejected_score", [0.0] * 6)
    result = label_anchors(data, LengthScorer())
    assert result.dataset.column_names.count("chosen_score") == 1 and result.dataset["chosen_score"][0] > 0


# ---------------------------------------------------------------------------------------------------------- cache
def test_cache_resumes_an_interrupted_run(tmp_path):
    cache_file = tmp_path / "scores.jsonl"
    data = _pairs(10)
    with pytest.raises(RuntimeError, match="judge went away"):
        label_anchors(data, LengthScorer(fail_after=2), scorer_id="judge", cache_file=cache_file, chunk_size=4)
    assert len(cache_file.read_text().splitlines()) == 8  # two chunks made it to disk before the failure
    with open(cache_file, "a") as handle:
        handle.write('{"key": "trunc')  # a write cut short by the crash
    scorer = LengthScorer()
    result = label_anchors(data, scorer, scorer_id="judge", cache_file=cache_file, chunk_size=4)
    assert (result.num_cached, result.num_scored) == (8, 12)
    assert sum(len(call) for call in scorer.calls) == 12
    again = LengthScorer()
    assert label_anchors(data, again, scorer_id="judge", cache_file=cache_file).num_scored == 0 and not again.calls
    other = LengthScorer()
    assert label_anchors(data, other, scorer_id="another judge", cache_file=cache_file).num_scored == 20


def test_cache_keys_depend_on_prompt_response_and_scorer(tmp_path):
    key = cache_key("p", "r", "m")
    assert key == cache_key("p", "r", "m")
    assert len({key, cache_key("p2", "r", "m"), cache_key("p", "r2", "m"), cache_key("p", "r", "m2")}) == 4
    messages = [{"role": "user", "content": "p"}]
    assert cache_key(messages, "r", "m") != cache_key("p", "r", "m")
    cache = ScoreCache(tmp_path / "c.jsonl")
    cache.add([key], [1.5])
    assert ScoreCache(tmp_path / "c.jsonl").scores == {key: 1.5}


# ----------------------------------------------------------------------------------------------------- bad scorer
@pytest.mark.parametrize(
    "scorer, message",
    [
        (lambda p, r: [1.0], "returned 1 scores for"),
        (lambda p, r: [float("nan")] * len(r), "non-finite"),
    ],
)
def test_bad_scorer_output(scorer, message):
    with pytest.raises(ValueError, match=message):
        label_anchors(_pairs(), scorer)


def test_bad_inputs(reward_model_dir):
    from transformers import GPT2ForSequenceClassification

    with pytest.raises(ValueError, match="no `rejected` column"):
        label_anchors(Dataset.from_dict({"chosen": ["a"]}), LengthScorer())
    model = GPT2ForSequenceClassification.from_pretrained(reward_model_dir)
    with pytest.raises(ValueError, match="needs its `tokenizer`"):
        label_anchors(_pairs(), model)
    with pytest.raises(TypeError, match="`scorer` must be"):
        label_anchors(_pairs(), 3)


# ---------------------------------------------------------------------------------------------------- model scorer
def test_model_scorer_matches_score_responses_with_the_chat_template(reward_model_dir):
    from trl_anchor.data import load_multipref

    model, tokenizer = load_reward_model(str(reward_model_dir), device="cpu")
    data = load_multipref(FIXTURES / "multipref" / "train.jsonl")  # conversational
    result = label_anchors(data, model, tokenizer=tokenizer, batch_size=2)
    direct = score_responses(model, tokenizer, data["chosen"], data["prompt"])
    assert list(result.dataset["chosen_score"]) == pytest.approx(direct.mean.tolist(), abs=1e-5)
    assert result.scorer_id == str(reward_model_dir)
    by_path = label_anchors(data, str(reward_model_dir))
    assert list(by_path.dataset["rejected_score"]) == pytest.approx(list(result.dataset["rejected_score"]), abs=1e-5)


def test_a_gaussian_checkpoint_is_labelled_with_its_mean(tmp_path, tokenizer):
    from transformers import AutoModelForSequenceClassification

    from trl_anchor.models.modeling_gaussian import GaussianRewardModel

    torch.manual_seed(0)
    model = GaussianRewardModel.from_config(tiny_gpt2_config(tokenizer))
    with torch.no_grad():
        model.variance_head.weight.normal_(0.0, 0.5)  # σ varies, so a score that mixed it in would differ
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    data = _pairs()
    result = label_anchors(data, str(tmp_path))
    # The plain classifier of the same checkpoint ignores the variance head: its logit is μ.
    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path)
    expected = score_responses(plain, tokenizer, data["chosen"], data["prompt"]).mean
    assert list(result.dataset["chosen_score"]) == pytest.approx(expected.tolist(), abs=1e-5)


# ------------------------------------------------------------------------------------ command and training on it
def test_label_anchors_command_then_training_with_auto_thresholds(reward_model_dir, tokenizer, tmp_path, capsys):
    from trl_anchor import AnchorGaussianRewardConfig, AnchorGaussianRewardTrainer, GaussianRewardModel
    from trl_anchor.cli import main

    output_dir = tmp_path / "labelled"
    argv = [
        "label-anchors",
        "--dataset_adapter",
        "helpsteer3",
        "--dataset_path",
        str(FIXTURES / "helpsteer3" / "train.jsonl"),
        "--reward_model",
        str(reward_model_dir),
        "--output_dir",
        str(output_dir),
        "--batch_size",
        "2",
        "--show_progress",
        "false",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    summary = json.loads((output_dir / "anchor_labeling.json").read_text())
    assert f"anchor_thresholds: {summary['anchor_thresholds']}" in printed
    assert summary["num_scored"] == 6 and summary["scorer"] == str(reward_model_dir)
    assert main(argv) == 0  # a second run reads every score from the cache
    assert json.loads((output_dir / "anchor_labeling.json").read_text())["num_cached"] == 6
    train = load_from_disk(str(output_dir))["train"]
    assert {"chosen_score", "rejected_score"} <= set(train.column_names) and len(train) == 3

    torch.manual_seed(0)
    trainer = AnchorGaussianRewardTrainer(
        model=GaussianRewardModel.from_config(tiny_gpt2_config(tokenizer)),
        args=AnchorGaussianRewardConfig(
            output_dir=str(tmp_path / "run"),
            anchor_thresholds="auto",
            num_train_epochs=1,
            per_device_train_batch_size=2,
            max_length=256,
            logging_steps=1,
            report_to="none",
            use_cpu=True,
            bf16=False,
            gradient_checkpointing=False,
            save_strategy="no",
        ),
        train_dataset=train,
        processing_class=tokenizer,
    )
    assert trainer.anchor_thresholds == pytest.approx(summary["anchor_thresholds"])
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "anchor_loss" in entry]
    assert trainer.state.global_step == math.ceil(3 / 2) and logs and np.isfinite(logs[-1]["anchor_loss"])
