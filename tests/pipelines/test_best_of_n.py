import itertools
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
    best_of_n_curve,
    best_of_n_expectation,
    best_of_n_weights,
    load_gold_scorer,
    policy_scores,
)
from trl_anchor.rewards.transforms import RewardTransform


# ------------------------------------------------------------------------------------------------ estimator
def brute_force_best_of_n(scores, values, n):
    """Average over every n-subset of the value of its top-scored item, ties broken uniformly at random."""
    results = []
    for subset in itertools.combinations(range(len(scores)), n):
        top = max(scores[i] for i in subset)
        results.append(np.mean([values[i] for i in subset if scores[i] == top]))
    return float(np.mean(results))


@pytest.mark.parametrize("pool_size", [1, 2, 5, 8])
@pytest.mark.parametrize("levels", [None, 3, 1])  # distinct scores, heavy ties, all tied
def test_estimator_matches_enumeration_of_all_subsets(pool_size, levels):
    rng = np.random.default_rng(pool_size * 10 + (levels or 0))
    scores = rng.normal(size=pool_size) if levels is None else rng.integers(0, levels, pool_size).astype(float)
    values = rng.normal(size=pool_size)
    curve = best_of_n_curve(scores, values)
    expected = [brute_force_best_of_n(scores, values, n) for n in range(1, pool_size + 1)]
    np.testing.assert_allclose(curve, expected, rtol=0, atol=1e-12)


def test_estimator_on_many_pools_and_selected_ns():
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 4, (6, 7)).astype(float)
    values = rng.normal(size=(6, 7))
    curves = best_of_n_curve(scores, values, ns=[1, 3, 7])
    for pool in range(6):
        expected = [brute_force_best_of_n(scores[pool], values[pool], n) for n in (1, 3, 7)]
        np.testing.assert_allclose(curves[pool], expected, atol=1e-12)
    np.testing.assert_allclose(best_of_n_expectation(scores, values, 3), curves[:, 1])


def test_weights_are_the_binomial_ratios_and_sum_to_one():
    for pool_size, n in [(10, 1), (10, 4), (10, 10), (3000, 17)]:
        weights = best_of_n_weights(pool_size, n)
        assert weights.sum() == pytest.approx(1.0, abs=1e-9)
        if pool_size <= 10:
            exact = [math.comb(i - 1, n - 1) / math.comb(pool_size, n) for i in range(1, pool_size + 1)]
            np.testing.assert_allclose(weights, exact, rtol=1e-12)
    with pytest.raises(ValueError, match="n must lie"):
        best_of_n_weights(4, 5)


def test_estimator_rejects_bad_inputs():
    with pytest.raises(ValueError, match="same shape"):
        best_of_n_curve([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="finite"):
        best_of_n_curve([1.0, float("nan")], [1.0, 2.0])


# ------------------------------------------------------------------------------------------------ policies
def test_policies_use_the_reward_transforms():
    mean, std = np.array([[1.0, 1.2, 0.5]]), np.array([[0.1, 1.0, 0.2]])
    expected = RewardTransform.parse("quantile:0.1")(mean.ravel(), std.ravel()).reshape(1, 3)
    np.testing.assert_allclose(policy_scores("quantile:0.1", mean, std), expected)
    assert policy_scores("mean", mean, std).argmax() == 1
    assert policy_scores("lcb:1.0", mean, std).argmax() == 0
    assert np.all(policy_scores("random", mean, std) == 0)
    draws = policy_scores("random_quantile:0.05:0.5", mean, std, seed=3)
    np.testing.assert_array_equal(draws, policy_scores("random_quantile:0.05:0.5", mean, std, seed=3))
    with pytest.raises(ValueError, match="needs σ"):
        policy_scores("lcb:1.0", mean, None)
    with pytest.raises(ValueError, match="gold"):
        policy_scores("oracle", mean, std)


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

    import trl_anchor.pipelines.best_of_n as best_of_n

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
    real_score_responses = best_of_n.score_responses

    def score_then_crash(model, tokenizer, completions, *args):
        if scored:
            raise Interrupt
        scored.append(len(completions))
        return real_score_responses(model, tokenizer, completions, *args)

    monkeypatch.setattr(best_of_n, "score_responses", score_then_crash)
    with pytest.raises(Interrupt):
        pipe.score(str(rm_dir), batch_size=3, chunk_size=5)
    monkeypatch.setattr(best_of_n, "score_responses", real_score_responses)
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
        assert all(o >= v - 1e-9 for o, v in zip(gold["oracle"]["mean"], curve["mean"])), policy
        assert curve["mean"][0] == pytest.approx(gold["random"]["mean"][0])  # n = 1 is a uniform pick
    assert (output / "best_of_n.png").stat().st_size > 0
    assert "| lcb:1.0 |" in (output / "best_of_n.md").read_text()

    # Re-running everything recomputes nothing and loads no reward model; another N is refused with a clear error.
    import trl_anchor.pipelines.best_of_n as best_of_n

    def no_loading(*args, **kwargs):
        raise AssertionError("a finished stage loaded a model")

    monkeypatch.setattr(best_of_n, "load_reward_model", no_loading)
    monkeypatch.setattr(best_of_n, "load_gold_scorer", no_loading)
    generated.clear()
    assert main(argv) == 0 and generated == []
    with pytest.raises(BestOfNCacheError, match="num_samples: cached 4, requested 8"):
        main([*argv, "--num_samples", "8"])
    with pytest.raises(ValueError, match="missing the column"):
        main([*argv, "--prompt_column", "question"])
