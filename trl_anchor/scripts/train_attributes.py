"""`trl-anchor train-attributes`: train a multi-attribute reward model on HelpSteer2-format ratings from a recipe.

```bash
trl-anchor train-attributes --config recipes/helpsteer2/gaussian_5attr_llama-3.1-8b.yaml
accelerate launch --config_file recipes/accelerate_configs/zero3.yaml \\
    -m trl_anchor.cli train-attributes --config recipes/helpsteer2/gaussian_5attr_llama-3.1-8b.yaml
```

The recipe holds the fields of `AttributeScriptArguments` (the data), `MultiAttributeRewardConfig` (every
`TrainingArguments` field plus attributes, weights, loss and thresholds) and `trl.ModelConfig` (model, dtype, LoRA).
Rated responses are read with `load_helpsteer2(..., subset="rated")` (the Hub's `train` split, or a local file of the
main subset); the optional preference subset adds the pairwise term on the combined reward.
"""

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class AttributeScriptArguments:
    dataset_name: str = field(
        default="nvidia/HelpSteer2", metadata={"help": "Rated subset: Hub id or local json/jsonl/parquet file."}
    )
    preference_dataset: str | None = field(
        default=None,
        metadata={"help": "HelpSteer2 preference subset (Hub id or file) for the pairwise term; None: ratings only."},
    )
    eval_dataset: str | None = field(
        default=None, metadata={"help": "Held-out rated file; default the Hub's `validation` split."}
    )
    pad_token: str | None = field(
        default=None, metadata={"help": "A pad token distinct from EOS (e.g. Llama-3.1's <|finetune_right_pad_id|>)."}
    )


def load_rated(source, split: str | None = None, **kwargs):
    """Rated responses as this command trains on them: `load_helpsteer2(source, subset="rated")` (chat-format prompts
    and responses, one 0–4 rating or None per attribute). `trl-anchor evaluate` reads a multi-attribute model's data
    with it too, so both see the same format."""
    from trl_anchor.data import load_helpsteer2

    return load_helpsteer2(source, split=split, **{"subset": "rated", **kwargs})


def load_pairs(source, split: str | None = None):
    """HelpSteer2 preference pairs (soft labels from every annotator) for the pairwise term on the combined reward."""
    from trl_anchor.data import load_helpsteer2

    return load_helpsteer2(source, split=split)


def main(script_args: AttributeScriptArguments, training_args, model_args):
    from transformers import AutoTokenizer
    from trl import get_peft_config

    from trl_anchor.pipelines.attribute_cards import build_attribute_model_card
    from trl_anchor.trainer.multi_attribute_trainer import MultiAttributeRewardTrainer

    from .train import _reward_peft_config
    from .utils import resolve_model_path

    if model_args.model_name_or_path is None:
        raise ValueError("Set `model_name_or_path` in the recipe or on the command line.")
    model_path = resolve_model_path(model_args.model_name_or_path)
    training_args.model_init_kwargs = {
        "revision": model_args.model_revision, "attn_implementation": model_args.attn_implementation,
        "dtype": model_args.dtype, **(training_args.model_init_kwargs or {}),
    }
    tokenizer = AutoTokenizer.from_pretrained(model_path, revision=model_args.model_revision)
    if script_args.pad_token is not None:
        tokenizer.pad_token = script_args.pad_token
    train = load_rated(script_args.dataset_name, split="train")
    eval_dataset = None
    if training_args.eval_strategy != "no":
        source = script_args.eval_dataset or script_args.dataset_name
        eval_dataset = load_rated(source, split="validation")
    pairs = None
    if script_args.preference_dataset is not None:
        pairs = load_pairs(script_args.preference_dataset, split="train")
    trainer = MultiAttributeRewardTrainer(
        model_path, training_args, train_dataset=train, eval_dataset=eval_dataset, preference_dataset=pairs,
        processing_class=tokenizer, peft_config=_reward_peft_config(get_peft_config(model_args)),
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model(training_args.output_dir)
    if trainer.is_world_process_zero():
        config = trainer.accelerator.unwrap_model(trainer.model).config
        settings = getattr(config, "gaussian_reward", None) or config.attribute_reward
        card = build_attribute_model_card(
            Path(training_args.output_dir).name, settings, base_model=model_args.model_name_or_path,
            dataset_name=script_args.dataset_name,
        )
        card.save(Path(training_args.output_dir) / "README.md")
    trainer.accelerator.print(f"💾 Model and model card saved to {training_args.output_dir}.")
    return trainer


def make_parser(prog: str | None = None):
    from trl import ModelConfig, TrlParser

    from trl_anchor.trainer.multi_attribute_config import MultiAttributeRewardConfig

    return TrlParser((AttributeScriptArguments, MultiAttributeRewardConfig, ModelConfig), prog=prog)


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())
