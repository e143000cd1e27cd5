"""The policy and reward steps of one `IRLSFTTrainer` round, each a TRL trainer run from a saved checkpoint.

Every step gets a TRL config built from the `IRLSFTConfig` (its `TrainingArguments` fields: batch sizes, precision,
DeepSpeed, logging, seed, ...), trains from the previous round's policy (or reward model) on disk, and saves the
result with the tokenizer to the round's folder. Starting each step from disk, rather than from a model object a
previous `Trainer` has wrapped, keeps rounds independent of each other's accelerator state.
"""

import dataclasses

import numpy as np
from datasets import Dataset
from transformers import TrainingArguments

from .irl_sft_data import RoundPairs, resample_by_weight
from .reward_config import AnchorGaussianRewardConfig

# Per-round trainers save once, at the end of their round; the loop owns checkpointing and the Hub.
_STEP_OVERRIDES = dict(
    save_strategy="no", eval_strategy="no", load_best_model_at_end=False, push_to_hub=False,
    resume_from_checkpoint=None,
)


def inner_config(config_cls, args, output_dir: str, **overrides):
    """A `config_cls` (a TRL config) with the `TrainingArguments` values of `args`, then `overrides`.

    Also clears accelerate's `AcceleratorState` singleton, so the step's trainer builds its accelerator (and DeepSpeed
    plugin, with its own batch sizes) from this config instead of inheriting the previous step's; transformers does
    the same between hyperparameter-search trials. The process group (`PartialState`) is kept.
    """
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=False)
    shared = {f.name for f in dataclasses.fields(TrainingArguments) if f.init}
    accepted = {f.name for f in dataclasses.fields(config_cls) if f.init}
    values = {name: getattr(args, name) for name in shared & accepted}
    values.update(_STEP_OVERRIDES, output_dir=output_dir)
    if "model_init_kwargs" in accepted:
        values["model_init_kwargs"] = args.model_init_kwargs
    if "max_length" in accepted:
        values["max_length"] = args.max_length
    values.update(overrides)
    return config_cls(**values)


def reward_config(args, output_dir: str) -> AnchorGaussianRewardConfig:
    """The reward step's config: the policy's settings with the `reward_*` learning rate and length."""
    return inner_config(
        AnchorGaussianRewardConfig, args, output_dir,
        learning_rate=args.reward_learning_rate, num_train_epochs=args.reward_num_train_epochs,
        max_steps=args.reward_max_steps, reward_type=args.reward_type,
        anchor_thresholds=list(args.anchor_thresholds), anchor_lambda=args.anchor_lambda,
    )


def pair_weights(weights: np.ndarray | None, demo_index) -> np.ndarray | None:
    """Each pair gets its demonstration's weight."""
    return None if weights is None else np.asarray(weights)[np.asarray(demo_index, dtype=int)]


def dpo_step(loop, round_pairs: RoundPairs, weights: np.ndarray | None, round_dir) -> str:
    """Algorithm 2's inner loop: DPO on (demonstration ≻ sample) with the round's starting policy as reference."""
    from trl import DPOConfig, DPOTrainer

    args = loop.args
    pairs = round_pairs.pairs
    if weights is not None:
        pairs = resample_by_weight(pairs, pair_weights(weights, pairs["demo_index"]), seed=args.seed)
    losses, loss_weights = ["sigmoid"], [1.0]
    if args.sft_loss_weight > 0:
        losses, loss_weights = ["sigmoid", "sft"], [1.0, args.sft_loss_weight]
    output_dir = str(round_dir / "policy")
    config = inner_config(
        DPOConfig, args, output_dir, beta=args.beta, loss_type=losses, loss_weights=loss_weights,
    )
    # `ref_model=None` with a model path: TRL loads the reference from the same checkpoint, i.e. π_t.
    trainer = DPOTrainer(
        model=loop.policy_path, args=config, train_dataset=pairs.select_columns(["prompt", "chosen", "rejected"]),
        processing_class=loop.processing_class,
    )
    return _train_and_save(trainer, output_dir)


def best_of_n_sft_step(loop, demos: Dataset, winners: list, demo_won, weights: np.ndarray | None, round_dir) -> str:
    """Rejection-sampling policy update: SFT on each prompt's best-of-N candidate (π_{t+1} ≈ π_t·exp(r/β))."""
    from trl import SFTConfig, SFTTrainer

    args = loop.args
    dataset = Dataset.from_dict({"prompt": demos["prompt"], "completion": winners})
    if weights is not None:
        # Only rows whose winner is a demonstration carry its weight; demonstrations without pairs (every sample
        # reproduced them) have no weight and count as trusted.
        row_weights = np.where(np.asarray(demo_won) & ~np.isnan(weights), weights, 1.0)
        dataset = resample_by_weight(dataset, row_weights, seed=args.seed)
    output_dir = str(round_dir / "policy")
    config = inner_config(SFTConfig, args, output_dir)
    trainer = SFTTrainer(
        model=loop.policy_path, args=config, train_dataset=dataset, processing_class=loop.processing_class
    )
    return _train_and_save(trainer, output_dir)


def online_rl_step(loop, demos: Dataset, reward_model, round_dir) -> str:
    """Algorithm 1's policy update with GRPO or RLOO: maximise the transformed reward − β·KL(π ‖ π_t)."""
    from trl import GRPOConfig, GRPOTrainer, RLOOConfig, RLOOTrainer

    from ..rewards.reward_function import GaussianRewardFunction
    from .irl_sft_generation import vllm_available

    args = loop.args
    config_cls, trainer_cls = (GRPOConfig, GRPOTrainer) if args.policy_improvement == "grpo" else (
        RLOOConfig, RLOOTrainer
    )
    use_vllm = vllm_available() if args.use_vllm is None else args.use_vllm
    output_dir = str(round_dir / "policy")
    config = inner_config(
        config_cls, args, output_dir, beta=args.beta, num_generations=args.num_samples_per_prompt,
        max_completion_length=args.max_new_tokens, temperature=args.temperature, top_p=args.top_p,
        use_vllm=use_vllm, **({"vllm_mode": "colocate"} if use_vllm else {}),
    )
    reward = GaussianRewardFunction(reward_model, loop.processing_class, transform=loop.transform)
    trainer = trainer_cls(
        model=loop.policy_path, reward_funcs=[reward], args=config,
        train_dataset=Dataset.from_dict({"prompt": demos["prompt"]}), processing_class=loop.processing_class,
    )
    return _train_and_save(trainer, output_dir)


def _train_and_save(trainer, output_dir: str) -> str:
    trainer.train()
    trainer.save_model(output_dir)
    trainer.accelerator.wait_for_everyone()
    del trainer
    return output_dir


def weight_metrics(prob: np.ndarray, weights: np.ndarray) -> dict:
    """Summary of the demonstration weights of a round (demonstrations with pairs only)."""
    valid = ~np.isnan(prob)
    if not valid.any():
        return {"demo_weight_count": 0}
    return {
        "demo_weight_count": int(valid.sum()),
        "demo_win_prob_mean": float(prob[valid].mean()),
        "demo_weight_min": float(weights[valid].min()),
        "demo_weight_max": float(weights[valid].max()),
        "demo_win_prob_below_half": float((prob[valid] < 0.5).mean()),
    }
