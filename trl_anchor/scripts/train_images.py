"""`trl-anchor train-images`: train a multi-aspect Gaussian (or scalar BT) image reward model on VisionPrefer-format
data from a recipe.

```bash
trl-anchor train-images --config recipes/vision_prefer/gaussian_4aspect_clip-vit-large.yaml
accelerate launch --config_file recipes/accelerate_configs/zero2.yaml \\
    -m trl_anchor.cli train-images --config recipes/vision_prefer/gaussian_4aspect_clip-vit-large.yaml
```

The recipe holds the fields of `ImageScriptArguments` (the data), `ImageRewardConfig` (every `TrainingArguments`
field plus aspects, weights, reward type and heads) and `trl.ModelConfig` (model, dtype, LoRA). Pairs are read with
`load_vision_prefer(..., mode="pairs")`: per-aspect soft labels and both images' 1–5 ratings (the ordinal anchors).
"""

from dataclasses import dataclass, field


@dataclass
class ImageScriptArguments:
    dataset_name: str = field(
        default=None,
        metadata={"help": "VisionPrefer-format records: a json/jsonl/parquet file, a saved dataset or a Hub id."},
    )
    eval_dataset: str | None = field(default=None, metadata={"help": "Held-out records (same format)."})
    image_root: str | None = field(
        default=None, metadata={"help": "Directory relative image paths resolve against; default the file's."}
    )
    rating_noise: float = field(
        default=1.0, metadata={"help": "s of the Thurstone soft labels Φ(Δ/(√2·s)) from rating differences."}
    )


def main(script_args: ImageScriptArguments, training_args, model_args):
    from transformers import AutoProcessor
    from trl import get_peft_config

    from trl_anchor.data.vision_prefer import load_vision_prefer
    from trl_anchor.trainer.image_reward_trainer import ImageRewardTrainer

    from .utils import resolve_model_path

    if model_args.model_name_or_path is None or script_args.dataset_name is None:
        raise ValueError("Set `model_name_or_path` and `dataset_name` in the recipe or on the command line.")
    model_path = resolve_model_path(model_args.model_name_or_path)
    training_args.model_init_kwargs = {
        "revision": model_args.model_revision, "dtype": model_args.dtype, **(training_args.model_init_kwargs or {}),
    }

    def load(source):
        return load_vision_prefer(source, mode="pairs", image_root=script_args.image_root,
                                  aspects=training_args.aspects, aspect_weights=training_args.aspect_weights,
                                  rating_noise=script_args.rating_noise)

    eval_dataset = load(script_args.eval_dataset) if script_args.eval_dataset else None
    trainer = ImageRewardTrainer(
        model_path, training_args, train_dataset=load(script_args.dataset_name), eval_dataset=eval_dataset,
        processing_class=AutoProcessor.from_pretrained(model_path, revision=model_args.model_revision),
        peft_config=_image_peft_config(get_peft_config(model_args)),
    )
    trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    trainer.save_model(training_args.output_dir)
    if trainer.is_world_process_zero():
        trainer.processing_class.save_pretrained(training_args.output_dir)
    trainer.accelerator.print(f"💾 Model and processor saved to {training_args.output_dir}.")
    return trainer


def _image_peft_config(peft_config):
    """LoRA on the CLIP encoders must still train and save the fresh mean head `score` (the trainer adds the variance
    head itself); PEFT's task types are for text models, so the adapter is a plain one."""
    if peft_config is None:
        return None
    peft_config.task_type = None
    peft_config.modules_to_save = sorted({*(peft_config.modules_to_save or []), "score"})
    return peft_config


def make_parser(prog: str | None = None):
    from trl import ModelConfig, TrlParser

    from trl_anchor.trainer.image_reward_config import ImageRewardConfig

    return TrlParser((ImageScriptArguments, ImageRewardConfig, ModelConfig), prog=prog)


if __name__ == "__main__":
    main(*make_parser().parse_args_and_config())
