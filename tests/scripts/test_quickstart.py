import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from trl_anchor import GaussianRewardModel
from trl_anchor.cli import main as cli_main
from trl_anchor.data.caption_contest import quickstart_splits
from trl_anchor.rewards.scoring import score_responses
from trl_anchor.scripts.quickstart import README_END, README_START, render_report

REPO = Path(__file__).resolve().parents[2]


def test_quickstart_end_to_end_offline(tmp_path):
    out = tmp_path / "quickstart"
    code = cli_main([
        "quickstart", "--output_dir", str(out), "--max_steps", "2", "--num_train_pairs", "32",
        "--num_eval_pairs", "16", "--per_device_train_batch_size", "8", "--report_dir", str(tmp_path / "report"),
    ])
    assert code == 0
    summary = json.loads((out / "results.json").read_text())
    # The report states what the run recorded and renders from its own results.json.
    report = json.loads((tmp_path / "report" / "results.json").read_text())
    assert report == summary and report["environment"]["cpu_count"] == os.cpu_count()
    markdown = (tmp_path / "report" / "results.md").read_text()
    assert markdown == render_report(report)
    value = summary["results"]["gaussian+anchors"]["metrics"]["sigma_partial_true_std"]
    assert "| sigma_partial_true_std | — | " in markdown and f"{value:.4f} |" in markdown
    assert set(summary["results"]) == {"bt", "gaussian", "gaussian+anchors"}
    anchored = summary["results"]["gaussian+anchors"]["metrics"]
    for key in ("accuracy", "brier", "soft_ce", "ece", "sigma_spearman_true_std", "anchor_accuracy"):
        assert key in anchored
    assert "sigma_spearman_true_std" not in summary["results"]["bt"]["metrics"]
    table = (out / "results.md").read_text()
    assert "| sigma_spearman_true_std |" in table and "gaussian+anchors" in table
    assert (out / "gaussian_anchors" / "evaluation" / "reliability_diagram.png").stat().st_size > 0

    # The saved anchored model: μ through plain transformers equals GaussianRewardModel's μ.
    saved = out / "gaussian_anchored"
    tokenizer = AutoTokenizer.from_pretrained(saved)
    batch = tokenizer(["Here is a brilliant and clear answer about jazz."], return_tensors="pt")
    gaussian = GaussianRewardModel.from_pretrained(saved).eval()
    plain = AutoModelForSequenceClassification.from_pretrained(saved).eval()
    with torch.no_grad():
        torch.testing.assert_close(plain(**batch).logits, gaussian(**batch).logits, atol=1e-5, rtol=0)
    assert gaussian.config.gaussian_reward["anchor_thresholds"] == [-0.6, 0.6]


def test_quickstart_on_real_caption_votes(tmp_path, caption_data_dir):
    out = tmp_path / "captions"
    code = cli_main([
        "quickstart", "--data_dir", str(caption_data_dir), "--output_dir", str(out), "--arms", "gaussian+anchors",
        "--max_steps", "2", "--per_device_train_batch_size", "8",
    ])
    assert code == 0
    metrics = json.loads((out / "results.json").read_text())["results"]["gaussian+anchors"]["metrics"]
    # vote counts are the anchors (default thresholds [-1, 1]); σ is compared with each caption's vote spread
    assert metrics["num_anchored_responses"] == 2 * metrics["num_pairs"]
    model = GaussianRewardModel.from_pretrained(out / "gaussian_anchored").eval()
    settings = model.config.gaussian_reward
    assert settings["anchor_form"] == "counts" and settings["anchor_thresholds"] == [-1.0, 1.0]
    # The σ figures, recomputed from the saved model and the held-out split with scipy.
    test = quickstart_splits(caption_data_dir, seed=0)["test"]
    assert set(test["contest"]).isdisjoint(settings["training_data"]["train_contests"])
    tokenizer = AutoTokenizer.from_pretrained(out / "gaussian_anchored")
    sigma, counts = [], []
    for side in ("chosen", "rejected"):
        scores = score_responses(model, tokenizer, test[side], test["prompt"], batch_size=64)
        sigma.append(scores.std)
        counts.append(np.asarray(test[f"{side}_anchor_counts"], dtype=float))
    sigma, counts = np.concatenate(sigma), np.concatenate(counts)
    share = counts / counts.sum(1, keepdims=True)
    # One division of integer sums: equal fractions of different vote totals tie exactly, as ranks need.
    crowd = counts @ [0.0, 1.0, 2.0] / counts.sum(1)
    spread = np.round(np.sqrt(share @ np.array([0.0, 1.0, 4.0]) - crowd**2), 9)
    assert metrics["sigma_spearman_vote_spread"] == pytest.approx(spearmanr(sigma, spread).statistic, abs=1e-6)
    r_xy, r_xz, r_yz = (spearmanr(a, b).statistic for a, b in ((sigma, spread), (sigma, crowd), (spread, crowd)))
    partial = (r_xy - r_xz * r_yz) / np.sqrt((1 - r_xz**2) * (1 - r_yz**2))
    assert metrics["sigma_partial_vote_spread"] == pytest.approx(partial, abs=1e-6)
    assert "sigma_spearman_soft_label" not in metrics  # caption soft labels are not disagreement


def test_readme_quotes_the_committed_quickstart_result():
    readme = (REPO / "README.md").read_text()
    block = readme.split(README_START, 1)[1].split(README_END, 1)[0].strip()
    committed = json.loads((REPO / "reports" / "quickstart" / "results.json").read_text())
    assert block == (REPO / "reports" / "quickstart" / "results.md").read_text().strip()
    assert block == render_report(committed).strip()
