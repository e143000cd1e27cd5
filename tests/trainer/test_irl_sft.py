"""IRLSFTTrainer (IRFT and RFT from SFT demonstrations): config validation, the round's data (pairs, weights,
resampling, log-probabilities), and both modes end to end with a tiny GPT-2 whose pad token is its EOS token.

Runs on the newest TRL and on TRL 1.12 (same `DPOTrainer`/`SFTTrainer`/`GRPOTrainer` interfaces)."""

import json
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset
from scipy.stats import norm
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel

from trl_anchor import IRLSFTConfig, IRLSFTTrainer
from trl_anchor.models.modeling_gaussian import GaussianRewardModel
from trl_anchor.rewards.transforms import RewardTransform
from trl_anchor.trainer.irl_sft_data import (
    build_pairs,
    demonstration_weights,
    prepare_demonstrations,
    resample_by_weight,
    round_prompt_indices,
)
from trl_anchor.trainer.irl_sft_generation import completion_log_probs, generate_samples, generate_samples_vllm
from trl_anchor.trainer.irl_sft_reward import best_of_n

WORDS = ["abc", "bca", "fed", "cab", "dea", "ebf", "fac", "bde"]


def char_tokenizer():
    """Character-level tokenizer whose pad token is its EOS token (the common decoder set-up)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<eos>": 0, **{c: i + 1 for i, c in enumerate("abcdef>")}}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<eos>"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("."), behavior="isolated")
    backend.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<eos>", pad_token="<eos>")


@pytest.fixture(scope="module")
def tokenizer():
    return char_tokenizer()


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory, tokenizer):
    torch.manual_seed(0)
    config = GPT2Config(
        n_layer=1, n_head=2, n_embd=32, n_positions=32, vocab_size=len(tokenizer), bos_token_id=0, eos_token_id=0,
        pad_token_id=0,
    )
    path = tmp_path_factory.mktemp("policy")
    GPT2LMHeadModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


@pytest.fixture(scope="module")
def demonstrations():
    return Dataset.from_dict({"prompt": [w + ">" for w in WORDS], "completion": [w[::-1] for w in WORDS]})


def make_args(output_dir, **overrides):
    values = dict(
        num_rounds=1, max_new_tokens=4, per_device_train_batch_size=8, per_device_eval_batch_size=16, max_steps=3,
        reward_max_steps=4, learning_rate=5e-3, reward_learning_rate=5e-3, bf16=False, gradient_checkpointing=False,
        report_to="none", disable_tqdm=True, kl_num_prompts=4, logging_steps=1, seed=0,
    )
    values.update(overrides)
    return IRLSFTConfig(str(output_dir), **values)


def parameters(path_or_model):
    model = AutoModelForCausalLM.from_pretrained(path_or_model) if isinstance(path_or_model, str) else path_or_model
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def assert_policy_changed(before: str, after: str):
    initial, trained = parameters(before), parameters(after)
    assert any(not torch.equal(trained[name], initial[name]) for name in initial), "the round did not train the policy"


# --------------------------------------------------------------------------------------------------------- config
@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"mode": "spin"}, "`mode` must be one of"),
        ({"num_rounds": 0}, "`num_rounds` must be a positive integer"),
        ({"num_samples_per_prompt": 0}, "`num_samples_per_prompt` must be a positive integer"),
        ({"beta": 0.0}, "`beta` must be > 0"),
        ({"top_p": 1.5}, "`top_p` must lie in"),
        ({"sft_loss_weight": -1.0}, "`sft_loss_weight` must be ≥ 0"),
        ({"anchor_thresholds": [1.0, 0.0]}, "strictly increasing"),
        ({"reward_type": "bt", "reward_transform": "lcb:1"}, "needs σ, so `reward_type='gaussian'`"),
        ({"reward_type": "bt", "demo_weighting": "gaussian"}, "needs σ"),
        ({"reward_type": "bt", "anchor_demonstrations": True}, "needs σ"),
        ({"reward_transform": "quantile:2"}, "strictly between 0 and 1"),
        ({"mode": "implicit", "policy_improvement": "grpo"}, "applies to mode='explicit'"),
        ({"mode": "explicit", "sft_loss_weight": 1.0}, "mode='implicit' only"),
        ({"mode": "explicit", "policy_improvement": "rloo", "demo_weighting": "gaussian"}, "it trains on none"),
    ],
)
def test_config_validation_errors(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        make_args(tmp_path, **overrides)


def test_dataset_validation_errors():
    with pytest.raises(ValueError, match=r"missing \['completion'\]"):
        prepare_demonstrations(Dataset.from_dict({"prompt": ["a"], "response": ["b"]}))
    with pytest.raises(ValueError, match="Row 1 of `train_dataset` has an empty `completion`"):
        prepare_demonstrations(Dataset.from_dict({"prompt": ["a", "b"], "completion": ["x", " "]}))
    with pytest.raises(ValueError, match="Row 0 .* must end with an assistant turn"):
        prepare_demonstrations(Dataset.from_dict({"messages": [[{"role": "user", "content": "hi"}]]}))
    with pytest.raises(ValueError, match="is empty"):
        prepare_demonstrations(Dataset.from_dict({"prompt": [], "completion": []}))
    messages = [[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]]
    split = prepare_demonstrations(Dataset.from_dict({"messages": messages}))
    assert split[0] == {"prompt": messages[0][:1], "completion": messages[0][1:]}


# ------------------------------------------------------------------------------------------------------ round data
def test_build_pairs_pairs_every_differing_sample_and_counts_identical_ones(demonstrations):
    demos = demonstrations.select(range(3))
    samples = [["cba", "abc"], ["xyz", "acb"], ["de", "df"]]  # row 0: one copy of its demonstration; row 1: one
    pairs = build_pairs(demos, samples)
    assert (pairs.num_samples, pairs.num_identical, pairs.num_pairs) == (6, 2, 4)
    assert pairs.pairs["rejected"] == ["abc", "xyz", "de", "df"]
    assert pairs.pairs["chosen"] == ["cba", "acb", "def", "def"]
    assert pairs.pairs["demo_index"] == [0, 1, 2, 2]


def test_conversational_pairs_wrap_samples_as_assistant_messages():
    demos = Dataset.from_dict({
        "prompt": [[{"role": "user", "content": "hi"}]],
        "completion": [[{"role": "assistant", "content": "hello"}]],
    })
    pairs = build_pairs(demos, [["hello", "bye"]])
    assert pairs.num_identical == 1
    assert pairs.pairs[0]["rejected"] == [{"role": "assistant", "content": "bye"}]


def test_demonstration_weights_match_the_gaussian_preference_probability():
    demo_mean, demo_std = np.array([1.0, -0.5, 0.2]), np.array([0.5, 2.0, 1.0])
    sample_mean, sample_std = np.array([0.0, 0.3, 0.1, -1.0]), np.array([1.0, 0.5, 0.2, 0.3])
    demo_index = np.array([0, 0, 1, 1])  # demonstration 2 has no pair
    prob, weights = demonstration_weights(demo_mean, demo_std, sample_mean, sample_std, demo_index)
    expected = [
        np.mean([norm.cdf((demo_mean[d] - sample_mean[k]) / np.hypot(demo_std[d], sample_std[k]))
                 for k in range(4) if demo_index[k] == d])
        for d in (0, 1)
    ]
    np.testing.assert_allclose(prob[:2], expected, rtol=1e-12)
    assert np.isnan(prob[2]) and np.isnan(weights[2])
    np.testing.assert_allclose(weights[:2], np.array(expected) / np.mean(expected), rtol=1e-12)
    # A lower μ or a higher σ on a confidently preferred demonstration lowers its weight.
    lower_mu, _ = demonstration_weights(demo_mean - [1.0, 0, 0], demo_std, sample_mean, sample_std, demo_index)
    wider, _ = demonstration_weights(demo_mean, demo_std * [4.0, 1, 1], sample_mean, sample_std, demo_index)
    assert lower_mu[0] < prob[0] and wider[0] < prob[0]


def test_systematic_resampling_keeps_size_and_follows_the_weights():
    dataset = Dataset.from_dict({"row": list(range(7))})
    weights = np.array([0.0, 1.0, 2.0, 0.5, 0.5, 3.0, 0.0])
    for seed in range(20):
        counts = np.bincount(resample_by_weight(dataset, weights, seed)["row"], minlength=7)
        expected = 7 * weights / weights.sum()
        assert counts.sum() == 7
        assert np.all(counts >= np.floor(expected)) and np.all(counts <= np.ceil(expected))
    with pytest.raises(ValueError, match="finite, ≥ 0 and not all zero"):
        resample_by_weight(dataset, np.zeros(7), 0)


def test_round_prompt_slices_cover_every_prompt_once():
    slices = [round_prompt_indices(10, 3, t, split=True) for t in range(3)]
    assert sorted(np.concatenate(slices).tolist()) == list(range(10))
    assert [len(s) for s in slices] == [4, 3, 3]
    assert round_prompt_indices(10, 3, 1, split=False).tolist() == list(range(10))
    with pytest.raises(ValueError, match="at least one prompt per round"):
        round_prompt_indices(2, 3, 0, split=True)


def test_completion_log_probs_match_an_unbatched_forward(policy_dir, tokenizer):
    model = AutoModelForCausalLM.from_pretrained(policy_dir)
    prompts, completions = ["abc>", "fe>", "a>"], ["cba", "ef", "abcdef"]
    batched = completion_log_probs(model, tokenizer, prompts, completions, batch_size=2)
    for prompt, completion, value in zip(prompts, completions, batched, strict=True):
        ids = tokenizer(prompt + completion)["input_ids"] + [tokenizer.eos_token_id]
        start = len(tokenizer(prompt)["input_ids"])
        with torch.no_grad():
            log_probs = torch.log_softmax(model(torch.tensor([ids])).logits[0].double(), -1)
        expected = sum(log_probs[i - 1, ids[i]].item() for i in range(start, len(ids)))
        assert value == pytest.approx(expected, abs=1e-4)


def test_generation_is_seeded_and_shaped(policy_dir, tokenizer):
    model = AutoModelForCausalLM.from_pretrained(policy_dir)
    prompts = [w + ">" for w in WORDS[:3]]
    first = generate_samples(model, tokenizer, prompts, num_samples=2, max_new_tokens=4, batch_size=2, seed=3)
    again = generate_samples(model, tokenizer, prompts, num_samples=2, max_new_tokens=4, batch_size=2, seed=3)
    other = generate_samples(model, tokenizer, prompts, num_samples=2, max_new_tokens=4, batch_size=2, seed=4)
    assert first == again != other and [len(s) for s in first] == [2, 2, 2]
    assert all(len(text) <= 4 and "<eos>" not in text for row in first for text in row)


def test_vllm_generation_requests_k_samples_per_tokenized_prompt(monkeypatch, tokenizer):
    calls = {}

    class FakeLLM:
        def __init__(self, model, **kwargs):
            calls["init"] = (model, kwargs)

        def generate(self, requests, params, use_tqdm):
            calls["requests"], calls["params"] = requests, params
            return [types.SimpleNamespace(outputs=[types.SimpleNamespace(text=f"{i}-{k}") for k in range(params.n)])
                    for i in range(len(requests))]

    fake = types.SimpleNamespace(LLM=FakeLLM, SamplingParams=lambda **kw: types.SimpleNamespace(**kw))
    monkeypatch.setitem(sys.modules, "vllm", fake)
    samples = generate_samples_vllm("policy-dir", tokenizer, ["ab>", "c>"], 3, 5, temperature=0.7, seed=1)
    assert samples == [["0-0", "0-1", "0-2"], ["1-0", "1-1", "1-2"]]
    assert calls["requests"] == [{"prompt_token_ids": tokenizer("ab>")["input_ids"]},
                                 {"prompt_token_ids": tokenizer("c>")["input_ids"]}]
    assert (calls["params"].n, calls["params"].max_tokens, calls["params"].temperature) == (3, 5, 0.7)
    assert calls["init"][0] == "policy-dir"


def test_best_of_n_picks_the_highest_transformed_reward(policy_dir, tokenizer, demonstrations):
    torch.manual_seed(0)
    model = GaussianRewardModel.from_pretrained(policy_dir)
    with torch.no_grad():
        model.variance_head.weight.normal_(std=3.0)  # σ varies, so the risk-averse choice can differ from μ's
    demos = demonstrations.select(range(4))
    samples = [["a", "bb"], ["ccc", "d"], ["ef", "fe"], ["b", "c"]]
    transform = RewardTransform.parse("lcb:2")
    winners, demo_won = best_of_n(model, tokenizer, demos, samples, transform, True, batch_size=3)
    for i, (example, options) in enumerate(zip(demos, samples, strict=True)):
        candidates = [example["completion"], *options]
        rewards = []
        for text in candidates:
            ids = tokenizer(example["prompt"] + text + "<eos>")["input_ids"]
            with torch.no_grad():
                out = model(input_ids=torch.tensor([ids]))
            rewards.append((out.mean - 2 * out.std).item())
        assert winners[i] == candidates[int(np.argmax(rewards))]
        assert demo_won[i] == (int(np.argmax(rewards)) == 0)


# ------------------------------------------------------------------------------------------------------ end to end
def test_implicit_round_raises_the_margin_and_changes_the_policy(policy_dir, tokenizer, demonstrations, tmp_path):
    args = make_args(tmp_path, mode="implicit", num_samples_per_prompt=2, sft_loss_weight=0.5)
    trainer = IRLSFTTrainer(policy_dir, args, demonstrations, processing_class=tokenizer)
    (metrics,) = trainer.train()
    assert metrics["num_pairs"] == metrics["num_samples"] - metrics["num_identical"] > 0
    assert metrics["logp_margin_after"] > metrics["logp_margin_before"]
    assert metrics["reward_margin"] > metrics["reward_margin_before"] == 0.0
    assert metrics["reward_margin"] == pytest.approx(
        args.beta * (metrics["logp_margin_after"] - metrics["logp_margin_before"])
    )
    assert metrics["kl_to_start"] is not None and np.isfinite(metrics["kl_to_start"])
    assert_policy_changed(policy_dir, str(tmp_path / "round-1" / "policy"))
    assert_policy_changed(policy_dir, str(tmp_path))  # the final policy is saved to output_dir
    state = json.loads((tmp_path / "irl_sft_state.json").read_text())
    assert state["history"] == [metrics] and state["policy_path"] == str(tmp_path / "round-1" / "policy")
    samples = json.loads((tmp_path / "round-1" / "samples.json").read_text())
    assert len(samples) == len(demonstrations) and all(len(row) == 2 for row in samples)


def test_explicit_round_raises_the_reward_margin_and_changes_the_policy(
    policy_dir, tokenizer, demonstrations, tmp_path
):
    args = make_args(
        tmp_path, mode="explicit", num_samples_per_prompt=2, reward_transform="quantile:0.25",
        anchor_demonstrations=True, demo_weighting="gaussian",
    )
    trainer = IRLSFTTrainer(policy_dir, args, demonstrations, processing_class=tokenizer)
    (metrics,) = trainer.train()
    assert metrics["reward_margin"] > metrics["reward_margin_before"]
    assert metrics["demo_sigma"] > 0 and metrics["sample_sigma"] > 0
    assert 0 <= metrics["best_of_n_demo_rate"] <= 1 and metrics["demo_weight_count"] > 0
    weights = json.loads((tmp_path / "round-1" / "demo_weights.json").read_text())
    finite = np.array([w for w in weights["weights"] if w is not None and np.isfinite(w)])
    assert finite.mean() == pytest.approx(1.0)
    reward_model = GaussianRewardModel.from_pretrained(tmp_path / "round-1" / "reward_model")
    assert reward_model.gaussian_settings["anchor_thresholds"] == [0.0]
    assert_policy_changed(policy_dir, str(tmp_path / "round-1" / "policy"))


@pytest.mark.slow
def test_explicit_grpo_round_trains_against_the_reward_model(policy_dir, tokenizer, demonstrations, tmp_path):
    args = make_args(
        tmp_path, mode="explicit", policy_improvement="grpo", reward_type="bt", num_samples_per_prompt=2,
        max_steps=2, use_vllm=False,
    )
    (metrics,) = IRLSFTTrainer(policy_dir, args, demonstrations, processing_class=tokenizer).train()
    assert metrics["reward_margin"] > metrics["reward_margin_before"]
    assert_policy_changed(policy_dir, str(tmp_path / "round-1" / "policy"))


@pytest.mark.slow
def test_resuming_between_rounds_reproduces_an_uninterrupted_run(policy_dir, tokenizer, demonstrations, tmp_path):
    full = IRLSFTTrainer(
        policy_dir, make_args(tmp_path / "full", num_rounds=2), demonstrations, processing_class=tokenizer
    ).train()

    IRLSFTTrainer(policy_dir, make_args(tmp_path / "cut", num_rounds=1), demonstrations, tokenizer).train()
    first_round = (tmp_path / "cut" / "round-1" / "policy" / "model.safetensors").stat().st_mtime_ns
    resumed = IRLSFTTrainer(policy_dir, make_args(tmp_path / "cut", num_rounds=2), demonstrations, tokenizer)
    history = resumed.train(resume_from_checkpoint=True)

    assert (tmp_path / "cut" / "round-1" / "policy" / "model.safetensors").stat().st_mtime_ns == first_round
    assert [h["round"] for h in history] == [1, 2]
    for key in ("num_pairs", "logp_margin_before", "logp_margin_after", "kl_to_start"):
        assert history[1][key] == pytest.approx(full[1][key], rel=1e-4, abs=1e-5), key
    final_full, final_resumed = parameters(str(tmp_path / "full")), parameters(str(tmp_path / "cut"))
    for name, value in final_full.items():
        torch.testing.assert_close(final_resumed[name], value, rtol=1e-4, atol=1e-5)


def test_resume_errors(policy_dir, tokenizer, demonstrations, tmp_path):
    trainer = IRLSFTTrainer(policy_dir, make_args(tmp_path), demonstrations, processing_class=tokenizer)
    with pytest.raises(ValueError, match="Cannot resume: .* does not exist"):
        trainer.train(resume_from_checkpoint=True)
    (tmp_path / "irl_sft_state.json").write_text(json.dumps({"mode": "explicit", "history": []}))
    with pytest.raises(ValueError, match="Cannot resume a mode='explicit' run with mode='implicit'"):
        trainer.train(resume_from_checkpoint=True)


def test_use_vllm_without_vllm_is_a_clear_error(policy_dir, tokenizer, demonstrations, tmp_path, monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "vllm" else real_find_spec(name))
    with pytest.raises(ValueError, match="`use_vllm=True` needs vLLM"):
        IRLSFTTrainer(policy_dir, make_args(tmp_path, use_vllm=True), demonstrations, processing_class=tokenizer)


def test_zero3_is_refused(policy_dir, tokenizer, demonstrations, tmp_path, monkeypatch):
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "3")
    with pytest.raises(ValueError, match="use ZeRO-2"):
        IRLSFTTrainer(policy_dir, make_args(tmp_path), demonstrations, processing_class=tokenizer)


def test_an_instantiated_policy_is_saved_as_round_zero(tokenizer, demonstrations, tmp_path, policy_dir):
    model = AutoModelForCausalLM.from_pretrained(policy_dir)
    trainer = IRLSFTTrainer(model, make_args(tmp_path), demonstrations, processing_class=tokenizer)
    assert trainer.policy_path == str(tmp_path / "round-0" / "policy")
    assert Path(trainer.policy_path, "tokenizer.json").is_file()
    for name, value in parameters(trainer.policy_path).items():
        assert torch.equal(value, dict(model.named_parameters())[name].detach())
