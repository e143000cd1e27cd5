# Copyright 2025 The trl-anchor developers. Licensed under the Apache License, Version 2.0.
"""GRPO with a variance-aware Gaussian reward model, on the newest TRL.

    accelerate launch --config_file recipes/accelerate_configs/zero2.yaml \\
        examples/grpo_gaussian_reward.py --config recipes/grpo/config.yaml

The reward model scores each (prompt, completion) with its own tokenizer and chat template, so it may come from a
different model family than the policy. `--reward_transform quantile:0.1` trains a risk-averse policy on the 10%
quantile μ + Φ⁻¹(0.1)σ of the predicted reward distribution. `GaussianRewardFunction` works unchanged as a reward
function of `RLOOTrainer`.
"""

from dataclasses import dataclass, field

from datasets import load_dataset
from trl import GRPOConfig, GRPOTrainer, ModelConfig, ScriptArguments, TrlParser, get_peft_config

from trl_anchor import GaussianRewardFunction, RewardTransform


@dataclass
class GaussianRewardArguments:
    reward_model_name_or_path: str | None = field(
        default=None,
        metadata={"help": "Path or Hub id of a GaussianRewardModel (saved with its tokenizer)."},
    )
    reward_transform: str = field(
        default="mean",
        metadata={
            "help": "Reward computed from (μ, σ): `mean`, `quantile:<q>`, `random_quantile:<low>:<high>`, "
            "`lcb:<kappa>` or `variance_penalty:<beta>`, optionally followed by `,normalize`, `,clip:<c>`, "
            "`,seed:<n>`."
        },
    )
    reward_batch_size: int = field(default=16, metadata={"help": "Reward-model batch size."})
    reward_max_length: int | None = field(
        default=None, metadata={"help": "Keep the last tokens of longer (prompt, completion) sequences."}
    )

    def __post_init__(self):
        RewardTransform.parse(self.reward_transform)  # a bad spec fails at parse time, before any model loads


def main(script_args: ScriptArguments, training_args: GRPOConfig, model_args: ModelConfig, reward_args):
    if reward_args.reward_model_name_or_path is None:
        raise ValueError("Pass `--reward_model_name_or_path` (a GaussianRewardModel directory or Hub id).")
    training_args.model_init_kwargs = {
        "revision": model_args.model_revision,
        "attn_implementation": model_args.attn_implementation,
        "dtype": model_args.dtype,
        **(training_args.model_init_kwargs or {}),
    }
    reward = GaussianRewardFunction(
        reward_args.reward_model_name_or_path,
        transform=reward_args.reward_transform,
        batch_size=reward_args.reward_batch_size,
        max_length=reward_args.reward_max_length,
        model_init_kwargs={"revision": model_args.model_revision, "dtype": model_args.dtype},
    )
    dataset = load_dataset(script_args.dataset_name, name=script_args.dataset_config)
    trainer = GRPOTrainer(
        model=model_args.model_name_or_path,
        reward_funcs=[reward],
        args=training_args,
        train_dataset=dataset[script_args.dataset_train_split],
        eval_dataset=dataset[script_args.dataset_test_split] if training_args.eval_strategy != "no" else None,
        peft_config=get_peft_config(model_args),
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model(training_args.output_dir)
    if training_args.push_to_hub:
        trainer.push_to_hub(dataset_name=script_args.dataset_name)


def make_parser() -> TrlParser:
    return TrlParser((ScriptArguments, GRPOConfig, ModelConfig, GaussianRewardArguments))


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())
