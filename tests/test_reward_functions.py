"""GaussianRewardFunction on the newest TRL: unit behaviour, then GRPO and RLOO end to end with a tiny policy and a
tiny Gaussian reward model whose tokenizer (WordPiece, MiniLM's) and chat template differ from the policy's."""

import numpy as np
import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer, BertConfig

from trl_anchor.modeling import GaussianRewardModel
from trl_anchor.reward_functions import GaussianRewardFunction
from trl_anchor.rewards import RewardTransform


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
    return transform(out.mean.double(), out.std.double(), quantile_levels=levels).item(), out.mean.item(), out.std.item()


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
    expected = [direct_reward(reward_model, rm_tokenizer, func.transform, p, c) for p, c in zip(PROMPTS, completions)]
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
        for p, c in zip(conversational_prompts, conversational)
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
