"""`BestOfNPipeline.score` batches completions longest first over the whole pool, not only within each chunk it
hands to the scorer: chunks of mixed lengths would pad short completions up to long ones (benchmarks/bon_scoring.py
measured 3% more positions and 9% more attention work on 64 × 16 caption completions with 512-item chunks)."""

import numpy as np
import torch
from conftest import tiny_gpt2_config

from trl_anchor import GaussianRewardModel
from trl_anchor.pipelines.best_of_n import BestOfNPipeline, StageCache, fingerprint
from trl_anchor.rewards.scoring import score_responses

WORDS = "the quick brown fox jumps over the lazy dog".split()


def write_generations(directory, prompts, completions):
    cache = StageCache(directory, "generations", {"num_samples": len(completions[0]), "model": "test"},
                       ("prompt_sha", "completion")).open()
    cache.append([
        {"prompt_id": str(i), "sample_index": s, "prompt_sha": fingerprint(prompt), "completion": text,
         "num_tokens": len(text.split()), "finish_reason": "stop"}
        for i, prompt in enumerate(prompts) for s, text in enumerate(completions[i])
    ])


def test_score_batches_longest_first_across_chunks(tmp_path, tokenizer):
    # Word counts per (prompt, sample): in prompt-major order a chunk of 4 mixes short and long completions.
    word_counts = [[1, 12, 3, 7], [10, 2, 9, 4], [6, 11, 5, 8]]
    prompts = [f"user asks {i} " for i in range(3)]
    completions = [[" ".join(WORDS[j % len(WORDS)] for j in range(n)) for n in row] for row in word_counts]
    write_generations(tmp_path, prompts, completions)
    torch.manual_seed(0)
    model = GaussianRewardModel.from_config(tiny_gpt2_config(tokenizer)).eval()
    batches = []
    model.register_forward_pre_hook(
        lambda module, args, kwargs: batches.append(kwargs["attention_mask"].sum(1).tolist()), with_kwargs=True
    )

    pipe = BestOfNPipeline(prompts, tmp_path, num_samples=4, show_progress=False)
    assert pipe.score(model, tokenizer, batch_size=2, chunk_size=4) == 12

    lengths = [n for batch in batches for n in batch]
    assert len(lengths) == 12 and lengths == sorted(lengths, reverse=True)
    # Whatever the order of scoring, every row holds the scores of its own completion.
    flat_prompts = [p for p in prompts for _ in range(4)]
    expected = score_responses(model, tokenizer, [c for row in completions for c in row], flat_prompts)
    pool = pipe.pool()
    np.testing.assert_allclose(pool.mean.reshape(-1), expected.mean, rtol=0, atol=1e-6)
    np.testing.assert_allclose(pool.std.reshape(-1) ** 2, expected.variance, rtol=0, atol=1e-6)
