"""Training script that `tests/distributed/test_image_reward_zero.py` runs with `accelerate launch` (DeepSpeed ZeRO-2,
two CPU processes) and as a plain single process: a 2-aspect Gaussian image reward model built from a tiny CLIP
checkpoint (heads created and initialised inside the trainer), trained 4 steps on image pairs with ratings at the same
global batch, evaluated and saved. Rank 0 writes `<output>/report.json`."""

import argparse
import json
import os
from pathlib import Path

from datasets import load_from_disk
from transformers import AutoProcessor

from trl_anchor.trainer.image_reward_config import ImageRewardConfig
from trl_anchor.trainer.image_reward_trainer import ImageRewardTrainer

ASPECTS = ["prompt_following", "aesthetic"]
GLOBAL_BATCH = 4


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--output", type=Path, required=True)
    cli = parser.parse_args()
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    args = ImageRewardConfig(
        output_dir=str(cli.output), aspects=ASPECTS, per_device_train_batch_size=GLOBAL_BATCH // world_size,
        per_device_eval_batch_size=GLOBAL_BATCH // world_size, max_steps=4,
        lr_scheduler_type="constant", logging_steps=1, save_strategy="no", report_to="none", bf16=False,
        use_cpu=True, seed=0, train_sampling_strategy="sequential",
    )
    trainer = ImageRewardTrainer(
        str(cli.workspace / "clip"), args, train_dataset=load_from_disk(cli.workspace / "train"),
        eval_dataset=load_from_disk(cli.workspace / "eval"),
        processing_class=AutoProcessor.from_pretrained(cli.workspace / "clip"),
    )
    trainer.train()
    metrics = trainer.evaluate()
    trainer.save_model(str(cli.output / "final"))
    if int(os.environ.get("RANK", 0)) == 0:
        report = {
            "world_size": trainer.accelerator.num_processes,
            "zero_stage": trainer.accelerator.state.deepspeed_plugin.zero_stage if trainer.is_deepspeed_enabled else 0,
            "eval_loss": metrics["eval_loss"],
            "train_losses": [log["loss"] for log in trainer.state.log_history if "loss" in log],
        }
        (cli.output / "report.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
