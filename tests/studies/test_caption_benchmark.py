import json

import numpy as np
import pytest
import torch
from conftest import tiny_gpt2_config

from trl_anchor import GaussianRewardModel
from trl_anchor.data.caption_contest import load_caption_contest
from trl_anchor.studies.caption_benchmark import (
    held_out_contests,
    load_benchmark_captions,
    run_caption_benchmark,
    sample_caption_pools,
)

CONTESTS = [538, 636]  # two of the smallest contest files keep the test fast


@pytest.fixture(scope="module")
def gaussian_rm_dir(tmp_path_factory, tokenizer_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    model = GaussianRewardModel.from_config(tiny_gpt2_config(tokenizer))
    with torch.no_grad():
        model.variance_head.weight.normal_(0.0, 1.0)  # σ varies across captions, so σ-aware policies differ
    path = tmp_path_factory.mktemp("caption_rm")
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_held_out_contests_are_the_test_split_of_the_training_loader(tmp_path, caption_data_dir):
    # A small copy of real files (first rows of six contests) so the loader's own split can be computed quickly.
    (tmp_path / "summaries").mkdir()
    files = sorted((caption_data_dir / "summaries").glob("*.csv"))[:6]
    for path in files:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()[:20]
        (tmp_path / "summaries" / path.name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "descriptions.csv").write_text((caption_data_dir / "descriptions.csv").read_text(encoding="utf-8"))
    for test_size, seed in [(0.34, 0), (0.5, 3)]:
        splits = load_caption_contest(tmp_path, output="captions", test_size=test_size, seed=seed, min_votes=2)
        assert held_out_contests(tmp_path, test_size=test_size, seed=seed) == sorted(set(splits["test"]["contest"]))


def test_pools_are_seeded_distinct_and_count_small_contests(caption_data_dir):
    captions = load_benchmark_captions(caption_data_dir, CONTESTS, min_votes=2, conversational=False)
    counts = np.asarray(captions["anchor_counts"])
    np.testing.assert_allclose(captions["p_funny"], counts[:, 2] / counts.sum(1))
    pools = sample_caption_pools(captions, pool_size=16, pools_per_contest=3, seed=5)
    again = sample_caption_pools(captions, pool_size=16, pools_per_contest=3, seed=5)
    np.testing.assert_array_equal(pools.rows, again.rows)
    assert pools.rows.shape == (6, 16) and pools.contests == [538] * 3 + [636] * 3
    contest_of_row = np.asarray(captions["contest"])
    for rows, contest in zip(pools.rows, pools.contests):
        assert len(set(rows.tolist())) == 16 and set(contest_of_row[rows]) == {contest}
    assert not np.array_equal(pools.rows, sample_caption_pools(captions, 16, 3, seed=6).rows)
    small = captions.select(list(range(10)) + list(range(len(captions) - 40, len(captions))))
    only_large = sample_caption_pools(small, pool_size=20, pools_per_contest=1)
    assert only_large.contests == [636] and only_large.report.dropped["fewer_captions_than_pool_size"] == 1


def test_caption_benchmark_command_on_real_captions(tmp_path, caption_data_dir, gaussian_rm_dir):
    from trl_anchor.cli import main

    output = tmp_path / "caption_bon"
    argv = [
        "bon", "--caption_benchmark", "--reward_model_path", str(gaussian_rm_dir),
        "--caption_data_dir", str(caption_data_dir), "--caption_contests", *map(str, CONTESTS),
        "--pool_size", "8", "--pools_per_contest", "2", "--min_votes", "20",
        "--policies", "mean", "quantile:0.1", "lcb:1.0", "random", "--output_dir", str(output),
    ]
    assert main(argv) == 0
    for name in ("caption_benchmark.json", "caption_benchmark.md", "caption_benchmark.png", "caption_pools.jsonl"):
        assert (output / name).stat().st_size > 0
    summary = json.loads((output / "caption_benchmark.json").read_text())
    pools = [json.loads(line) for line in (output / "caption_pools.jsonl").read_text().splitlines()]
    assert summary["ns"] == list(range(1, 9)) and summary["num_pools"] == len(pools) == 4
    assert {pool["contest"] for pool in pools} == set(CONTESTS)
    for metric in ("mean_vote", "p_funny"):
        curves = summary["curves"][metric]
        assert set(curves) == {"mean", "quantile:0.1", "lcb:1.0", "random", "oracle"}
        gold = np.array([pool[metric] for pool in pools])
        np.testing.assert_allclose(curves["random"]["mean"], [gold.mean()] * 8)
        np.testing.assert_allclose(curves["oracle"]["mean"][-1], gold.max(1).mean())
        for policy, curve in curves.items():
            assert all(o >= v - 1e-12 for o, v in zip(curves["oracle"]["mean"], curve["mean"])), (metric, policy)
        # The n = N value of `mean` is the crowd score of the caption with the highest μ in each pool.
        mu = np.array([pool["mu"] for pool in pools])
        picked = gold[np.arange(len(pools)), mu.argmax(1)]
        assert curves["mean"]["mean"][-1] == pytest.approx(picked.mean())
    assert summary["settings"]["contests"] == CONTESTS and summary["settings"]["conversational"] is True
    markdown = (output / "caption_benchmark.md").read_text()
    assert "| lcb:1.0 |" in markdown and "| oracle |" in markdown

    # Pools of one contest share captions: averaged per contest, standard errors over the two contests.
    contest = np.array([pool["contest"] for pool in pools])
    gold = np.array([pool["mean_vote"] for pool in pools])
    picked = gold[np.arange(len(pools)), np.array([pool["mu"] for pool in pools]).argmax(1)]
    per_contest = np.array([picked[contest == c].mean() for c in CONTESTS])
    mean_curve = summary["curves"]["mean_vote"]["mean"]
    assert mean_curve["se"][-1] == pytest.approx(per_contest.std(ddof=1) / np.sqrt(2))
    random = np.array([gold[contest == c].mean() for c in CONTESTS])
    assert summary["vs_random"]["mean_vote"]["mean"]["se"][-1] == pytest.approx(
        (per_contest - random).std(ddof=1) / np.sqrt(2)
    )
    assert "standard error over the 2 contests" in markdown

    # σ against the crowd's vote spread, per contest over its distinct pooled captions, raw and given the mean.
    captions = load_benchmark_captions(caption_data_dir, CONTESTS, min_votes=20, conversational=False)
    rows = zip(captions["contest"], captions["completion"], captions["anchor_counts"], strict=True)
    counts = {(c, t): n for c, t, n in rows}
    for k in CONTESTS:
        mine = [pool for pool in pools if pool["contest"] == k]
        sigma = {t: s for pool in mine for t, s in zip(pool["captions"], pool["sigma"], strict=True)}
        votes = np.array([counts[(k, t)] for t in sigma], dtype=float)
        spread = np.sqrt((votes / votes.sum(1, keepdims=True) * (np.arange(3) - _mean(votes)[:, None]) ** 2).sum(1))
        expected = _partial(np.array(list(sigma.values())), np.round(spread, 12), _mean(votes))
        assert summary["sigma"]["sigma_partial_spread"]["per_contest"][str(k)] == pytest.approx(expected, abs=1e-9)
    assert "partial Spearman ρ(σ, vote spread | crowd mean)" in markdown


def _mean(votes):
    return votes @ np.arange(3) / votes.sum(1)


def _partial(x, y, z):
    from scipy.stats import spearmanr

    r_xy, r_xz, r_yz = (spearmanr(a, b).statistic for a, b in ((x, y), (x, z), (y, z)))
    return (r_xy - r_xz * r_yz) / np.sqrt((1 - r_xz**2) * (1 - r_yz**2))


def test_the_benchmark_refuses_contests_the_model_trained_on(tmp_path, caption_data_dir, tokenizer):
    from trl_anchor import AnchorGaussianRewardConfig, AnchorGaussianRewardTrainer
    from trl_anchor.data.caption_contest import CaptionContestData
    from trl_anchor.data.provenance import TrainedOnEvaluationDataError

    data = CaptionContestData.from_dir(caption_data_dir, contests=[538])
    pairs = data.pairs(pairs_per_contest=8, conversational=False)
    args = AnchorGaussianRewardConfig(
        output_dir=str(tmp_path / "rm"), max_steps=1, per_device_train_batch_size=4, report_to="none",
        anchor_thresholds=[-1.0, 1.0], bf16=False, save_strategy="no",
    )
    trainer = AnchorGaussianRewardTrainer(
        model=GaussianRewardModel.from_config(tiny_gpt2_config(tokenizer)), args=args, train_dataset=pairs,
        processing_class=tokenizer,
    )
    trainer.save_model(str(tmp_path / "rm"))  # the record travels with the checkpoint
    kwargs = dict(data_dir=caption_data_dir, pool_size=4, pools_per_contest=1, policies=["mean"], plot=False)
    with pytest.raises(TrainedOnEvaluationDataError, match=r"trained on contests \[538\]"):
        run_caption_benchmark(str(tmp_path / "rm"), contests=[538, 636], **kwargs)
    assert run_caption_benchmark(str(tmp_path / "rm"), contests=[636], **kwargs).contests == [636]
    assert run_caption_benchmark(str(tmp_path / "rm"), contests=[538], allow_training_data=True, **kwargs).contests


def test_caption_benchmark_rejects_sigma_policies_for_a_bt_model(caption_data_dir, tokenizer):
    from transformers import GPT2ForSequenceClassification

    model = GPT2ForSequenceClassification(tiny_gpt2_config(tokenizer))
    with pytest.raises(ValueError, match="lcb:1.0.*needs σ"):
        run_caption_benchmark(model, caption_data_dir, tokenizer=tokenizer, contests=CONTESTS, policies=["lcb:1.0"])
    result = run_caption_benchmark(
        model, caption_data_dir, tokenizer=tokenizer, contests=[636], pool_size=4, pools_per_contest=1,
        policies=["mean", "random"], plot=False,
    )
    assert set(result.at_pool_size()["mean_vote"]) == {"mean", "random", "oracle"}


def test_anchored_model_is_also_judged_by_expected_vote_and_p_funny(caption_data_dir, tokenizer):
    from trl_anchor import GaussianRewardModel
    from trl_anchor.pipelines.best_of_n import policy_scores
    from trl_anchor.rewards.scoring import RewardScores

    torch.manual_seed(0)
    model = GaussianRewardModel.from_config(tiny_gpt2_config(tokenizer))
    with torch.no_grad():
        model.variance_head.weight.normal_(0.0, 1.0)
    model.record_training_settings(anchor_thresholds=[-1.0, 1.0])
    result = run_caption_benchmark(
        model, caption_data_dir, tokenizer=tokenizer, contests=[636], pool_size=4, pools_per_contest=1,
        policies=["mean", "random"], plot=False,
    )
    assert set(result.at_pool_size()["mean_vote"]) == {"mean", "random", "oracle", "expected_class", "p_top"}
    # The policy scores are the model's own expected class and P(top class).
    mean, std = np.array([[0.5, -0.2]]), np.array([[2.0, 0.3]])
    scores = RewardScores(mean=mean[0], variance=std[0] ** 2, thresholds=[-1.0, 1.0])
    np.testing.assert_allclose(policy_scores("p_top", mean, std, reward_config=model.config)[0], scores.p_top)
