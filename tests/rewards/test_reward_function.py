"""GaussianRewardFunction on the newest TRL: unit behaviour, then GRPO and RLOO end to end with a tiny policy and a
tiny Gaussian reward model whose tokenizer (WordPiece, MiniLM's) and chat template differ from the policy's."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer, BertConfig

from trl_anchor.models.modeling_gaussian import GaussianRewardModel
from trl_anchor.rewards.reward_function import GaussianRewardFunction
from trl_anchor.rewards.transforms import RewardTransform

REPO = Path(__file__).resolve().parents[2]
LAUNCH_SCRIPT = Path(__file__).with_name("grpo_launch_script.py")
RM_CHAT_TEMPLATE = "{% for message in messages %}{{ message['role'] }} says: {{ message['content'] }} | {% endfor %}"
PROMPTS = ["the quick brown fox", "a helpful answer explains", "the cartoon shows a cat", "i think the caption"]


@pytest.fixture(scope="module")
def rm_tokenizer(minilm_dir):
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir)
    tokenizer.chat_template = RM_CHAT_TEMPLATE
    return tokenizer


@pytest.fixture(scope="module")
def reward_model(rm_tokenizer):
    """A tiny BERT Gaussian reward model with a non-trivial variance head (σ varies across responses)."""
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(rm_tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, num_labels=1, pad_token_id=rm_tokenizer.pad_token_id,
    )
    model = GaussianRewardModel.from_config(config)
    with torch.no_grad():
        model.variance_head.weight.normal_(std=5.0)
    return model.eval()


def direct_reward(model, tokenizer, transform, prompt, completion, quantile_level=None):
    """One unbatched, unpadded reward-model call on the token ids TRL's RewardTrainer would build."""
    if isinstance(completion, list):
        ids = tokenizer.apply_chat_template(prompt + completion, tokenize=True, return_dict=True)["input_ids"]
    else:
        ids = tokenizer(prompt + completion)["input_ids"]
    with torch.no_grad():
        out = model(input_ids=torch.tensor([list(ids)]))
    levels = None if quantile_level is None else torch.tensor([quantile_level], dtype=torch.float64)
    reward = transform(out.mean.double(), out.std.double(), quantile_levels=levels).item()
    return reward, out.mean.item(), out.std.item()


def test_scores_standard_and_conversational_with_the_reward_models_own_template(reward_model, rm_tokenizer):
    func = GaussianRewardFunction(reward_model, rm_tokenizer, transform="quantile:0.1", batch_size=3)
    assert func.__name__ == "gaussian_reward_quantile_0.1"
    logged_metrics, logged_columns = {}, {}
    completions = [" jumps over", " the reason step by step and more", " in a board meeting", "."]
    rewards = func(
        prompts=PROMPTS, completions=completions, completion_ids=[[1]] * 4, trainer_state=None,
        log_metric=logged_metrics.__setitem__, log_extra=logged_columns.__setitem__, extra_column=[0, 1, 2, 3],
    )
    assert isinstance(rewards, list) and all(isinstance(r, float) for r in rewards)
    expected = [
        direct_reward(reward_model, rm_tokenizer, func.transform, p, c)
        for p, c in zip(PROMPTS, completions, strict=True)
    ]
    np.testing.assert_allclose(rewards, [e[0] for e in expected], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(func.last_mean, [e[1] for e in expected], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(func.last_std, [e[2] for e in expected], rtol=1e-5, atol=1e-5)
    assert np.ptp(func.last_std) > 1e-3  # the variance head really varies, so σ matters in the check
    assert logged_metrics["rewards/gaussian_reward_quantile_0.1/mu"] == pytest.approx(func.last_mean.mean())
    assert logged_metrics["rewards/gaussian_reward_quantile_0.1/sigma"] == pytest.approx(func.last_std.mean())
    assert logged_columns["gaussian_reward_quantile_0.1_sigma"] == func.last_std.tolist()

    conversational_prompts = [[{"role": "user", "content": p}] for p in PROMPTS]
    conversational = [[{"role": "assistant", "content": c}] for c in completions]
    rewards = func(prompts=conversational_prompts, completions=conversational)
    expected = [
        direct_reward(reward_model, rm_tokenizer, func.transform, p, c)[0]
        for p, c in zip(conversational_prompts, conversational, strict=True)
    ]
    np.testing.assert_allclose(rewards, expected, rtol=1e-5, atol=1e-5)


def test_plain_reward_model_supports_mean_only(rm_tokenizer):
    config = BertConfig(
        vocab_size=len(rm_tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=32, num_labels=1,
    )
    plain = AutoModelForSequenceClassification.from_config(config)
    func = GaussianRewardFunction(plain, rm_tokenizer, name="bt")
    rewards = func(prompts=PROMPTS[:2], completions=[" a", " b"])
    assert func.__name__ == "bt" and func.last_std is None and len(rewards) == 2
    with pytest.raises(ValueError, match="needs σ, but BertForSequenceClassification is not a GaussianRewardModel"):
        GaussianRewardFunction(plain, rm_tokenizer, transform="lcb:1")


def test_constructor_errors(reward_model, rm_tokenizer):
    with pytest.raises(ValueError, match="own `tokenizer`"):
        GaussianRewardFunction(reward_model)
    with pytest.raises(ValueError, match="no 'reward_normalization' record"):
        GaussianRewardFunction(reward_model, rm_tokenizer, transform="mean,normalize")
    with pytest.raises(ValueError, match="needs `completions`"):
        GaussianRewardFunction(reward_model, rm_tokenizer)(prompts=PROMPTS)


def test_loads_model_and_tokenizer_from_a_path(reward_model, rm_tokenizer, tmp_path):
    reward_model.save_pretrained(tmp_path)
    rm_tokenizer.save_pretrained(tmp_path)
    func = GaussianRewardFunction(str(tmp_path), transform="lcb:2")
    in_memory = GaussianRewardFunction(reward_model, rm_tokenizer, transform="lcb:2")
    np.testing.assert_allclose(
        func(prompts=PROMPTS, completions=PROMPTS), in_memory(prompts=PROMPTS, completions=PROMPTS), rtol=1e-6
    )


def _policy_parameters(model):
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def _assert_trainer_received_direct_rewards(trainer, func, reward_model, rm_tokenizer):
    logs = trainer._logs
    received = list(logs["rewards"][func.__name__])
    prompts, completions = list(logs["prompt"]), list(logs["completion"])
    levels = list(logs["extra"].get(f"{func.__name__}_q", [None] * len(prompts)))
    assert len(received) == len(prompts) == len(completions) > 0
    # A fresh transform: `direct_reward` must not advance the function's random stream.
    transform = RewardTransform.parse(str(func.transform)).bind(reward_model)
    expected = [
        direct_reward(reward_model, rm_tokenizer, transform, p, c, q)[0]
        for p, c, q in zip(prompts, completions, levels, strict=True)
    ]
    np.testing.assert_allclose(received, expected, rtol=1e-4, atol=1e-4)


def _assert_policy_changed(trainer, policy_dir):
    initial = _policy_parameters(AutoModelForCausalLM.from_pretrained(policy_dir))
    trained = _policy_parameters(trainer.model)
    changed = [name for name, p in trained.items() if not torch.equal(p.cpu(), initial[name])]
    assert changed, "GRPO/RLOO did not update any policy weight"


@pytest.mark.slow
def test_grpo_trains_on_conversational_prompts_with_quantile_rewards(
    tiny_causal_lm_dir, reward_model, rm_tokenizer, tmp_path
):
    from trl import GRPOConfig, GRPOTrainer

    dataset = Dataset.from_dict({"prompt": [[{"role": "user", "content": p}] for p in PROMPTS * 2]})
    func = GaussianRewardFunction(reward_model, rm_tokenizer, transform="quantile:0.1")
    args = GRPOConfig(
        output_dir=str(tmp_path), per_device_train_batch_size=4, num_generations=4, max_completion_length=8,
        max_steps=2, learning_rate=1e-2, bf16=False, report_to="none", logging_steps=1, save_strategy="no",
        disable_tqdm=True, seed=0,
    )
    trainer = GRPOTrainer(model=str(tiny_causal_lm_dir), reward_funcs=[func], args=args, train_dataset=dataset)
    trainer.train()

    _assert_trainer_received_direct_rewards(trainer, func, reward_model, rm_tokenizer)
    _assert_policy_changed(trainer, tiny_causal_lm_dir)
    logged = [entry for entry in trainer.state.log_history if f"rewards/{func.__name__}/sigma" in entry]
    assert logged and all(entry[f"rewards/{func.__name__}/sigma"] > 0 for entry in logged)


@pytest.mark.slow
def test_rloo_trains_on_standard_prompts_with_random_quantile_rewards(
    tiny_causal_lm_dir, reward_model, rm_tokenizer, tmp_path
):
    from trl import RLOOConfig, RLOOTrainer

    dataset = Dataset.from_dict({"prompt": PROMPTS * 2})
    func = GaussianRewardFunction(reward_model, rm_tokenizer, transform="random_quantile:0.05:0.5,seed:0")
    args = RLOOConfig(
        output_dir=str(tmp_path), per_device_train_batch_size=4, num_generations=4, max_completion_length=8,
        max_steps=2, learning_rate=1e-2, bf16=False, report_to="none", logging_steps=1, save_strategy="no",
        disable_tqdm=True, seed=0,
    )
    trainer = RLOOTrainer(model=str(tiny_causal_lm_dir), reward_funcs=[func], args=args, train_dataset=dataset)
    trainer.train()

    levels = np.array(trainer._logs["extra"][f"{func.__name__}_q"])
    assert levels.min() >= 0.05 and levels.max() <= 0.5 and np.unique(levels).size == levels.size
    _assert_trainer_received_direct_rewards(trainer, func, reward_model, rm_tokenizer)
    _assert_policy_changed(trainer, tiny_causal_lm_dir)


def test_grpo_recipe_parses_with_the_example_parser():
    import runpy

    example = runpy.run_path(str(REPO / "examples" / "grpo_gaussian_reward.py"), run_name="grpo_example")
    # bf16 is the recipe's GPU setting; this CPU check only reads the file.
    script_args, training_args, _, reward_args = example["make_parser"]().parse_args_and_config(
        args=["--config", str(REPO / "recipes" / "grpo" / "config.yaml"), "--bf16", "false"]
    )
    assert RewardTransform.parse(reward_args.reward_transform).is_random
    assert script_args.dataset_name and reward_args.reward_model_name_or_path
    assert training_args.generation_batch_size % training_args.num_generations == 0
    with pytest.raises(ValueError, match="Invalid reward transform 'quantile:2'"):
        example["make_parser"]().parse_args_and_config(
            args=["--config", str(REPO / "recipes" / "grpo" / "config.yaml"), "--bf16", "false",
                  "--reward_transform", "quantile:2"]
        )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
@pytest.mark.distributed
def test_grpo_example_under_deepspeed_zero3_on_two_processes(
    tiny_causal_lm_dir, reward_model, rm_tokenizer, tmp_path
):
    """`examples/grpo_gaussian_reward.py` with 2 CPU processes and ZeRO-3 (the reward model is loaded partitioned and
    wrapped in a DeepSpeed engine): each rank scores its own completions with the reward model's tokenizer, draws its
    own quantile levels (seeded per rank) and returns the transform of direct calls."""
    reward_dir, data_dir, output_dir = tmp_path / "rm", tmp_path / "data", tmp_path / "policy"
    reward_model.save_pretrained(reward_dir)
    rm_tokenizer.save_pretrained(reward_dir)
    data_dir.mkdir()
    rows = [{"prompt": [{"role": "user", "content": p}]} for p in PROMPTS * 4]
    (data_dir / "train.jsonl").write_text("\n".join(json.dumps(row) for row in rows))
    spec = "random_quantile:0.05:0.5,seed:0"
    launch = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(REPO / "recipes" / "accelerate_configs" / "zero3.yaml"),
        "--num_processes", "2", "--mixed_precision", "no", "--main_process_port", str(_free_port()),
        str(LAUNCH_SCRIPT), str(tmp_path / "rewards"),
        "--model_name_or_path", str(tiny_causal_lm_dir), "--reward_model_name_or_path", str(reward_dir),
        "--reward_transform", spec, "--dataset_name", str(data_dir), "--output_dir", str(output_dir),
        "--per_device_train_batch_size", "4", "--num_generations", "4", "--max_completion_length", "8",
        "--max_steps", "1", "--learning_rate", "1e-2", "--bf16", "false", "--report_to", "none",
        "--save_strategy", "no", "--logging_steps", "1", "--seed", "0",
        "--use_cpu", "true",  # with DS_ACCELERATOR=cpu: gloo collectives across both CPU processes
    ]
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    result = subprocess.run(launch, env=env, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"launch failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"

    records = [json.loads((tmp_path / f"rewards.rank{rank}.json").read_text()) for rank in (0, 1)]
    assert all(len(rank_records) == 1 for rank_records in records)  # one generation batch per step and rank
    assert {record["deepspeed_engine"] for rank_records in records for record in rank_records} == {"DeepSpeedEngine"}
    # Ranks draw independent quantile levels although both were given seed 0.
    assert records[0][0]["quantile_levels"] != records[1][0]["quantile_levels"]
    transform = RewardTransform.parse(spec)
    for record in (record for rank_records in records for record in rank_records):
        expected = [
            direct_reward(reward_model, rm_tokenizer, transform, prompt, completion, level)[0]
            for prompt, completion, level in zip(
                record["prompts"], record["completions"], record["quantile_levels"], strict=True
            )
        ]
        np.testing.assert_allclose(record["rewards"], expected, rtol=1e-4, atol=1e-4)
    _assert_policy_changed_on_disk(output_dir, tiny_causal_lm_dir)


def _assert_policy_changed_on_disk(trained_dir, initial_dir):
    initial = AutoModelForCausalLM.from_pretrained(initial_dir).state_dict()
    trained = AutoModelForCausalLM.from_pretrained(trained_dir).state_dict()
    assert any(not torch.equal(trained[name], value) for name, value in initial.items())
