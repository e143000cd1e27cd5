"""PPORewardModel. PPO itself needs TRL 1.12.0 (run with `.venv-trl112/bin/python -m pytest tests/test_ppo.py`); on
TRL ≥ 1.13 those tests are skipped at collection and the clear-error path is asserted instead."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import trl
from conftest import tiny_gpt2_config
from datasets import Dataset
from packaging.version import Version
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer, BertConfig

from trl_anchor.models.modeling_gaussian import GaussianRewardModel
from trl_anchor.rewards.normalization import record_reward_statistics
from trl_anchor.rewards.ppo import PPORewardModel
from trl_anchor.rewards.transforms import RewardTransform

REPO = Path(__file__).resolve().parents[2]
LAUNCH_SCRIPT = Path(__file__).with_name("ppo_launch_script.py")
HAS_PPO = Version(trl.__version__) < Version("1.13.0.dev0")
PROMPTS = ["the quick brown fox", "a helpful answer", "the cartoon shows a cat", "i think", "what is two plus two"]


def needs_ppo(test):
    """PPO tests: selected by `-m trl112`, skipped at collection on TRL ≥ 1.13."""
    reason = f"PPOTrainer needs TRL 1.12.0; TRL {trl.__version__} is installed"
    return pytest.mark.trl112(pytest.mark.skipif(not HAS_PPO, reason=reason)(test))


def gaussian_rm(tokenizer, seed=0):
    """A tiny decoder Gaussian reward model whose μ and σ both vary across positions."""
    torch.manual_seed(seed)
    model = GaussianRewardModel.from_config(tiny_gpt2_config(tokenizer))
    with torch.no_grad():
        model.variance_head.weight.normal_(std=1.0)
    return model.eval()


@pytest.mark.skipif(HAS_PPO, reason="TRL ≤ 1.12 ships PPOTrainer; the error path is for TRL ≥ 1.13")
def test_ppo_wrapper_fails_clearly_without_ppo_trainer(tokenizer):
    with pytest.raises(ImportError, match=r"TRL 1\.12\.0 \(`pip install trl==1\.12\.0`.*GaussianRewardFunction"):
        PPORewardModel(gaussian_rm(tokenizer), tokenizer, tokenizer, transform="quantile:0.1")


@needs_ppo
@pytest.mark.parametrize("spec", ["mean", "quantile:0.1", "lcb:1.0,clip:0.5", "variance_penalty:0.3,normalize"])
def test_reward_at_last_token_matches_model_forward(tokenizer, spec):
    model = gaussian_rm(tokenizer)
    record_reward_statistics(model, [-1.0, 0.0, 2.0])
    wrapper = PPORewardModel(model, tokenizer, tokenizer, transform=spec)
    batch = tokenizer([p + " it is four" for p in PROMPTS], padding=True, return_tensors="pt")
    with torch.no_grad():
        reward = wrapper(**batch)
        out = model(**batch)
    expected = RewardTransform.parse(spec).bind(model)(out.mean, out.std)
    torch.testing.assert_close(reward, expected)
    # The wrapper owns exactly the reward model's parameters (what DeepSpeed and `.to()` see), each once.
    backbone = {f"transformer.{name}" for name, _ in model.transformer.named_parameters()}
    heads = {"reward_head.weight", "variance_head.weight", "variance_head.bias"}
    assert set(dict(wrapper.named_parameters())) == backbone | heads


def _plain_transformed_reward(model, ids, pad_token_id, spec):
    """The transformed reward written out from plain transformers: μ is its logit, σ² the variance head applied by hand
    to its hidden state at the last token that is not the pad token."""
    plain = AutoModelForSequenceClassification.from_config(model.config).eval()
    plain.load_state_dict(model.state_dict(), strict=False)
    index = max(i for i, token in enumerate(ids) if token != pad_token_id)
    with torch.no_grad():
        mean = plain(input_ids=torch.tensor([ids])).logits[0, 0]
        hidden = plain.base_model(input_ids=torch.tensor([ids])).last_hidden_state[0, index].double()
        raw = hidden @ model.variance_head.weight[0].double() + model.variance_head.bias.double()
    std = torch.sqrt(torch.nn.functional.softplus(raw) + model.variance_head.variance_floor).float()
    return RewardTransform.parse(spec).bind(model)(mean.reshape(1), std.reshape(1))[0]


@needs_ppo
def test_pad_equal_to_eos_reads_the_reward_where_plain_transformers_does(tokenizer):
    from trl.experimental.utils import get_reward

    tokenizer.pad_token = tokenizer.eos_token  # what TRL does for tokenizers without a pad token
    pad = tokenizer.pad_token_id
    model = gaussian_rm(tokenizer)
    wrapper = PPORewardModel(model, tokenizer, tokenizer, transform="quantile:0.1")
    queries = [tokenizer(p)["input_ids"] for p in PROMPTS[:3]]
    responses = [tokenizer(r)["input_ids"] + [tokenizer.eos_token_id] for r in (" it is four", " no", " the cat")]
    context = max(map(len, queries))
    width = context + max(map(len, responses)) + 2
    query_responses = torch.tensor([  # left-padded queries, responses ending with EOS, then padding: PPO's layout
        [pad] * (context - len(q)) + q + r + [pad] * (width - context - len(r))
        for q, r in zip(queries, responses, strict=True)
    ])
    expected = torch.stack([
        _plain_transformed_reward(model, q + r, pad, "quantile:0.1") for q, r in zip(queries, responses, strict=True)
    ])
    with torch.no_grad():
        _, rewards, _ = get_reward(wrapper, query_responses, pad, context)  # what PPOTrainer calls
        direct = wrapper(input_ids=torch.tensor([q + r for q, r in zip(queries[:1], responses[:1], strict=True)]))
    torch.testing.assert_close(rewards, expected, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(direct, expected[:1], rtol=1e-4, atol=1e-4)


class _LargestUpcast(torch.utils._python_dispatch.TorchDispatchMode):
    """Records the largest float64 or float32 tensor any operation creates."""

    def __init__(self):
        super().__init__()
        self.numel = {torch.float64: 0, torch.float32: 0}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for tensor in out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(tensor, torch.Tensor) and tensor.dtype in self.numel:
                self.numel[tensor.dtype] = max(self.numel[tensor.dtype], tensor.numel())
        return out


@needs_ppo
def test_score_upcasts_the_hidden_states_in_chunks(tokenizer):
    """PPO scores every position: the heads must not hold a float64 (or float32) copy of the whole (B, T, H) batch."""
    model = gaussian_rm(tokenizer).to(torch.bfloat16)
    wrapper = PPORewardModel(model, tokenizer, tokenizer, transform="quantile:0.1")
    hidden = torch.randn(8, 1024, 32, dtype=torch.bfloat16)  # 262 144 values; the heads upcast 4096 rows at a time
    with torch.no_grad(), _LargestUpcast() as largest:
        scores = wrapper.score(hidden)
    assert scores.shape == (8, 1024, 1) and scores.dtype == torch.float32
    assert largest.numel[torch.float64] <= 4096 * 32 and largest.numel[torch.float32] <= 4096 * 32
    with torch.no_grad():  # the same values as the heads applied to each position's hidden state in float64
        mean = hidden.double() @ model.score.weight[0].double()
        raw = hidden.double() @ model.variance_head.weight[0].double() + model.variance_head.bias.double()
    std = torch.sqrt(torch.nn.functional.softplus(raw) + model.variance_head.variance_floor)
    expected = RewardTransform.parse("quantile:0.1").bind(model)(mean.float(), std.float())
    torch.testing.assert_close(scores[..., 0], expected, rtol=1e-5, atol=1e-5)


@needs_ppo
def test_mismatched_tokenizer_is_rejected(tokenizer, minilm_dir):
    other = AutoTokenizer.from_pretrained(minilm_dir)
    with pytest.raises(ValueError, match=r"map \d+ token\(s\) differently .*GaussianRewardFunction"):
        PPORewardModel(gaussian_rm(tokenizer), other, tokenizer)


@needs_ppo
def test_encoder_and_plain_reward_models_are_rejected(tokenizer):
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
        num_labels=1,
    )
    with pytest.raises(ValueError, match="only decoder reward models"):
        PPORewardModel(GaussianRewardModel.from_config(config), tokenizer, tokenizer)
    plain = AutoModelForSequenceClassification.from_config(tiny_gpt2_config(tokenizer))
    with pytest.raises(TypeError, match="wraps a GaussianRewardModel"):
        PPORewardModel(plain, tokenizer, tokenizer)


def _scored_token_ids(query_response, context_length, pad_token_id):
    """The tokens get_reward's reward is read after: the query without its left padding, then the response up to its
    first pad."""
    query, response = query_response[:context_length], query_response[context_length:]
    pads = (response == pad_token_id).nonzero()
    end = pads[0, 0].item() if len(pads) else len(response)
    return torch.cat([query[query != pad_token_id], response[:end]])


@needs_ppo
def test_ppo_trains_and_receives_the_transformed_reward(tokenizer, tiny_causal_lm_dir, tmp_path, monkeypatch):
    from trl.experimental.ppo import PPOConfig, PPOTrainer, ppo_trainer

    tokenizer.padding_side = "left"
    policy = AutoModelForCausalLM.from_pretrained(tiny_causal_lm_dir)
    initial = {name: p.detach().clone() for name, p in policy.named_parameters()}
    value_model = AutoModelForSequenceClassification.from_pretrained(tiny_causal_lm_dir, num_labels=1)
    reward_model = gaussian_rm(tokenizer)
    wrapper = PPORewardModel(reward_model, tokenizer, tokenizer, transform="quantile:0.1")

    received = []

    def recording_get_reward(model, query_responses, pad_token_id, context_length):
        result = ppo_trainer_get_reward(model, query_responses, pad_token_id, context_length)
        if model is wrapper:
            received.append((query_responses.clone(), context_length, result[1].clone()))
        return result

    ppo_trainer_get_reward = ppo_trainer.get_reward
    monkeypatch.setattr(ppo_trainer, "get_reward", recording_get_reward)

    dataset = Dataset.from_dict({"input_ids": [tokenizer(p)["input_ids"] for p in PROMPTS * 2]})
    args = PPOConfig(
        output_dir=str(tmp_path), per_device_train_batch_size=4, gradient_accumulation_steps=1, num_mini_batches=1,
        num_ppo_epochs=1, total_episodes=8, response_length=8, stop_token="eos", missing_eos_penalty=None,
        learning_rate=1e-2, num_sample_generations=0, local_rollout_forward_batch_size=4, report_to="none",
        bf16=False, save_strategy="no", disable_tqdm=True, seed=0,
    )
    trainer = PPOTrainer(
        args=args, processing_class=tokenizer, model=policy, ref_model=None, reward_model=wrapper,
        train_dataset=dataset, value_model=value_model,
    )
    trainer.train()

    assert len(received) == 2  # one rollout batch per PPO update
    transform = RewardTransform.parse("quantile:0.1")
    for query_responses, context_length, scores in received:
        for row, score in zip(query_responses, scores, strict=True):
            ids = _scored_token_ids(row, context_length, tokenizer.pad_token_id)
            with torch.no_grad():
                out = reward_model(input_ids=ids[None])
            torch.testing.assert_close(score, transform(out.mean, out.std)[0], rtol=1e-4, atol=1e-4)
    trained = dict(trainer.model.policy.named_parameters())
    assert any(not torch.equal(trained[name].detach(), value) for name, value in initial.items())


@needs_ppo
def test_ppo_recipe_parses_with_the_example_parser():
    import runpy

    example = runpy.run_path(str(REPO / "examples" / "ppo_gaussian_reward.py"), run_name="ppo_example")
    # bf16 is the recipe's GPU setting; this CPU check only reads the file.
    script_args, training_args, model_args, reward_args = example["make_parser"]().parse_args_and_config(
        args=["--config", str(REPO / "recipes" / "ppo" / "config.yaml"), "--bf16", "false"]
    )
    assert str(RewardTransform.parse(reward_args.reward_transform)) == "quantile:0.1"
    assert script_args.dataset_name and model_args.model_name_or_path and training_args.reward_model_path
    assert training_args.stop_token == "eos"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@needs_ppo
@pytest.mark.slow
@pytest.mark.distributed
def test_example_trains_under_deepspeed_zero3_with_the_transformed_reward(tokenizer, tiny_causal_lm_dir, tmp_path):
    """`examples/ppo_gaussian_reward.py` with 2 CPU processes and ZeRO-3: PPOTrainer shards the reward model through
    its `prepare_deepspeed` path, and every reward it receives equals the transform of a direct call."""
    reward_dir, data_dir, output_dir = tmp_path / "rm", tmp_path / "data", tmp_path / "policy"
    gaussian_rm(tokenizer).save_pretrained(reward_dir)
    tokenizer.save_pretrained(reward_dir)
    data_dir.mkdir()
    rows = [{"prompt": [{"role": "user", "content": p}]} for p in PROMPTS * 2]
    (data_dir / "train.jsonl").write_text("\n".join(json.dumps(row) for row in rows))
    launch = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(REPO / "recipes" / "accelerate_configs" / "zero3.yaml"),
        "--num_processes", "2", "--mixed_precision", "no", "--main_process_port", str(_free_port()),
        str(LAUNCH_SCRIPT), str(tmp_path / "rewards"),
        "--model_name_or_path", str(tiny_causal_lm_dir), "--reward_model_path", str(reward_dir),
        "--dataset_name", str(data_dir), "--reward_transform", "quantile:0.1", "--output_dir", str(output_dir),
        "--per_device_train_batch_size", "2", "--total_episodes", "4", "--num_ppo_epochs", "1",
        "--num_mini_batches", "1", "--response_length", "8", "--stop_token", "eos",
        "--local_rollout_forward_batch_size", "2", "--num_sample_generations", "0", "--learning_rate", "1e-2",
        "--report_to", "none", "--bf16", "false", "--save_strategy", "no",
        "--use_cpu", "true",  # with DS_ACCELERATOR=cpu: gloo collectives across both CPU processes
    ]
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "TRL_EXPERIMENTAL_SILENCE": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(launch, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"launch failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"

    records = [json.loads((tmp_path / f"rewards.rank{rank}.json").read_text()) for rank in (0, 1)]
    assert all(len(rank_records) == 1 for rank_records in records)  # 1 PPO update: one rollout batch per rank
    assert {record["engine"] for rank_records in records for record in rank_records} == {"DeepSpeedEngine"}
    reward_model = GaussianRewardModel.from_pretrained(reward_dir).eval()
    transform = RewardTransform.parse("quantile:0.1")
    for record in (record for rank_records in records for record in rank_records):
        for row, score in zip(torch.tensor(record["query_responses"]), record["scores"], strict=True):
            ids = _scored_token_ids(row, record["context_length"], tokenizer.pad_token_id)
            with torch.no_grad():
                out = reward_model(input_ids=ids[None])
            assert score == pytest.approx(transform(out.mean, out.std).item(), abs=1e-4)

    initial = AutoModelForCausalLM.from_pretrained(tiny_causal_lm_dir).state_dict()
    trained = AutoModelForCausalLM.from_pretrained(output_dir).state_dict()
    assert any(not torch.equal(trained[name], value) for name, value in initial.items())


@needs_ppo
def test_ppo_reward_of_a_multi_attribute_model_combines_attributes(tokenizer):
    # The per-position heads give μ, σ² ∈ R^A; the transform bound to the model combines them with its weights.
    from scipy.stats import norm

    attributes, weights = ["helpfulness", "verbosity"], [0.7, -0.4]
    torch.manual_seed(0)
    model = GaussianRewardModel.from_config(tiny_gpt2_config(tokenizer, num_labels=2), attributes=attributes).eval()
    with torch.no_grad():
        model.variance_head.weight.normal_()
    model.record_training_settings(attribute_weights=weights)
    wrapper = PPORewardModel(model, tokenizer, tokenizer, transform="quantile:0.1")
    ids = torch.tensor([[5, 6, 7, tokenizer.pad_token_id], [8, 9, 10, 11]])
    with torch.no_grad():
        rewards = wrapper(ids, attention_mask=(ids != tokenizer.pad_token_id).long())
        out = model(input_ids=ids, attention_mask=(ids != tokenizer.pad_token_id).long())
    w = torch.tensor(weights, dtype=torch.float64)
    expected = out.mean.double() @ w + norm.ppf(0.1) * (out.variance.double() @ w**2).sqrt()
    torch.testing.assert_close(rewards.double(), expected, rtol=1e-5, atol=1e-6)
