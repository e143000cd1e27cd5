"""`trl-anchor irl-sft`: reward learning from SFT demonstrations (IRFT or RFT, Li et al., 2024) from a YAML recipe.

```bash
trl-anchor irl-sft --config recipes/irl-sft/irft_qwen2.5-0.5b.yaml
# any field can be overridden on the command line
trl-anchor irl-sft --config recipes/irl-sft/irft_qwen2.5-0.5b.yaml --num_rounds 2 --output_dir outputs/irft
# continue after the last finished round
trl-anchor irl-sft --config recipes/irl-sft/irft_qwen2.5-0.5b.yaml --resume_from_checkpoint true
# several processes / DeepSpeed (sampling runs on the main process, each round's trainer on all of them)
accelerate launch --config_file recipes/accelerate_configs/zero2.yaml -m trl_anchor.cli irl-sft --config recipe.yaml
```

The recipe holds the fields of `IRLSFTScriptArguments` (the demonstrations), `IRLSFTConfig` (every
`TrainingArguments` field for the policy steps plus the IRL-SFT settings) and `trl.ModelConfig` (the policy, its
dtype and attention implementation). Demonstrations are `prompt` + `completion` or `messages` rows. The final policy
and its tokenizer are saved to `output_dir`, each round's policy (and reward model) to `output_dir/round-<t>/`.
"""

from dataclasses import dataclass, field

from .utils import DatasetArguments


@dataclass
class IRLSFTScriptArguments(DatasetArguments):
    """The demonstrations (see `DatasetArguments`): a split and optionally its first rows only."""

    dataset_train_split: str = field(default="train", metadata={"help": "Split of demonstrations to learn from."})
    max_train_samples: int | None = field(
        default=None, metadata={"help": "Use only the first N demonstrations of the split."}
    )


def main(script_args: IRLSFTScriptArguments, training_args, model_args):
    from trl_anchor import IRLSFTTrainer

    from .utils import load_preference_data, resolve_model_path, select_split

    if model_args.model_name_or_path is None:
        raise ValueError(
            "Set `model_name_or_path` (a Hub id or a local directory) in the recipe or on the command line."
        )
    model_init_kwargs = dict(
        revision=model_args.model_revision,
        attn_implementation=model_args.attn_implementation,
        dtype=model_args.dtype,
    )
    model_init_kwargs = {k: v for k, v in model_init_kwargs.items() if v is not None}
    model_init_kwargs.update(training_args.model_init_kwargs or {})
    training_args.model_init_kwargs = model_init_kwargs

    demonstrations = select_split(load_preference_data(script_args), script_args.dataset_train_split, "train")
    if script_args.max_train_samples is not None:
        demonstrations = demonstrations.select(range(min(script_args.max_train_samples, len(demonstrations))))
    trainer = IRLSFTTrainer(
        model=resolve_model_path(model_args.model_name_or_path), args=training_args, train_dataset=demonstrations
    )
    history = trainer.train(resume_from_checkpoint=_wants_resume(training_args))
    if trainer._state.is_main_process:
        for metrics in history:
            print({k: round(v, 4) if isinstance(v, float) else v for k, v in metrics.items()})
        print(f"💾 Final policy saved to {training_args.output_dir}.")
    return trainer


def _wants_resume(training_args) -> bool:
    """`resume_from_checkpoint` true (or the output directory itself) continues after the last finished round."""
    value = training_args.resume_from_checkpoint
    if value in (None, "", "false", "False", False):
        return False
    if value in ("true", "True", True) or str(value).rstrip("/") == str(training_args.output_dir).rstrip("/"):
        return True
    raise ValueError(
        f"IRL-SFT resumes from the rounds saved in `output_dir`; got resume_from_checkpoint={value!r}. Set "
        "`output_dir` to that run's folder and `resume_from_checkpoint` to true."
    )


def make_parser(prog: str | None = None):
    from trl import ModelConfig, TrlParser

    from trl_anchor import IRLSFTConfig

    return TrlParser((IRLSFTScriptArguments, IRLSFTConfig, ModelConfig), prog=prog)


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())
