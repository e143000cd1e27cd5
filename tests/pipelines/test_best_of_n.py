"""Best-of-N stages: the stage cache, gold scorers, the resumable pipeline and the `trl-anchor bon` command."""

import json
import math

import numpy as np
import pytest
import torch
from conftest import tiny_gpt2_config

from trl_anchor.pipelines.best_of_n import (
    BestOfNCacheError,
    BestOfNPipeline,
    GenerationSettings,
    GoldScorerError,
    StageCache,
    load_gold_scorer,
    policy_scores,
)


# ------------------------------------------------------------------------------------------------ gold scorers
def test_gold_scorer_specs_resolve_or_fail_clearly():
    assert load_gold_scorer("math:fsum") is math.fsum
    with pytest.raises(ValueError, match="Cannot import the gold scorer 'math:no_such_function'"):
        load_gold_scorer("math:no_such_function")
    with pytest.raises(ValueError, match="is not callable"):
        load_gold_scorer("math:pi")


# ------------------------------------------------------------------------------------------------ cache
def test_stage_cache_refuses_other_settings_and_repairs_a_cut_line(tmp_path):
    cache = StageCache(tmp_path, "scores", {"reward_model": "a"}, ("mean",)).open()
    cache.append([{"prompt_id": "0", "sample_index": s, "mean": float(s)} for s in (0, 1)])
    with cache.path.open("a") as handle:
        handle.write('{"prompt_id": "0", "sample_in')  # a crash in the middle of a write
    reopened = StageCache(tmp_path, "scores", {"reward_model": "a"}, ("mean",)).open()
    assert set(reopened.rows) == {("0", 0), ("0", 1)}
    assert cache.path.read_text().endswith("}\n")
    with pytest.raises(BestOfNCacheError, match="reward_model: cached 'a', requested 'b'"):
        StageCache(tmp_path, "scores", {"reward_model": "b"}, ("mean",)).open()
    cache.path.write_text('{"prompt_id": "0", "sample_index": 0}\n')
    with pytest.raises(BestOfNCacheError, match=r"line 1: missing field\(s\) \['mean'\]"):
        StageCache(tmp_path, "scores", {"reward_model": "a"}, ("mean",)).open()


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def reward_model_dirs(tmp_path_factory, tokenizer_dir):
    """A tiny Gaussian RM whose σ varies across responses, and a plain seq-cls RM to serve as the gold reward."""
    from transformers import AutoTokenizer, GPT2ForSequenceClassification

    from trl_anchor import GaussianRewardModel

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    rm = GaussianRewardModel.from_config(tiny_gpt2_config(tokenizer))
    with torch.no_grad():
        rm.variance_head.weight.normal_(0.0, 1.0)  # a fresh head gives σ = 1 everywhere; make σ-aware policies differ
    rm_dir = tmp_path_factory.mktemp("gaussian_rm")
    rm.save_pretrained(rm_dir)
    tokenizer.save_pretrained(rm_dir)
    gold_dir = tmp_path_factory.mktemp("gold_rm")
    GPT2ForSequenceClassification(tiny_gpt2_config(tokenizer)).save_pretrained(gold_dir)
    tokenizer.save_pretrained(gold_dir)
    return rm_dir, gold_dir


PROMPTS = [
    [{"role": "user", "content": "what is two plus two"}],
    [{"role": "user", "content": "the cartoon shows a cat"}],
    [{"role": "user", "content": "explain the reason step by step"}],
    [{"role": "user", "content": "a helpful answer"}],
]


class Interrupt(Exception):
    pass


class GenerateSpy:
    """Counts the sequences that reach `model.generate`."""

    def __init__(self, model):
        self.sequences = 0
        self._generate = model.generate
        model.generate = self

    def __call__(self, *args, **kwargs):
        self.sequences += kwargs["input_ids"].shape[0]
        return self._generate(*args, **kwargs)


def test_pipeline_resumes_after_interruption_and_reports(
    tmp_path, tiny_causal_lm_dir, reward_model_dirs, monkeypatch
):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    import trl_anchor.pipelines.best_of_n.pipeline as best_of_n_pipeline

    rm_dir, _ = reward_model_dirs
    model = AutoModelForCausalLM.from_pretrained(tiny_causal_lm_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_causal_lm_dir)
    spy = GenerateSpy(model)
    settings = GenerationSettings(max_new_tokens=6, batch_size=4, seed=1)
    pipe = BestOfNPipeline(PROMPTS, tmp_path, num_samples=4, prompt_ids=["a", "b", "c", "d"], show_progress=False)

    def interrupt_after_first_batch(rows):
        raise Interrupt

    with pytest.raises(Interrupt):
        pipe.generate(model, tokenizer, settings, on_batch_end=interrupt_after_first_batch)
    first_lines = (tmp_path / "generations.jsonl").read_text().splitlines()
    assert len(first_lines) == 4 and {json.loads(line)["prompt_id"] for line in first_lines} == {"a"}

    spy.sequences = 0
    assert pipe.generate(model, tokenizer, settings) == 12
    assert spy.sequences == 12  # prompt "a" was not generated again
    lines = (tmp_path / "generations.jsonl").read_text().splitlines()
    assert lines[:4] == first_lines and len(lines) == 16
    assert pipe.generate(model, tokenizer, settings) == 0 and spy.sequences == 12

    # Scoring resumes too: an interruption after the first chunk of 5 leaves 11 to score.
    scored = []
    real_score_responses = best_of_n_pipeline.score_responses

    def score_then_crash(model, tokenizer, completions, *args):
        if scored:
            raise Interrupt
        scored.append(len(completions))
        return real_score_responses(model, tokenizer, completions, *args)

    monkeypatch.setattr(best_of_n_pipeline, "score_responses", score_then_crash)
    with pytest.raises(Interrupt):
        pipe.score(str(rm_dir), batch_size=3, chunk_size=5)
    monkeypatch.setattr(best_of_n_pipeline, "score_responses", real_score_responses)
    assert scored == [5] and pipe.score(str(rm_dir), batch_size=3, chunk_size=5) == 11
    assert pipe.score(str(rm_dir), batch_size=3, chunk_size=5) == 0

    def gold(prompts, completions):
        return [float(len(c[0]["content"])) for c in completions]

    assert pipe.evaluate(gold, chunk_size=8) == 16
    report = pipe.select(["mean", "lcb:1.0", "quantile:0.9", "random"])
    pool = pipe.pool()
    np.testing.assert_allclose(report.curves["gold"]["random"].mean, [pool.gold.mean()] * 4)
    np.testing.assert_allclose(report.curves["gold"]["mean"].mean[0], pool.gold.mean())
    oracle = np.asarray(report.curves["gold"]["oracle"].mean)
    for policy in ("mean", "lcb:1.0", "quantile:0.9"):
        assert np.all(oracle >= np.asarray(report.curves["gold"][policy].mean) - 1e-12)
        best = policy_scores(policy, pool.mean, pool.std).argmax(1)
        assert report.value("proxy", policy, 4) == pytest.approx(pool.mean[np.arange(4), best].mean())
    selections = [json.loads(line) for line in (tmp_path / "selections.jsonl").read_text().splitlines()]
    assert len(selections) == 4 * 4  # mean, lcb, quantile, oracle (random has no single pick)
    assert {(row["prompt_id"], row["policy"]) for row in selections} >= {("c", "lcb:1.0"), ("d", "oracle")}
    for name in ("best_of_n.json", "best_of_n.md", "best_of_n.png"):
        assert (tmp_path / name).stat().st_size > 0


def test_pipeline_errors_name_what_is_wrong(tmp_path, tiny_causal_lm_dir):
    settings = GenerationSettings(max_new_tokens=4, batch_size=8)
    pipe = BestOfNPipeline(PROMPTS[:2], tmp_path, num_samples=2, show_progress=False)
    pipe.generate(str(tiny_causal_lm_dir), settings=settings)
    with pytest.raises(BestOfNCacheError, match="num_samples: cached 2, requested 3"):
        BestOfNPipeline(PROMPTS[:2], tmp_path, num_samples=3, show_progress=False).generate(
            str(tiny_causal_lm_dir), settings=settings
        )
    changed = [PROMPTS[2], PROMPTS[1]]
    with pytest.raises(BestOfNCacheError, match="prompt '0' was generated for a different prompt"):
        BestOfNPipeline(changed, tmp_path, num_samples=2, show_progress=False).generate(
            str(tiny_causal_lm_dir), settings=settings
        )

    def flaky(prompts, completions):
        raise ConnectionError("judge API unreachable")

    with pytest.raises(GoldScorerError, match=r"prompt '0' sample\(s\) \[0, 1\].*ConnectionError: judge API"):
        pipe.evaluate(flaky)
    with pytest.raises(GoldScorerError, match="prompt '1' sample 0"):
        pipe.evaluate(lambda prompts, completions: [1.0, 2.0, float("nan"), 0.0])
    with pytest.raises(GoldScorerError, match="returned 1 scores for 4"):
        pipe.evaluate(lambda prompts, completions: [1.0])
    with pytest.raises(BestOfNCacheError, match="run the `score` stage"):
        pipe.pool()


# ------------------------------------------------------------------------------------------------ command line
def test_bon_command_end_to_end_with_resume(tmp_path, tiny_causal_lm_dir, reward_model_dirs, monkeypatch):
    from transformers import GenerationMixin

    from trl_anchor.cli import main

    rm_dir, gold_dir = reward_model_dirs
    data = tmp_path / "prompts.jsonl"
    data.write_text("".join(json.dumps({"id": f"p{i}", "prompt": p}) + "\n" for i, p in enumerate(PROMPTS)))
    output = tmp_path / "bon"
    common = [
        "--dataset_name", str(data), "--id_column", "id", "--model_name_or_path", str(tiny_causal_lm_dir),
        "--num_samples", "4", "--max_new_tokens", "6", "--generation_batch_size", "8", "--output_dir", str(output),
    ]
    # First run stops after two prompts (as an interrupted run would).
    assert main(["bon", *common, "--num_prompts", "2", "--stages", "generate"]) == 0
    first = (output / "generations.jsonl").read_text().splitlines()
    assert {json.loads(line)["prompt_id"] for line in first} == {"p0", "p1"}

    generated = []
    original = GenerationMixin.generate

    def counting_generate(self, *args, **kwargs):
        generated.append(kwargs["input_ids"].shape[0])
        return original(self, *args, **kwargs)

    monkeypatch.setattr(GenerationMixin, "generate", counting_generate)
    argv = [
        "bon", *common, "--reward_model_path", str(rm_dir), "--gold_scorer", str(gold_dir),
        "--policies", "mean", "quantile:0.1", "lcb:1.0", "random_quantile:0.05:0.5", "random",
    ]
    assert main(argv) == 0
    assert sum(generated) == 8  # only p2 and p3
    lines = (output / "generations.jsonl").read_text().splitlines()
    assert lines[:8] == first and len(lines) == 16

    summary = json.loads((output / "best_of_n.json").read_text())
    assert summary["ns"] == [1, 2, 3, 4] and summary["num_pools"] == 4
    gold = summary["curves"]["gold"]
    assert set(gold) == {"mean", "quantile:0.1", "lcb:1.0", "random_quantile:0.05:0.5", "random", "oracle"}
    for policy, curve in gold.items():
        assert all(o >= v - 1e-9 for o, v in zip(gold["oracle"]["mean"], curve["mean"], strict=True)), policy
        assert curve["mean"][0] == pytest.approx(gold["random"]["mean"][0])  # n = 1 is a uniform pick
    assert (output / "best_of_n.png").stat().st_size > 0
    assert "| lcb:1.0 |" in (output / "best_of_n.md").read_text()

    # Re-running everything recomputes nothing and loads no reward model; another N is refused with a clear error.
    import trl_anchor.pipelines.best_of_n.pipeline as best_of_n_pipeline

    def no_loading(*args, **kwargs):
        raise AssertionError("a finished stage loaded a model")

    monkeypatch.setattr(best_of_n_pipeline, "load_reward_model", no_loading)
    monkeypatch.setattr(best_of_n_pipeline, "load_gold_scorer", no_loading)
    generated.clear()
    assert main(argv) == 0 and generated == []
    with pytest.raises(BestOfNCacheError, match="num_samples: cached 4, requested 8"):
        main([*argv, "--num_samples", "8"])
    with pytest.raises(ValueError, match="missing the column"):
        main([*argv, "--prompt_column", "question"])


# ------------------------------------------------------------------------------------- seeds and gold cache keys
def test_samples_do_not_depend_on_the_batch_size(tmp_path, tiny_causal_lm_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_causal_lm_dir)
    tokenizer = AutoTokenizer.from_pretrained(tiny_causal_lm_dir)
    runs = {}
    for batch_size in (1, 3, 8):
        settings = GenerationSettings(max_new_tokens=6, batch_size=batch_size, seed=4, top_k=20, top_p=0.9)
        pipe = BestOfNPipeline(PROMPTS, tmp_path / f"b{batch_size}", num_samples=3, show_progress=False)
        pipe.generate(model, tokenizer, settings)
        lines = (tmp_path / f"b{batch_size}" / "generations.jsonl").read_text().splitlines()
        rows = [json.loads(line) for line in lines]
        runs[batch_size] = {(r["prompt_id"], r["sample_index"]): r["completion"] for r in rows}
    assert runs[1] == runs[3] == runs[8]
    assert len(set(map(str, runs[1].values()))) > len(PROMPTS)  # the samples of a prompt differ


def test_two_gold_callables_of_one_name_do_not_share_a_cache(tmp_path, tiny_causal_lm_dir):
    from trl_anchor.pipelines.best_of_n.gold import gold_scorer_name

    def length(prompts, completions):
        return [float(len(str(c))) for c in completions]

    first = lambda prompts, completions: [1.0] * len(completions)  # noqa: E731
    second = lambda prompts, completions: [2.0] * len(completions)  # noqa: E731
    assert first.__qualname__ == second.__qualname__
    assert gold_scorer_name(first) != gold_scorer_name(second)
    assert gold_scorer_name(first) == gold_scorer_name(lambda prompts, completions: [1.0] * len(completions))

    def scaled(k):
        return lambda prompts, completions: [k * len(str(c)) for c in completions]

    assert gold_scorer_name(scaled(1.0)) != gold_scorer_name(scaled(2.0))  # same code, other captured value
    assert "0x" not in gold_scorer_name(scaled(1.0)) and gold_scorer_name(length).startswith(f"{__name__}:")

    pipe = BestOfNPipeline(PROMPTS[:2], tmp_path, num_samples=2, show_progress=False)
    pipe.generate(str(tiny_causal_lm_dir), None, GenerationSettings(max_new_tokens=3, batch_size=4))
    assert pipe.evaluate(first) == 4
    with pytest.raises(BestOfNCacheError, match="gold_scorer"):
        pipe.evaluate(second)  # a stale cache would have returned `first`'s scores
