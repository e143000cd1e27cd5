"""GPU check: bf16 reward-model training and scoring at realistic sizes, built from configs (nothing from the Hub).

    bash benchmarks/gpu_check.sh [OUTPUT_DIR]                          # one GPU, ≤ 8 minutes
    python benchmarks/gpu_check.py --output_dir DIR [--smoke] [--models qwen2-0.5b]

For Qwen2-style decoders with the shapes of Qwen2.5-0.5B and Qwen2.5-1.5B (random weights: step times do not depend
on them) trained in bf16 with TRL's defaults (AdamW, gradient checkpointing) on synthetic token ids of 256–2048
tokens, 4 pairs per step, it measures

1. the step time of `AnchorGaussianRewardTrainer` (Gaussian + anchors) against TRL's `RewardTrainer` on the same
   padded batches (target ≤ 1.05×);
2. padding-free against padded batches in `AnchorGaussianRewardTrainer`: real tokens/s (target ≥ 1.3×);
3. the peak GPU memory of each of these runs;
4. the GRPO reward function `GaussianRewardFunction` (re-tokenizing decoded completions, as under `GRPOTrainer`):
   completions/s, against its scoring core `score_token_ids` on the same token ids;
5. best-of-N scoring as in `benchmarks/bon_scoring.py`: `BestOfNPipeline.score` against a bare batched forward loop
   (target ≤ 1.10×) and a naive per-completion loop (target ≥ 3×).

Variants alternate over rounds (A B A B ...) and medians are reported; GPU work is synchronised before every clock
read. It writes `gpu_check.json` and `gpu_check.md` to the output directory. `--smoke` runs the same code on the CPU
with tiny sizes (tested in `tests/benchmarks/test_gpu_check.py`).
"""

import argparse
import gc
import json
import logging
import tempfile
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import datasets
import numpy as np
import torch
from _common import StepTimer, interleave, machine_info, median, quiet
from datasets import Dataset
from transformers import AutoModelForSequenceClassification, PreTrainedTokenizerFast, Qwen2Config
from trl import RewardConfig, RewardTrainer

from trl_anchor import AnchorGaussianRewardConfig, AnchorGaussianRewardTrainer, GaussianRewardModel
from trl_anchor.models.packing import num_real_tokens
from trl_anchor.rewards.reward_function import GaussianRewardFunction
from trl_anchor.rewards.scoring import score_token_ids, tokenize_response

# Shapes of the public Qwen2.5-0.5B / 1.5B config.json files (tied embeddings, q/k/v biases, grouped-query attention).
MODELS = {
    "qwen2-0.5b": dict(hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
                       num_key_value_heads=2, vocab_size=151936),
    "qwen2-1.5b": dict(hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
                       num_key_value_heads=2, vocab_size=151936),
    # Wider initial weights than the default 0.02, so that μ differs visibly between completions.
    "tiny": dict(hidden_size=64, intermediate_size=176, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, vocab_size=1024, initializer_range=0.2),
}


@dataclass
class Sizes:
    models: tuple[str, ...]
    min_length: int  # tokens per training sequence (log-uniform between the two)
    max_length: int
    pairs_per_step: int
    steps: int  # per round; the first step of every round is warm-up and not timed
    rounds: int
    completions: int  # per reward-function call (a GRPO batch: prompts × generations)
    completion_words: tuple[int, int]  # words per completion (log-uniform; ~1.5 tokens per word)
    bon_prompts: int
    bon_samples: int
    scoring_batch_size: int = 16  # GaussianRewardFunction's and BestOfNPipeline.score's default


FULL = Sizes(models=("qwen2-0.5b", "qwen2-1.5b"), min_length=256, max_length=2048, pairs_per_step=4, steps=6,
             rounds=2, completions=512, completion_words=(32, 768), bon_prompts=64, bon_samples=16)
SMOKE = Sizes(models=("tiny",), min_length=8, max_length=48, pairs_per_step=2, steps=3, rounds=2, completions=12,
              completion_words=(4, 24), bon_prompts=3, bon_samples=4)


# ------------------------------------------------------------------------------------------------ synthetic inputs
def syllable_words(rng: np.random.Generator, count: int) -> list[str]:
    syllables = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "pa", "qu", "ish", "ent", "or", "al", "b"]
    return ["".join(rng.choice(syllables, int(rng.integers(1, 4)))) for _ in range(count)]


def build_tokenizer(rng: np.random.Generator) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer trained here on synthetic words (the Qwen2 kind of tokenizer, no download)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1000, special_tokens=["<pad>", "<eos>", "<unk>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator([" ".join(syllable_words(rng, 50)) for _ in range(400)], trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")


def log_uniform_lengths(rng: np.random.Generator, count: int, low: int, high: int) -> np.ndarray:
    return np.exp(rng.uniform(np.log(low), np.log(high + 1), count)).astype(int).clip(low, high)


def preference_pairs(rng, sizes: Sizes, num_pairs: int, vocab_size: int, eos_id: int) -> Dataset:
    """Token-id pairs of mixed lengths ending in EOS, with soft labels and external scores for the anchors."""
    def sequence(length: int) -> list[int]:
        return rng.integers(3, vocab_size, length - 1).tolist() + [eos_id]  # ids 0-2 are <pad>, <eos>, <unk>

    lengths = log_uniform_lengths(rng, 2 * num_pairs, sizes.min_length, sizes.max_length)
    return Dataset.from_dict({
        "chosen_ids": [sequence(n) for n in lengths[:num_pairs]],
        "rejected_ids": [sequence(n) for n in lengths[num_pairs:]],
        "soft_label": rng.uniform(0.5, 1.0, num_pairs).tolist(),
        "chosen_score": rng.normal(0.5, 1.0, num_pairs).tolist(),
        "rejected_score": rng.normal(-0.5, 1.0, num_pairs).tolist(),
    })


def completions_text(rng, count: int, words: tuple[int, int]) -> list[str]:
    return [" " + " ".join(syllable_words(rng, int(n))) for n in log_uniform_lengths(rng, count, *words)]


# ------------------------------------------------------------------------------------------------ models and timing
def model_config(name: str, tokenizer) -> Qwen2Config:
    return Qwen2Config(**MODELS[name], tie_word_embeddings=True, max_position_embeddings=4096, num_labels=1,
                       pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)


def build_model(name: str, tokenizer, device: torch.device, gaussian: bool = True):
    torch.manual_seed(0)
    with torch.device(device):
        config = model_config(name, tokenizer)
        model = GaussianRewardModel.from_config(config) if gaussian else \
            AutoModelForSequenceClassification.from_config(config)
    model.set_attn_implementation("sdpa")
    return model.to(torch.bfloat16)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class SyncedStepTimer(StepTimer):
    """`StepTimer` that waits for the GPU before reading the clock, so a step's time includes its kernels."""

    def __init__(self, device: torch.device):
        super().__init__()
        self.device = device

    def on_step_end(self, args, state, control, **kwargs):
        synchronize(self.device)
        super().on_step_end(args, state, control, **kwargs)


def timed(run, device: torch.device) -> float:
    synchronize(device)
    start = time.perf_counter()
    run()
    synchronize(device)
    return time.perf_counter() - start


def resident_bytes(trainer) -> int:
    """Bytes of the trainer's weights and optimizer states (each storage counted once)."""
    tensors = list(trainer.model.parameters())
    if trainer.optimizer is not None:
        optimizer = getattr(trainer.optimizer, "optimizer", trainer.optimizer)
        tensors += [t for state in optimizer.state.values() for t in state.values() if torch.is_tensor(t)]
    return sum({t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors}.values())


# ------------------------------------------------------------------------------------------------ 1–3: training
def build_trainers(name, sizes, tokenizer, dataset, device, timer, output_dir) -> dict[str, RewardTrainer]:
    common = dict(
        max_steps=sizes.steps, per_device_train_batch_size=sizes.pairs_per_step, learning_rate=1e-5,
        max_length=sizes.max_length, logging_steps=sizes.steps, save_strategy="no", report_to="none", bf16=True,
        use_cpu=device.type == "cpu", seed=0, disable_tqdm=True, dataloader_drop_last=True,
    )

    def args(config_cls, tag, **extra):
        return config_cls(output_dir=str(output_dir / f"{name}-{tag}"), **common, **extra)

    pairs_only = dataset.select_columns(["chosen_ids", "rejected_ids"])
    trainers = {
        "TRL RewardTrainer (BT), padded": RewardTrainer(
            model=build_model(name, tokenizer, device, gaussian=False), args=args(RewardConfig, "trl"),
            train_dataset=pairs_only, processing_class=tokenizer, callbacks=[timer],
        ),
    }
    for tag, padding_free in (("padded", False), ("padding-free", True)):
        trainers[f"AnchorGaussianRewardTrainer, {tag}"] = AnchorGaussianRewardTrainer(
            model=build_model(name, tokenizer, device), processing_class=tokenizer, callbacks=[timer],
            args=args(AnchorGaussianRewardConfig, tag, anchor_thresholds="auto", padding_free=padding_free),
            train_dataset=dataset,
        )
    return {key: quiet(trainer) for key, trainer in trainers.items()}


def batch_tokens(trainer) -> tuple[float, float]:
    """Mean real tokens and positions (incl. padding) per step over the batches the trainer draws."""
    real, positions = [], []
    for batch in trainer.get_train_dataloader():
        real.append(int(num_real_tokens(batch)))
        positions.append(batch["input_ids"].numel())
    return float(np.mean(real)), float(np.mean(positions))


def check_training(name: str, sizes: Sizes, tokenizer, device, output_dir: Path) -> list[dict]:
    rng = np.random.default_rng(1)
    dataset = preference_pairs(rng, sizes, sizes.pairs_per_step * sizes.steps, len(tokenizer), tokenizer.eos_token_id)
    timer = SyncedStepTimer(device)
    trainers = build_trainers(name, sizes, tokenizer, dataset, device, timer, output_dir)
    tokens = {key: batch_tokens(trainer) for key, trainer in trainers.items()}
    peaks: dict[str, int | None] = {}

    def run(key):
        def train_once():
            trainer = trainers[key]
            measure = device.type == "cuda"
            if measure:
                synchronize(device)
                torch.cuda.reset_peak_memory_stats(device)
                before = torch.cuda.memory_allocated(device)
            trainer.train()
            if measure:  # the last round's value: optimizer states exist before it starts
                peaks[key] = resident_bytes(trainer) + torch.cuda.max_memory_allocated(device) - before
            return timer.take()
        return train_once

    times = interleave({key: run(key) for key in trainers}, sizes.rounds)
    rows = []
    for key, values in times.items():
        wall = median([w for w, _ in values])
        real, positions = tokens[key]
        rows.append({"model": name, "trainer": key, "timed_steps": len(values), "median_step_s": wall,
                     "real_tokens_per_step": real, "positions_per_step": positions, "real_tokens_per_s": real / wall,
                     "peak_memory_gib": None if key not in peaks else peaks[key] / 2**30})
    return rows


# ------------------------------------------------------------------------------------------------ 4: reward function
def check_reward_function(name: str, sizes: Sizes, tokenizer, device) -> dict:
    rng = np.random.default_rng(2)
    model = build_model(name, tokenizer, device).eval()
    completions = completions_text(rng, sizes.completions, sizes.completion_words)
    prompts = [f"Question {i}: " + " ".join(syllable_words(rng, 12)) for i in range(sizes.completions)]
    reward = GaussianRewardFunction(model, tokenizer, transform="quantile:0.1", device=device)
    token_ids = [tokenize_response(tokenizer, c, p) for p, c in zip(prompts, completions, strict=True)]
    reward(prompts=prompts, completions=completions)  # warm-up (places the model, first CUDA kernels)

    times = interleave({
        "GaussianRewardFunction": lambda: [timed(lambda: reward(prompts=prompts, completions=completions), device)],
        "score_token_ids": lambda: [timed(lambda: score_token_ids(model, token_ids, tokenizer.pad_token_id,
                                                                  sizes.scoring_batch_size), device)],
    }, sizes.rounds)
    full, core = median(times["GaussianRewardFunction"]), median(times["score_token_ids"])
    lengths = [len(ids) for ids in token_ids]
    return {"model": name, "completions": len(completions), "tokens": int(sum(lengths)),
            "min_tokens": min(lengths), "max_tokens": max(lengths), "batch_size": sizes.scoring_batch_size,
            "reward_function_s": full, "score_token_ids_s": core, "completions_per_s": len(completions) / full,
            "overhead_vs_core": full / core}


# ------------------------------------------------------------------------------------------------ 5: best-of-N
def check_best_of_n(name: str, sizes: Sizes, tokenizer, device, output_dir: Path) -> dict:
    from bon_scoring import pipeline_vs_naive_difference, score_variants

    rng = np.random.default_rng(3)
    model = build_model(name, tokenizer, device).eval()
    prompts = [f"Prompt {i}: " + " ".join(syllable_words(rng, 16)) for i in range(sizes.bon_prompts)]
    completions = [completions_text(rng, sizes.bon_samples, sizes.completion_words) for _ in prompts]
    times = score_variants(model, tokenizer, prompts, completions, sizes.scoring_batch_size, sizes.rounds,
                           output_dir / f"bon-{name}", synchronize=lambda: synchronize(device))
    wall = {key: median([value[0] for value in values]) for key, values in times.items()}
    outside = median([(total - forward) / forward for total, _, forward, _ in times["pipeline"]])
    difference, spread = pipeline_vs_naive_difference(model, tokenizer, prompts, completions,
                                                      output_dir / f"bon-{name}")
    return {"model": name, "completions": sizes.bon_prompts * sizes.bon_samples, "pipeline_s": wall["pipeline"],
            "pipeline_outside_forward_vs_forward": outside,
            "max_abs_mean_difference_vs_naive": difference, "mean_std_across_completions": spread,
            "bare_s": wall["bare"], "naive_s": wall["naive"], "pipeline_vs_bare": wall["pipeline"] / wall["bare"],
            "naive_vs_pipeline": wall["naive"] / wall["pipeline"]}


# ------------------------------------------------------------------------------------------------ report
def summarize(training: list[dict]) -> list[dict]:
    """The ratios with their targets, per model."""
    summary = []
    for name in dict.fromkeys(row["model"] for row in training):
        rows = {row["trainer"]: row for row in training if row["model"] == name}
        trl = rows["TRL RewardTrainer (BT), padded"]
        padded, free = rows["AnchorGaussianRewardTrainer, padded"], rows["AnchorGaussianRewardTrainer, padding-free"]
        summary.append({
            "model": name,
            "step_time_vs_trl": padded["median_step_s"] / trl["median_step_s"],
            "padding_free_tokens_per_s_ratio": free["real_tokens_per_s"] / padded["real_tokens_per_s"],
        })
    return summary


def table(header: list[str], rows: list[list]) -> str:
    def cell(value):
        if isinstance(value, float):
            return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
        return "–" if value is None else str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]) + "\n"


def verdict(value: float, target: float, at_most: bool) -> str:
    return "met" if (value <= target if at_most else value >= target) else "MISSED"


def markdown(report: dict) -> str:
    info = report["machine"]
    parts = [f"## GPU check ({'smoke test, CPU' if report['smoke'] else info['accelerator']})\n",
             "\n".join(f"- {key}: {value}" for key, value in info.items()) + "\n",
             f"Settings: {json.dumps(report['sizes'])}\n", "### Targets\n"]
    rows = []
    for s in report["summary"]:
        rows.append([s["model"], "AnchorGaussianRewardTrainer / TRL RewardTrainer step time", s["step_time_vs_trl"],
                     "≤ 1.05×", verdict(s["step_time_vs_trl"], 1.05, True)])
        rows.append([s["model"], "padding-free / padded real tokens/s", s["padding_free_tokens_per_s_ratio"],
                     "≥ 1.3×", verdict(s["padding_free_tokens_per_s_ratio"], 1.3, False)])
    for b in report["best_of_n"]:
        rows.append([b["model"], "best-of-N pipeline / bare loop time", b["pipeline_vs_bare"], "≤ 1.10×",
                     verdict(b["pipeline_vs_bare"], 1.10, True)])
        rows.append([b["model"], "best-of-N naive loop / pipeline time", b["naive_vs_pipeline"], "≥ 3×",
                     verdict(b["naive_vs_pipeline"], 3.0, False)])
    parts.append(table(["model", "ratio", "value", "target", "verdict"], rows))
    parts.append("### Training steps (bf16)\n")
    parts.append(table(
        ["model", "trainer", "timed steps", "median step (s)", "real tokens/step", "positions/step",
         "real tokens/s", "peak memory (GiB)"],
        [[r["model"], r["trainer"], r["timed_steps"], r["median_step_s"], r["real_tokens_per_step"],
          r["positions_per_step"], r["real_tokens_per_s"], r["peak_memory_gib"]] for r in report["training"]],
    ))
    parts.append("### GRPO reward function (GaussianRewardFunction, quantile:0.1)\n")
    parts.append(table(
        ["model", "completions", "tokens", "batch size", "reward function (s)", "score_token_ids (s)",
         "completions/s", "function / scoring core"],
        [[r["model"], r["completions"], r["tokens"], r["batch_size"], r["reward_function_s"],
          r["score_token_ids_s"], r["completions_per_s"], r["overhead_vs_core"]] for r in report["reward_function"]],
    ))
    parts.append("### Best-of-N scoring\n")
    parts.append(table(
        ["model", "completions", "pipeline (s)", "bare loop (s)", "naive loop (s)", "pipeline / bare",
         "pipeline: time outside / inside the forward passes", "naive / pipeline",
         "max abs μ difference, pipeline vs naive"],
        [[b["model"], b["completions"], b["pipeline_s"], b["bare_s"], b["naive_s"], b["pipeline_vs_bare"],
          b["pipeline_outside_forward_vs_forward"], b["naive_vs_pipeline"], b["max_abs_mean_difference_vs_naive"]]
         for b in report["best_of_n"]],
    ))
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes on the CPU: the same code path, in seconds")
    parser.add_argument("--models", default=None, help=f"comma-separated subset of {sorted(MODELS)}")
    args = parser.parse_args(argv)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    datasets.disable_progress_bars()

    sizes = SMOKE if args.smoke else FULL
    if args.models:
        sizes = replace(sizes, models=tuple(args.models.split(",")))
    device = torch.device("cpu" if args.smoke else "cuda")
    if not args.smoke and not torch.cuda.is_available():
        raise SystemExit("No CUDA device: the GPU check needs one (run with --smoke to test it on the CPU).")
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    work_dir = Path(tempfile.mkdtemp(prefix="gpu_check_"))
    tokenizer = build_tokenizer(np.random.default_rng(0))

    report = {"smoke": args.smoke, "machine": machine_info(), "sizes": asdict(sizes),
              "training": [], "reward_function": [], "best_of_n": []}
    for name in sizes.models:
        report["training"] += check_training(name, sizes, tokenizer, device, work_dir)
        report["reward_function"].append(check_reward_function(name, sizes, tokenizer, device))
        report["best_of_n"].append(check_best_of_n(name, sizes, tokenizer, device, work_dir))
        write_report(report, output_dir)  # after every model: a run cut short keeps what it measured
        gc.collect()  # trainers hold reference cycles; free this model's memory before the next one
        if device.type == "cuda":
            torch.cuda.empty_cache()
    print(markdown(report))
    return report


def write_report(report: dict, output_dir: Path) -> None:
    report["summary"] = summarize(report["training"])
    (output_dir / "gpu_check.json").write_text(json.dumps(report, indent=2) + "\n")
    (output_dir / "gpu_check.md").write_text(markdown(report))


if __name__ == "__main__":
    main()
