import json

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from trl_anchor import GaussianRewardModel
from trl_anchor.cli import main as cli_main


def test_quickstart_end_to_end_offline(tmp_path):
    out = tmp_path / "quickstart"
    code = cli_main([
        "quickstart", "--output_dir", str(out), "--max_steps", "2", "--num_train_pairs", "32",
        "--num_eval_pairs", "16", "--per_device_train_batch_size", "8",
    ])
    assert code == 0
    summary = json.loads((out / "results.json").read_text())
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
    assert -1.0 <= metrics["sigma_spearman_vote_spread"] <= 1.0
    settings = GaussianRewardModel.from_pretrained(out / "gaussian_anchored").config.gaussian_reward
    assert settings["anchor_form"] == "counts" and settings["anchor_thresholds"] == [-1.0, 1.0]
