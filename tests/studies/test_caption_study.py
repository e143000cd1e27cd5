"""The real-vote caption study: its per-contest metrics, its evaluation pools on a hand-made contest, and a reduced
end-to-end run on three real contests with a tiny BERT (report, resume, determinism). The rank statistics it uses are
tested against scipy in tests/test_metrics.py."""

import json
import os
from dataclasses import asdict

import numpy as np
import pytest
from datasets import Dataset
from scipy.stats import norm

from trl_anchor.data._common import FilterReport, split_by_group
from trl_anchor.data.caption_contest_files import ContestTable
from trl_anchor.rewards.scoring import RewardScores
from trl_anchor.studies.caption_study import (
    ARMS,
    GAUSSIAN_ONLY,
    METRICS,
    CaptionStudyConfig,
    best_of_n_gains,
    build_pool,
    constant_vote_nll_per_contest,
    contest_average_vote_nll,
    contest_metrics,
    regenerating_command,
    run_caption_study,
    split_contests,
)


# ------------------------------------------------------------------------------------------- evaluation pool
def _hand_made_table() -> ContestTable:
    """40 captions: means fall with the index; captions 5, 15, 25 have only 3 votes."""
    rng = np.random.default_rng(0)
    counts = []
    for k in range(40):
        votes = 3 if k in (5, 15, 25) else 60
        funny = np.clip(0.9 - k / 45, 0.02, None)
        p = np.array([1 - funny, funny * 0.6, funny * 0.4])
        counts.append(rng.multinomial(votes, p / p.sum()))
    counts = np.array(counts)
    order = np.argsort(-(counts @ [1, 2, 3]) / counts.sum(1), kind="stable")  # captions listed best first
    return ContestTable(700, [f"caption {k}" for k in range(40)], counts[order], FilterReport("hand-made"))


def _pool_config(**kwargs):
    defaults = {
        "min_eval_votes": 10,
        "num_top": 3,
        "far_rank": 10,
        "num_far": 2,
        "eval_pairs_per_contest": 50,
        "seed": 3,
    }
    return CaptionStudyConfig(**{**defaults, **kwargs})


def test_build_pool_ranks_among_well_voted_captions():
    table = _hand_made_table()
    config = _pool_config()
    pool = build_pool(table, "A cartoon.", config, sample_size=12, extremes=True)
    mean, _ = table.stats
    eligible = np.flatnonzero(table.votes >= 10)
    ranked = eligible[np.argsort(-mean[eligible], kind="stable")]
    expected_top = [table.captions[k] for k in ranked[:3]]
    expected_far = [table.captions[k] for k in ranked[9:11]]  # ranks 10 and 11 (996–1005 for 10 around 1000)
    assert [pool.captions[k] for k in pool.top] == expected_top
    assert [pool.captions[k] for k in pool.far] == expected_far
    assert len(pool.sample) == 12 and len(set(pool.captions)) == len(pool.captions)
    assert (pool.counts.sum(1) >= 10).all()
    assert pool.report.dropped["too_few_votes_for_evaluation"] == 3
    assert pool.prompt.startswith("A cartoon.")
    for chosen, rejected in (pool.random_pairs, pool.clear_pairs):
        assert len(chosen) > 0
        assert (pool.mean[chosen] >= pool.mean[rejected]).all()
        assert set(chosen) | set(rejected) <= set(pool.sample)  # pairs only among the random sample
    chosen, rejected = pool.clear_pairs
    gap = pool.mean[chosen] - pool.mean[rejected]
    smoothed = pool.counts + 1.0  # "clear" uses add-one standard errors: a unanimous caption is not exact
    n = smoothed.sum(1)
    mean = smoothed @ [1.0, 2.0, 3.0] / n
    se = np.sqrt((smoothed * (np.array([1.0, 2.0, 3.0]) - mean[:, None]) ** 2).sum(1) / (n - 1) / n)
    assert (gap > config.separation * np.hypot(se[chosen], se[rejected])).all()
    again = build_pool(table, "A cartoon.", config, sample_size=12, extremes=True)
    assert again.captions == pool.captions and np.array_equal(again.random_pairs[0], pool.random_pairs[0])


def test_build_pool_without_a_rank_1000_set_counts_it():
    pool = build_pool(_hand_made_table(), "A cartoon.", _pool_config(far_rank=100), sample_size=5, extremes=True)
    assert len(pool.top) == 0 and len(pool.far) == 0
    assert pool.report.adjusted["no_rank_1000_set"] == 1


def test_contest_metrics_of_a_perfect_model():
    pool = build_pool(_hand_made_table(), "A cartoon.", _pool_config(), sample_size=20, extremes=True)
    spread = pool.spread
    perfect = RewardScores(mean=pool.mean * 10.0, variance=(spread + 0.01) ** 2)
    metrics = contest_metrics(pool, perfect, [-1.0, 1.0])
    assert metrics["kendall_tau"] == pytest.approx(1.0)
    assert metrics["top_vs_far_auc"] == 1.0
    assert metrics["accuracy_clear"] == 1.0
    assert metrics["sigma_spearman_spread"] == pytest.approx(1.0)
    assert metrics["sigma_partial_spread"] == pytest.approx(1.0)
    reversed_bt = contest_metrics(pool, RewardScores(mean=-pool.mean, variance=None), [-1.0, 1.0])
    assert reversed_bt["kendall_tau"] == pytest.approx(-1.0) and reversed_bt["top_vs_far_auc"] == 0.0
    assert not set(GAUSSIAN_ONLY) & set(reversed_bt)


def test_best_of_n_gains_with_every_caption_in_each_set():
    # With n = the whole sample every set is the sample itself, so each rule's pick is known by hand.
    pool = build_pool(_hand_made_table(), "A cartoon.", _pool_config(), sample_size=20, extremes=False)
    crowd = pool.mean[pool.sample]
    best, worst, average = crowd.max(), crowd.min(), crowd.mean()
    n = len(pool.sample)
    perfect = contest_metrics(pool, RewardScores(mean=pool.mean, variance=None), [-1.0, 1.0], bon=(n, 5, 0))
    assert perfect["bon_gain_mean"] == pytest.approx(1.0)
    assert "bon_gain_quantile" not in perfect and "bon_gain_expected_vote" not in perfect
    reversed_bt = best_of_n_gains(pool, RewardScores(mean=-pool.mean, variance=None), [-1.0, 1.0], n, 5, 0)
    assert reversed_bt["bon_gain_mean"] == pytest.approx((worst - average) / (best - average))

    # σ decides the risk-aware picks: the best caption is very uncertain (σ = 100), the others are not (σ = 0.5).
    first, second = (pool.sample[k] for k in np.argsort(-crowd)[:2])
    variance = np.full(len(pool.mean), 0.25)
    variance[first] = 1e4
    scores = RewardScores(mean=pool.mean - 2.0, variance=variance)  # μ in about [−1, 0.3], between τ = ±1
    gains = best_of_n_gains(pool, scores, [-1.0, 1.0], n, 5, 0)
    second_gain = (pool.mean[second] - average) / (best - average)
    assert gains["bon_gain_mean"] == pytest.approx(1.0)
    assert gains["bon_gain_quantile"] == pytest.approx(second_gain)  # μ − 1.28σ of the first is far below
    # E[class] = Φ((μ + 1)/σ) + Φ((μ − 1)/σ) rises with μ at σ = 0.5; at σ = 100 it is ≈ 1.0, below the second's.
    expected = [norm.cdf((m + 1) / s) + norm.cdf((m - 1) / s) for m, s in zip(scores.mean, scores.std, strict=True)]
    assert np.argmax(np.asarray(expected)[pool.sample]) == np.argsort(-crowd)[1]
    assert gains["bon_gain_expected_vote"] == pytest.approx(second_gain)


def test_best_of_n_gains_draw_the_same_sets_for_every_model():
    pool = build_pool(_hand_made_table(), "A cartoon.", _pool_config(), sample_size=20, extremes=False)
    rng = np.random.default_rng(1)
    noisy = RewardScores(mean=pool.mean + rng.normal(0, 0.3, len(pool.mean)), variance=None)
    assert best_of_n_gains(pool, noisy, [-1.0, 1.0], 4, 50, 7) == best_of_n_gains(pool, noisy, [-1.0, 1.0], 4, 50, 7)
    assert best_of_n_gains(pool, noisy, [-1.0, 1.0], 25, 50, 7) == {}  # sample smaller than n
    gain = best_of_n_gains(pool, noisy, [-1.0, 1.0], 4, 400, 7)["bon_gain_mean"]
    assert 0.0 < gain < 1.0


def test_constant_vote_reference_per_contest():
    pool = build_pool(_hand_made_table(), "A cartoon.", _pool_config(), sample_size=20, extremes=False)
    shares = [0.7, 0.2, 0.1]
    per_vote = []
    for counts in pool.counts[pool.sample]:  # one caption at a time: every vote costs −log(share of its category)
        votes = [category for category, n in enumerate(counts) for _ in range(n)]
        per_vote.append(np.mean([-np.log(shares[v]) for v in votes]))
    assert constant_vote_nll_per_contest([pool], shares) == {700: pytest.approx(np.mean(per_vote))}


def test_within_contest_vote_nll_gain_against_the_contest_average_prediction():
    # Two captions, τ = ±1: (μ, σ) = (0, 1) predicts π = (Φ(−1), Φ(1) − Φ(−1), 1 − Φ(1)); (−2, 1) predicts
    # (Φ(1), Φ(3) − Φ(1), 1 − Φ(3)). The contest-average prediction is their mean; each vote costs −log π of its class.
    mean, std, counts = np.array([0.0, -2.0]), np.array([1.0, 1.0]), np.array([[2, 1, 1], [5, 0, 0]])
    own = [
        [norm.cdf(-1), norm.cdf(1) - norm.cdf(-1), norm.sf(1)],
        [norm.cdf(1), norm.cdf(3) - norm.cdf(1), norm.sf(3)],
    ]
    average = np.mean(own, axis=0)
    by_hand = np.mean([-(c * np.log(average)).sum() / c.sum() for c in counts])
    assert contest_average_vote_nll(mean, std, [-1.0, 1.0], counts) == pytest.approx(by_hand)
    model = np.mean([-(c * np.log(p)).sum() / c.sum() for c, p in zip(counts, own, strict=True)])
    pool = build_pool(_hand_made_table(), "A cartoon.", _pool_config(), sample_size=20, extremes=False)
    scores = RewardScores(mean=pool.mean * 3.0 - 5.0, variance=np.full(len(pool.mean), 1.5))
    metrics = contest_metrics(pool, scores, [-1.0, 1.0])
    sample = pool.sample
    assert metrics["vote_nll_within_gain"] == pytest.approx(
        contest_average_vote_nll(scores.mean[sample], scores.std[sample], [-1.0, 1.0], pool.counts[sample])
        - metrics["vote_nll"]
    )
    assert metrics["vote_nll_within_gain"] > 0  # μ follows the crowd mean, so caption differences help
    # A model trained with contest groups predicts a new contest's votes from N(μ, σ² + s²).
    grouped = contest_metrics(pool, RewardScores(scores.mean, scores.variance, group_variance=0.5), [-1.0, 1.0])
    counts = pool.counts[sample]
    cdf = norm.cdf((np.array([-1.0, 1.0])[None, :] - scores.mean[sample, None]) / np.sqrt(1.5 + 0.5))
    probs = np.diff(np.c_[np.zeros(len(sample)), cdf, np.ones(len(sample))], axis=1)
    by_hand = np.mean([-(c * np.log(p)).sum() / c.sum() for c, p in zip(counts, probs, strict=True)])
    assert grouped["vote_nll"] == pytest.approx(by_hand) and grouped["vote_nll"] != pytest.approx(metrics["vote_nll"])
    assert grouped["sigma_relative_spread"] == metrics["sigma_relative_spread"]  # σ metrics read σ itself
    # A mean head without a bias: the votes are read at μ + μ₀ (`anchor_mean_offset`).
    shifted = contest_metrics(pool, RewardScores(scores.mean - 0.4, scores.variance, mean_offset=0.4), [-1.0, 1.0])
    assert shifted["vote_nll"] == pytest.approx(metrics["vote_nll"], rel=1e-12)
    assert shifted["kendall_tau_expected_vote"] == pytest.approx(metrics["kendall_tau_expected_vote"])
    assert model < by_hand  # the hand-made pair too: each caption's own prediction fits its votes better


def test_split_contests_is_the_loader_split():
    contests = [510, 512, 513, 514, 516, 517, 518, 520, 521, 522]
    splits = split_contests(contests, test_size=0.2, validation_size=0.2, seed=4)
    rows = Dataset.from_dict({"contest": [c for c in contests for _ in range(3)]})
    reference = split_by_group(rows, "contest", test_size=0.2, validation_size=0.2, seed=4)
    for name in ("train", "validation", "test"):
        assert splits[name] == sorted(set(reference[name]["contest"]))
    assert sorted(splits["train"] + splits["validation"] + splits["test"]) == contests


def test_config_rejects_bad_settings():
    with pytest.raises(ValueError, match="τ_1 < τ_2"):
        CaptionStudyConfig(anchor_thresholds=[-1.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="anchor_fractions"):
        CaptionStudyConfig(anchor_fractions=[0.5, 1.0])
    with pytest.raises(ValueError, match="overlap the top"):
        CaptionStudyConfig(num_top=10, far_rank=12, num_far=6)


def test_the_score_cache_is_keyed_on_data_versions_backbone_and_captions(tmp_path, caption_data_dir, monkeypatch):
    from trl_anchor.data.caption_contest import CaptionContestData
    from trl_anchor.studies.caption_study import BASELINE_RUNS
    from trl_anchor.studies.caption_study import run as study
    from trl_anchor.studies.caption_study.config import anchored_run

    data_dir, backbone = tmp_path / "data", tmp_path / "backbone"
    (data_dir / "summaries").mkdir(parents=True)
    backbone.mkdir()
    (backbone / "model.safetensors").write_bytes(b"0" * 10)
    summary = data_dir / "summaries" / "636_summary_KLUCB.csv"
    summary.write_text((caption_data_dir / "summaries" / summary.name).read_text(encoding="utf-8"), encoding="utf-8")
    (data_dir / "descriptions.csv").write_text("contest,description\n636,A cartoon\n")
    config = CaptionStudyConfig(data_dir=str(data_dir))

    def key():
        inputs = study._input_signature(CaptionContestData.from_dir(data_dir), config, str(backbone))
        return study._fingerprint(config, BASELINE_RUNS[0], inputs)

    first = key()
    assert key() == first
    # Another training seed or best-of-N setting does not retrain the runs already done; another first seed does.
    config.training_seeds, config.bon_draws = [0, 5], 17
    assert key() == first
    config.training_seeds = [3]
    assert key() != first
    config.training_seeds = [0, 1]
    lines = summary.read_text(encoding="utf-8").split("\n")
    fields = lines[1].split(",")
    fields[2] = str(int(fields[2]) + 1)  # one vote more for one caption: the same settings, other data
    fields[5] = str(int(fields[5]) + 1)
    summary.write_text("\n".join([lines[0], ",".join(fields), *lines[2:]]), encoding="utf-8")
    second = key()
    assert second != first
    (backbone / "model.safetensors").write_bytes(b"0" * 11)  # retrained in place
    third = key()
    assert third != second
    monkeypatch.setattr(study, "_versions", lambda: {"trl-anchor": "9.9"})
    assert key() != third

    # Only the anchored runs train with the anchor settings; each run's own λ and fraction are in its spec.
    anchored = anchored_run(0.1)
    inputs = study._input_signature(CaptionContestData.from_dir(data_dir), config, str(backbone))
    baseline_key, anchored_key = (study._fingerprint(config, run, inputs) for run in (BASELINE_RUNS[0], anchored))
    config.anchor_group_column, config.anchor_thresholds, config.anchor_lambdas = None, [-2.0, 2.0], [0.1, 5.0]
    assert study._fingerprint(config, BASELINE_RUNS[0], inputs) == baseline_key
    assert study._fingerprint(config, anchored, inputs) != anchored_key
    config.anchor_group_column, config.anchor_thresholds = "contest", [-1.0, 1.0]
    assert study._fingerprint(config, anchored, inputs) == anchored_key
    assert study._fingerprint(config, anchored_run(0.1, 0.5), inputs) != anchored_key

    scores = {"test": [RewardScores(np.arange(3.0), np.ones(3))]}
    study._save_cache(tmp_path / "cache", "k", {"test": ["captions-a"]}, scores, {"steps": 1})
    cached, _ = study._load_cache(tmp_path / "cache", "k", {"test": ["captions-a"]})
    np.testing.assert_array_equal(cached["test"][0].mean, np.arange(3.0))
    assert study._load_cache(tmp_path / "cache", "k", {"test": ["captions-b"]}) == (None, None)


def test_a_lambda_that_wins_by_less_than_its_standard_error_is_a_tie():
    from trl_anchor.studies.caption_study.statistics import lambda_comparison

    def runs(losses):  # λ -> per-contest validation soft CE
        return {
            f"lam{lam}": {
                "validation": {
                    "per_contest": {c: {"soft_ce": v} for c, v in enumerate(values)},
                    "summary": {"soft_ce": {"mean": float(np.mean(values))}},
                }
            }
            for lam, values in losses.items()
        }

    name = "lam{}".format
    close = lambda_comparison(runs({0.1: [0.50, 0.52, 0.49], 1.0: [0.51, 0.50, 0.495]}), [0.1, 1.0], name)
    diffs = np.array([0.50, 0.52, 0.49]) - np.array([0.51, 0.50, 0.495])  # runner-up − best, by hand
    assert close["anchor_lambda"] == 1.0 and close["runner_up"] == 0.1
    assert close["difference"]["mean"] == pytest.approx(diffs.mean())
    assert close["difference"]["se"] == pytest.approx(diffs.std(ddof=1) / np.sqrt(3))
    assert close["decisive"] is False  # 0.0017 ± 0.0093: a tie
    clear = lambda_comparison(runs({0.1: [0.60, 0.62, 0.61], 1.0: [0.50, 0.51, 0.50]}), [0.1, 1.0], name)
    assert clear["anchor_lambda"] == 1.0 and clear["decisive"] is True


def test_command_line_round_trip():
    from trl_anchor.scripts.caption_study import make_parser

    config = CaptionStudyConfig(contests=[514, 518], anchor_lambdas=[0.5, 2.0], max_steps=4, report_dir="r")
    command = regenerating_command(config)
    assert command.startswith("trl-anchor caption-study ")
    (parsed,) = make_parser().parse_args_and_config(args=command.split()[2:])
    assert asdict(parsed) == asdict(config)


# ------------------------------------------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def tiny_bert_dir(tmp_path_factory, minilm_dir):
    """A 1-layer BERT with the MiniLM tokenizer: the study's pipeline at a fraction of MiniLM's cost."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification, set_seed

    tokenizer = AutoTokenizer.from_pretrained(minilm_dir)
    set_seed(0)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        num_labels=1,
    )
    path = tmp_path_factory.mktemp("tiny_bert")
    BertForSequenceClassification(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


CONTESTS = [514, 518, 520, 521, 522]  # 1 train, 2 validation and 2 test contests


def _reduced(tmp_path, tiny_bert_dir, caption_data_dir, name, **kwargs):
    return CaptionStudyConfig(
        data_dir=str(caption_data_dir),
        report_dir=str(tmp_path / name / "report"),
        output_dir=str(tmp_path / name / "work"),
        model_name_or_path=str(tiny_bert_dir),
        contests=CONTESTS,
        test_size=0.4,
        validation_size=0.4,
        train_pairs_per_contest=16,
        max_steps=2,
        per_device_train_batch_size=8,
        anchor_lambdas=[0.1, 1.0],
        anchor_fractions=[0.5],
        eval_captions_per_contest=25,
        validation_captions_per_contest=15,
        eval_pairs_per_contest=40,
        **kwargs,
    )


def test_reduced_study_end_to_end(tmp_path, tiny_bert_dir, caption_data_dir):
    from trl_anchor.cli import main as cli_main

    config = _reduced(tmp_path, tiny_bert_dir, caption_data_dir, "first")
    # `trl-anchor caption-study` itself, with the flags that reproduce `config`.
    assert cli_main([*regenerating_command(config).split()[1:], "--output_dir", config.output_dir]) == 0
    results = json.loads((tmp_path / "first" / "report" / "results.json").read_text())

    splits = results["splits"]
    assert [len(splits[name]) for name in ("train", "validation", "test")] == [1, 2, 2]
    assert sorted(splits["train"] + splits["validation"] + splits["test"]) == CONTESTS
    chosen = results["selection"]["anchor_lambda"]
    assert chosen in (0.1, 1.0)
    headline = ["trl_bt", "bt", "gaussian", f"anchors_lambda{chosen:g}"]
    assert set(results["runs"]) == {
        *headline,
        *(f"{name}_seed1" for name in headline),
        "anchors_lambda0.1",
        "anchors_lambda1",
        f"anchors_lambda{chosen:g}_fraction0.5",
    }
    for name, run in results["runs"].items():
        assert run["training"]["steps"] == 2
        assert run["training"]["seed"] == (1 if name.endswith("_seed1") else 0)
    for arm in ARMS:
        summary = results["summary"][arm]
        for metric in METRICS:
            if arm in ("trl_bt", "bt") and metric in GAUSSIAN_ONLY:
                assert metric not in summary
            else:
                assert summary[metric]["n"] == 2 and np.isfinite(summary[metric]["mean"]), (arm, metric)
    assert 0.0 <= results["summary"]["bt"]["top_vs_far_auc"]["mean"] <= 1.0
    # A headline arm's metrics are the mean over its two training seeds, contest by contest, then over contests.
    for arm, name in zip(ARMS, headline, strict=True):
        seeds = [results["runs"][n]["test"]["per_contest"] for n in (name, f"{name}_seed1")]
        by_contest = [np.mean([s[str(c)]["kendall_tau"] for s in seeds]) for c in splits["test"]]
        assert results["summary"][arm]["kendall_tau"]["mean"] == pytest.approx(np.mean(by_contest))
        assert results["summary"][arm]["kendall_tau"]["se"] == pytest.approx(np.std(by_contest, ddof=1) / np.sqrt(2))
    assert results["runs"]["trl_bt"]["test"]["per_contest"] != results["runs"]["bt"]["test"]["per_contest"]
    gain = results["data"]["vote_nll_gain_over_constant"]
    anchored = results["headline_per_contest"]["gaussian+anchors"]
    assert gain["n"] == len(anchored) == 2
    assert np.mean([anchored[c]["vote_nll"] for c in anchored]) == pytest.approx(
        results["data"]["constant_vote_nll"] - gain["mean"]
    )

    # The oracles of the held-out votes: nested fits, so each is at least as good as the one with fewer parameters.
    for split in ("test", "validation"):
        ceiling = results["data"]["vote_ceiling"][split]
        assert sorted(ceiling["per_contest"]) == sorted(results["data"]["pools"][split])
        for contest in ceiling["per_contest"].values():
            assert contest["saturated_nll"] <= contest["oracle_mean_nll"] + 1e-9
            assert contest["std_lr"] >= 0 and contest["mean_lr"] >= 0
        combined = ceiling["combined"]["std"]
        assert combined["df"] == sum(c["df"] for c in ceiling["per_contest"].values())
    # What a ranking as good as the anchored arm's allows, per test contest, and on the grid of τ.
    test_ceiling = results["data"]["vote_ceiling"]["test"]
    for contest in test_ceiling["per_contest"].values():
        assert contest["ranking_limited_gain"] >= -1e-6
        grid = [contest[f"ranking_gain_{t:g}"] for t in (0.05, 0.1, 0.2, 0.3, 0.5)]
        assert grid == sorted(grid)
    assert test_ceiling["anchored_minus_ranking_limit"]["n"] == 2
    assert "ranking_limited_gain" not in results["data"]["vote_ceiling"]["validation"]["summary"]
    assert results["data"]["vote_ceiling"]["test"]["summary"]["constant_nll"]["mean"] == pytest.approx(
        results["data"]["constant_vote_nll"]
    )

    report = tmp_path / "first" / "report"
    readme = (report / "README.md").read_text()
    assert "## What the votes allow" in readme and "**What the votes allow" in readme
    assert results["command"] in readme
    # What the report states comes from the run's own records: machine, budget, λ tie, t-based calls, multiplicity.
    environment = results["environment"]
    assert environment["cpu_count"] == os.cpu_count() and environment["torch_threads"] == 1
    assert f"with 1 torch thread(s) on a {environment['device']} machine with {os.cpu_count()} CPU cores" in readme
    assert "2 steps (max_steps)" in readme and "2-core" not in readme and "bit-identical" not in readme
    selection = results["selection"]
    assert selection["difference"]["n"] == 2 and ("**a tie**" in readme) == (not selection["decisive"])
    assert "A 95% interval is mean ± t·SE with t = 12.71, the Student quantile for 2 contests" in readme
    comparisons = sum(diff is not None for diffs in results["differences"].values() for diff in diffs.values())
    assert comparisons > 0 and "| p (t-test) | at 5% | after Holm |" in readme
    assert f"Multiplicity: the table makes {comparisons} comparisons" in readme
    assert "| partial Spearman σ vs spread given crowd mean |" in readme
    assert results["data"]["sources"]["unit"] == "files" and "Source checks" in readme
    for contest in CONTESTS:
        assert str(contest) in readme
    for png in ("arms.png", "ablations.png", "sigma_vs_spread.png", "mu.png", "ranking_limit.png"):
        size = (report / png).stat().st_size
        assert 5_000 < size < 300_000, (png, size)
    # Resuming reuses every run's cached scores and reproduces the numbers.
    resumed = run_caption_study(config, show_progress=False)
    assert all(run["training"].get("from_cache") for run in resumed["runs"].values())
    assert resumed["summary"] == results["summary"]

    # Retraining from scratch elsewhere reproduces them too (deterministic CPU training at a fixed thread count).
    fresh = run_caption_study(_reduced(tmp_path, tiny_bert_dir, caption_data_dir, "second"), show_progress=False)
    assert not any(run["training"].get("from_cache") for run in fresh["runs"].values())
    assert fresh["summary"] == results["summary"]
    assert fresh["runs"]["anchors_lambda1"]["validation"] == results["runs"]["anchors_lambda1"]["validation"]


def test_runs_of_further_training_seeds_are_labelled_with_their_seed():
    from trl_anchor.studies.caption_study.config import BASELINE_RUNS, anchored_run

    anchored = anchored_run(0.1)
    assert anchored.label == "Gaussian + anchors, λ=0.1, 100% anchored"
    assert anchored.with_seed(1).label == "Gaussian + anchors, λ=0.1, 100% anchored, seed 1"
    assert [run.with_seed(2).label for run in BASELINE_RUNS] == [
        "TRL RewardTrainer, hard labels, seed 2", "BT, soft labels, seed 2", "Gaussian, no anchors, seed 2"
    ]
