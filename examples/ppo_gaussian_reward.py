# Copyright 2025 The trl-anchor developers. Licensed under the Apache License, Version 2.0.
"""PPO with a variance-aware Gaussian reward model. Needs TRL 1.12.0 (the last release with PPOTrainer).

    pip install "trl==1.12.0" "trl-anchor[deepspeed]"
    accelerate launch --config_file recipes/accelerate_configs/zero3.yaml \\
        examples/ppo_gaussian_reward.py --config recipes/ppo/config.yaml

The policy, reference policy and value model start from `model_name_or_path` (an SFT model) and the value head from the
reward model, as in TRL's own PPO example. PPO feeds the policy's token ids to the reward model, so the reward model
must share the policy's vocabulary (checked); otherwise use `examples/grpo_gaussian_reward.py`.
"""

from dataclasses import dataclass, field

from datasets import load_dataset
from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer
from trl import ModelConfig, ScriptArguments, TrlParser, get_peft_config
from trl.experimental.ppo import PPOConfig, PPOTrainer

from trl_anchor import GaussianRewardModel, PPORewardModel, RewardTransform


@dataclass
class GaussianRewardArguments:
    reward_transform: str = field(
        default="mean",
        metadata={
            "help": "Reward computed from (μ, σ): `mean`, `quantile:<q>`, `random_quantile:<low>:<high>`, "
            "`lcb:<kappa>` or `variance_penalty:<beta>`, optionally followed by `,normalize`, `,clip:<c>`, "
            "`,seed:<n>`."
        },
    )
    prompt_column: str = field(default="prompt", metadata={"help": "Dataset column holding the prompts."})

    def __post_init__(self):
        RewardTransform.parse(self.reward_transform)  # a bad spec fails at parse time, before any model loads


def tokenize_prompts(dataset, tokenizer, column: str):
    """Token ids of each prompt, through the policy's chat template when prompts are conversations."""

    def tokenize(example):
        prompt = example[column]
        if isinstance(prompt, list):
            ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=True)
            return {"input_ids": list(ids["input_ids"])}
        return {"input_ids": tokenizer(prompt)["input_ids"]}

    return dataset.map(tokenize, remove_columns=dataset.column_names)


def save_policy(trainer: PPOTrainer, tokenizer, output_dir: str) -> None:
    """Save the trained policy (not the value model).

    Under DeepSpeed, TRL 1.12's `PPOTrainer.save_model` passes transformers ≥ 5 the bare policy where it expects the
    DeepSpeed engine, so the engine's state dict (gathered across ranks under ZeRO-3) is collected here instead.
    """
    if not trainer.is_deepspeed_enabled:
        trainer.save_model(output_dir)
        return
    state_dict = trainer.accelerator.get_state_dict(trainer.deepspeed)  # a collective: every rank calls it
    if trainer.accelerator.is_main_process:
        policy_state = {name[len("policy.") :]: t for name, t in state_dict.items() if name.startswith("policy.")}
        trainer.accelerator.unwrap_model(trainer.model).policy.save_pretrained(output_dir, state_dict=policy_state)
        tokenizer.save_pretrained(output_dir)
    trainer.accelerator.wait_for_everyone()


def main(script_args: ScriptArguments, training_args: PPOConfig, model_args: ModelConfig, reward_args):
    model_kwargs = dict(revision=model_args.model_revision, dtype=model_args.dtype)
    tokenizer = AutoTokenizer.from_pretrained(model_args.model_name_or_path, padding_side="left")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    policy = AutoModelForCausalLM.from_pretrained(model_args.model_name_or_path, **model_kwargs)
    peft_config = get_peft_config(model_args)
    # With LoRA the reference policy is the base model with adapters disabled.
    ref_policy = None
    if peft_config is None:
        ref_policy = AutoModelForCausalLM.from_pretrained(model_args.model_name_or_path, **model_kwargs)
    value_model = AutoModelForSequenceClassification.from_pretrained(
        training_args.reward_model_path, num_labels=1, **model_kwargs
    )
    reward_model = GaussianRewardModel.from_pretrained(training_args.reward_model_path, **model_kwargs)
    reward_tokenizer = AutoTokenizer.from_pretrained(training_args.reward_model_path)
    reward = PPORewardModel(reward_model, reward_tokenizer, tokenizer, transform=reward_args.reward_transform)

    dataset = load_dataset(script_args.dataset_name, name=script_args.dataset_config)
    train_dataset = tokenize_prompts(dataset[script_args.dataset_train_split], tokenizer, reward_args.prompt_column)
    eval_dataset = None
    if training_args.eval_strategy != "no":
        eval_dataset = tokenize_prompts(dataset[script_args.dataset_test_split], tokenizer, reward_args.prompt_column)

    trainer = PPOTrainer(
        args=training_args,
        processing_class=tokenizer,
        model=policy,
        ref_model=ref_policy,
        reward_model=reward,
        value_model=value_model,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        peft_config=peft_config,
    )
    trainer.train()
    save_policy(trainer, tokenizer, training_args.output_dir)
    if training_args.push_to_hub:
        trainer.push_to_hub(dataset_name=script_args.dataset_name)


def make_parser() -> TrlParser:
    return TrlParser((ScriptArguments, PPOConfig, ModelConfig, GaussianRewardArguments))


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())
