"""`trl-anchor train`: train a Gaussian (or Bradley–Terry) reward model from a YAML recipe, like `trl reward`.

```bash
trl-anchor train --config recipes/quickstart/gaussian_minilm.yaml
# any field can be overridden on the command line
trl-anchor train --config recipes/quickstart/gaussian_minilm.yaml --reward_type bt --output_dir outputs/bt-minilm
# several processes / DeepSpeed
accelerate launch --config_file recipes/accelerate_configs/zero2.yaml -m trl_anchor.cli train --config recipe.yaml
```

The recipe holds the fields of three dataclasses: `TrainScriptArguments` (the data), `AnchorGaussianRewardConfig`
(every `trl.RewardConfig`/`TrainingArguments` field, including `report_to`, plus the anchor settings) and
`trl.ModelConfig` (model, dtype, LoRA, quantization). The model, its tokenizer and its model card are saved to
`output_dir`.
"""

from dataclasses import dataclass, field

from .utils import DatasetArguments, accept_number_lists


@dataclass
class TrainScriptArguments(DatasetArguments):
    """The data of a training run (see `DatasetArguments`) and its splits."""

    dataset_train_split: str = field(default="train", metadata={"help": "Split to train on."})
    dataset_test_split: str = field(
        default="test", metadata={"help": "Split evaluated during training (when `eval_strategy` is not 'no')."}
    )


def main(script_args: TrainScriptArguments, training_args, model_args):
    import transformers
    from packaging.version import Version
    from trl import get_peft_config, get_quantization_config

    from trl_anchor import AnchorGaussianRewardTrainer

    from .utils import load_preference_data, resolve_model_path, select_split

    if model_args.model_name_or_path is None:
        raise ValueError(
            "Set `model_name_or_path` (a Hub id or a local directory) in the recipe or on the command line."
        )
    model_path = resolve_model_path(model_args.model_name_or_path)
    model_init_kwargs = dict(
        revision=model_args.model_revision,
        trust_remote_code=training_args.trust_remote_code,
        attn_implementation=model_args.attn_implementation,
        dtype=model_args.dtype,
    )
    model_init_kwargs.update(training_args.model_init_kwargs or {})
    training_args.model_init_kwargs = model_init_kwargs

    data = load_preference_data(script_args)
    train_dataset = select_split(data, script_args.dataset_train_split, "train")
    eval_dataset = None
    if training_args.eval_strategy != "no":
        eval_dataset = select_split(data, script_args.dataset_test_split, "evaluation")

    trainer = AnchorGaussianRewardTrainer(
        model=model_path,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        quantization_config=get_quantization_config(model_args),
        peft_config=_reward_peft_config(get_peft_config(model_args)),
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.accelerator.print("✅ Training completed.")

    trainer.save_model(training_args.output_dir)
    card_kwargs = {"dataset_name": _dataset_description(script_args)}
    if model_path != model_args.model_name_or_path:
        card_kwargs["finetuned_from"] = model_args.model_name_or_path  # a packaged local copy of a Hub model
    trainer.create_model_card(**card_kwargs)
    trainer.accelerator.print(f"💾 Model and model card saved to {training_args.output_dir}.")
    if training_args.push_to_hub:
        trainer.push_to_hub(**card_kwargs)
        trainer.accelerator.print(f"🤗 Model pushed to the Hub in https://huggingface.co/{trainer.hub_model_id}.")
    if Version(transformers.__version__) >= Version("5.18.0"):
        trainer.end()  # finish the trackers and destroy the process group
    return trainer


def _reward_peft_config(peft_config):
    """A reward model is a sequence classifier: LoRA must save its heads, which PEFT does for task type SEQ_CLS."""
    if peft_config is None or peft_config.task_type == "SEQ_CLS":
        return peft_config
    from transformers.utils import logging

    logging.get_logger(__name__).warning(
        f"lora_task_type={peft_config.task_type} changed to SEQ_CLS: a reward model is a sequence classifier."
    )
    peft_config.task_type = "SEQ_CLS"
    return peft_config


def _dataset_description(script_args: TrainScriptArguments) -> str:
    if script_args.dataset_adapter is None:
        return script_args.dataset_name
    source = f" from {script_args.dataset_path}" if script_args.dataset_path else ""
    return f"the trl-anchor `{script_args.dataset_adapter}` dataset{source}"


def make_parser(prog: str | None = None):
    from trl import ModelConfig, TrlParser

    from trl_anchor import AnchorGaussianRewardConfig

    parser = TrlParser((TrainScriptArguments, AnchorGaussianRewardConfig, ModelConfig), prog=prog)
    return accept_number_lists(parser, "anchor_thresholds")


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())
