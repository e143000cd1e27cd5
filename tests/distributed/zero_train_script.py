"""Training script that `tests/distributed/test_zero.py` runs with `accelerate launch` (DeepSpeed ZeRO-2/3, two CPU
processes) and as a plain single process (the reference).

Scenarios, run in order in one process so the interpreter and DeepSpeed start only once:

- `full`: full fine-tuning of a Gaussian reward model built from a base causal-LM checkpoint (so both heads are
  initialised under ZeRO-3's partitioned `zero.Init`), checkpoints every 2 steps, final save (ZeRO-3: the gathered
  16-bit state dict), eval loss, and μ/σ² on a fixed probe batch before training (heads just initialised) and after
  training (through the DeepSpeed engine, which gathers ZeRO-3 partitions).
- `resume`: a fresh trainer resumed from `full`'s first checkpoint, trained to the same step.
- `lora`: LoRA (`task_type="SEQ_CLS"` trains and saves the mean head, the trainer the variance head) with gradient
  checkpointing; TRL forces reentrant checkpointing under PEFT + ZeRO-3, which the report records.

`--padding_free` trains every scenario on packed batches (`trl_anchor.models.packing`); the probe batch is always
padded.

Rank 0 writes `<output>/<scenario>.json`; the test compares them across runs and with the saved checkpoints.
"""

import argparse
import json
import os
from contextlib import nullcontext
from pathlib import Path

import torch
from datasets import load_dataset
from transformers import AutoTokenizer
from transformers.integrations import is_deepspeed_zero3_enabled

from trl_anchor import AnchorGaussianRewardConfig, AnchorGaussianRewardTrainer
from trl_anchor.trainer.reward_trainer import DataCollatorForAnchoredPreference

GLOBAL_BATCH = 4
MAX_STEPS = 4
RESUME_FROM_STEP = 2
PROBE_PAIRS = 4


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--workspace", type=Path, required=True, help="tokenizer/, base/, train.jsonl, eval.jsonl")
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--scenarios", default="full,resume,lora")
    parser.add_argument(
        "--padding_free", action="store_true", help="train on packed batches (trl_anchor.models.packing)"
    )
    cli = parser.parse_args()
    for scenario in cli.scenarios.split(","):
        report = SCENARIOS[scenario](cli.workspace, cli.output / scenario, padding_free=cli.padding_free)
        if int(os.environ.get("RANK", 0)) == 0:
            (cli.output / f"{scenario}.json").write_text(json.dumps(report, indent=1))


def build_trainer(workspace: Path, output_dir: Path, **overrides) -> AnchorGaussianRewardTrainer:
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    files = {"train": str(workspace / "train.jsonl"), "eval": str(workspace / "eval.jsonl")}
    data = load_dataset("json", data_files=files)
    peft_config = overrides.pop("peft_config", None)
    settings = dict(
        output_dir=str(output_dir),
        # The same global batch in every run, so one single-process step sees the examples of one 2-process step.
        per_device_train_batch_size=GLOBAL_BATCH // world_size,
        per_device_eval_batch_size=GLOBAL_BATCH // world_size,
        max_steps=MAX_STEPS,
        learning_rate=1e-4,
        lr_scheduler_type="constant",
        logging_steps=1,
        save_strategy="steps",
        save_steps=RESUME_FROM_STEP,
        report_to="none",
        bf16=False,  # float32 on CPU: the runs must agree to float-reduction precision
        use_cpu=True,  # also what makes `args.world_size` see both CPU processes for DeepSpeed's batch-size check
        seed=0,
        anchor_thresholds="auto",
    )
    return AnchorGaussianRewardTrainer(
        model=str(workspace / "base"),
        args=AnchorGaussianRewardConfig(**{**settings, **overrides}),
        train_dataset=data["train"],
        eval_dataset=data["eval"],
        processing_class=AutoTokenizer.from_pretrained(workspace / "tokenizer"),
        peft_config=peft_config,
    )


def probe_outputs(trainer, model=None) -> dict[str, list[float]]:
    """μ and σ² of the first eval pairs (chosen then rejected). `model` defaults to the module the trainer trains;
    pass the DeepSpeed engine to read the in-training model as DeepSpeed runs it."""
    examples = [trainer.eval_dataset[i] for i in range(PROBE_PAIRS)]
    batch = DataCollatorForAnchoredPreference(pad_token_id=trainer.processing_class.pad_token_id)(examples)
    model = model if model is not None else trainer.model
    # Before `train()` the ZeRO-3 partitions are not wrapped in an engine yet: gather them for the forward pass.
    gather = nullcontext()
    if is_deepspeed_zero3_enabled() and model is trainer.model:
        import deepspeed

        gather = deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=None)
    was_training = model.training
    model.eval()
    with torch.no_grad(), gather:
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], use_cache=False)
    model.train(was_training)
    ids = [example["chosen_ids"] for example in examples] + [example["rejected_ids"] for example in examples]
    return {"input_ids": ids, "mean": out.mean.tolist(), "variance": out.variance.tolist()}


def run_full(workspace: Path, output_dir: Path, padding_free: bool) -> dict:
    trainer = build_trainer(workspace, output_dir, padding_free=padding_free)
    before = probe_outputs(trainer)
    trainer.train()
    after = probe_outputs(trainer, trainer.model_wrapped)
    metrics = trainer.evaluate()
    trainer.save_model(str(output_dir / "final"))
    return {
        "world_size": trainer.accelerator.num_processes,
        "distributed_type": str(trainer.accelerator.distributed_type),
        "zero_stage": trainer.accelerator.state.deepspeed_plugin.zero_stage if trainer.is_deepspeed_enabled else None,
        "padding_free": trainer.data_collator.padding_free,
        "before": before,
        "after": after,
        "eval_loss": metrics["eval_loss"],
        "train_losses": [log["loss"] for log in trainer.state.log_history if "loss" in log],
        "saved": str(output_dir / "final"),
    }


def run_resume(workspace: Path, output_dir: Path, padding_free: bool) -> dict:
    checkpoint = output_dir.parent / "full" / f"checkpoint-{RESUME_FROM_STEP}"
    trainer = build_trainer(workspace, output_dir, padding_free=padding_free)
    trainer.train(resume_from_checkpoint=str(checkpoint))
    return {
        "resumed_from": str(checkpoint),
        "global_step": trainer.state.global_step,
        "after": probe_outputs(trainer, trainer.model_wrapped),
        "eval_loss": trainer.evaluate()["eval_loss"],
    }


def run_lora(workspace: Path, output_dir: Path, padding_free: bool) -> dict:
    from peft import LoraConfig

    peft_config = LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn"], task_type="SEQ_CLS")
    trainer = build_trainer(
        workspace, output_dir, peft_config=peft_config, gradient_checkpointing=True, learning_rate=1e-3,
        padding_free=padding_free,
    )
    trainer.train()
    after = probe_outputs(trainer, trainer.model_wrapped)
    metrics = trainer.evaluate()
    trainer.save_model(str(output_dir / "final"))
    return {
        "gradient_checkpointing_kwargs": trainer.args.gradient_checkpointing_kwargs,
        "after": after,
        "eval_loss": metrics["eval_loss"],
        "train_losses": [log["loss"] for log in trainer.state.log_history if "loss" in log],
        "saved": str(output_dir / "final"),
    }


SCENARIOS = {"full": run_full, "resume": run_resume, "lora": run_lora}


if __name__ == "__main__":
    main()
