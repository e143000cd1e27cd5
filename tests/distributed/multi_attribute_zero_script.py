"""Training script that `tests/distributed/test_multi_attribute_zero.py` runs with `accelerate launch` (DeepSpeed
ZeRO-2/3, two CPU processes) and as a plain single process: a 3-attribute Gaussian reward model built from a base
causal LM (heads initialised inside the trainer, under ZeRO-3's partitioned init), trained 4 steps on ratings plus
preference pairs with the same global batch, evaluated and saved. Rank 0 writes `<output>/report.json`."""

import argparse
import json
import os
from pathlib import Path

from datasets import load_dataset
from transformers import AutoTokenizer

from trl_anchor.trainer.multi_attribute_config import MultiAttributeRewardConfig
from trl_anchor.trainer.multi_attribute_trainer import MultiAttributeRewardTrainer

ATTRIBUTES = ["helpfulness", "correctness", "verbosity"]
GLOBAL_BATCH = 4


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--padding_free", action="store_true")
    cli = parser.parse_args()
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    # One load per file: the splits have different columns.
    data = {name: load_dataset("json", data_files=str(cli.workspace / f"{name}.jsonl"), split="train")
            for name in ("train", "eval", "pairs")}
    args = MultiAttributeRewardConfig(
        output_dir=str(cli.output), attributes=ATTRIBUTES, attribute_weights=[0.6, 0.8, -0.4],
        per_device_train_batch_size=GLOBAL_BATCH // world_size, per_device_eval_batch_size=GLOBAL_BATCH // world_size,
        max_steps=4, learning_rate=1e-4, lr_scheduler_type="constant", logging_steps=1, save_strategy="no",
        report_to="none", bf16=False, use_cpu=True, seed=0, padding_free=cli.padding_free,
        # Every run sees the same examples in the same global batches (pairs last).
        train_sampling_strategy="sequential",
    )
    trainer = MultiAttributeRewardTrainer(
        str(cli.workspace / "base"), args, train_dataset=data["train"], eval_dataset=data["eval"],
        preference_dataset=data["pairs"], processing_class=AutoTokenizer.from_pretrained(cli.workspace / "tokenizer"),
    )
    trainer.train()
    metrics = trainer.evaluate()
    trainer.save_model(str(cli.output / "final"))
    if int(os.environ.get("RANK", 0)) == 0:
        report = {
            "world_size": trainer.accelerator.num_processes,
            "zero_stage": trainer.accelerator.state.deepspeed_plugin.zero_stage if trainer.is_deepspeed_enabled else 0,
            "padding_free": trainer.data_collator.padding_free,
            "eval_loss": metrics["eval_loss"],
            "train_losses": [log["loss"] for log in trainer.state.log_history if "loss" in log],
        }
        (cli.output / "report.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
