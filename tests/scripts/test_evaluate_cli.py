import json
from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import ModelCard
from PIL import Image

from trl_anchor.cli import main as cli
from trl_anchor.pipelines.evaluation_plots import FIGURE_FILES

RECIPES = Path(__file__).resolve().parents[2] / "recipes" / "quickstart"
REWARDBENCH = Path(__file__).resolve().parents[1] / "fixtures" / "rewardbench" / "sample.jsonl"
SYNTHETIC = ["--dataset_adapter", "synthetic", "--dataset_kwargs", '{"num_train_pairs": 24, "num_eval_pairs": 40}']


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_causal_lm_dir):
    """The quickstart recipes' Gaussian and BT arms, trained for two steps on a tiny GPT-2 by `trl-anchor train`."""
    root = tmp_path_factory.mktemp("arms")
    for name, recipe in (("gaussian", "gaussian_minilm.yaml"), ("bt", "bt_minilm.yaml")):
        code = cli(
            [
                "train",
                "--config",
                str(RECIPES / recipe),
                "--model_name_or_path",
                str(tiny_causal_lm_dir),
                "--output_dir",
                str(root / name),
                *SYNTHETIC,
                "--max_steps",
                "2",
                "--eval_strategy",
                "no",
                "--per_device_train_batch_size",
                "8",
                "--learning_rate",
                "1e-3",
            ]
        )
        assert code == 0
    return root


def _assert_png(path: Path):
    image = np.asarray(Image.open(path).convert("L"), dtype=np.float64)
    assert min(image.shape) > 200 and image.std() > 5 and len(np.unique(image)) > 20, f"{path} looks blank"


def test_train_then_evaluate_writes_results_and_card(trained, tmp_path):
    model = trained / "gaussian"
    out = tmp_path / "eval"
    code = cli(
        [
            "evaluate",
            "--model_name_or_path",
            str(model),
            *SYNTHETIC,
            "--dataset_split",
            "test",
            "--disagreement_columns",
            "chosen_true_std",
            "rejected_true_std",
            "--output_dir",
            str(out),
            "--update_model_card",
            "--batch_size",
            "16",
        ]
    )
    assert code == 0
    results = json.loads((out / "evaluation.json").read_text())
    assert results["reward_type"] == "gaussian" and results["metrics"]["num_pairs"] == 40
    for key in (
        "accuracy",
        "brier",
        "soft_ce",
        "ece",
        "anchor_accuracy",
        "sigma_spearman_soft_label",
        "sigma_spearman_true_std",
    ):
        assert key in results["metrics"]
    assert len(results["sigma_deciles"]) == 10
    assert "| brier |" in (out / "evaluation.md").read_text()
    for name in FIGURE_FILES.values():
        _assert_png(out / name)
    card = ModelCard.load(model / "README.md")
    # An adapter is not a Hub dataset: the results go to the card text, not to model-index.
    assert not [r for r in card.data.eval_results or [] if r.dataset_type == "trl_anchor.data.synthetic"]
    brier = [
        r["value"]
        for r in card.data.to_dict()["trl_anchor_local_results"]
        if (r["dataset"], r["split"], r["metric"]) == ("trl_anchor.data.synthetic", "test", "Brier score")
    ]
    assert brier == [pytest.approx(results["metrics"]["brier"], abs=1e-6)]
    assert f"| trl_anchor.data.synthetic (local) | test | Brier score | {brier[0]:.4f} |" in card.text


def test_compare_arms_and_rewardbench(trained, tmp_path):
    out = tmp_path / "cmp"
    code = cli(
        [
            "evaluate",
            "--model_name_or_path",
            str(trained / "bt"),
            str(trained / "gaussian"),
            *SYNTHETIC,
            "--rewardbench_file",
            str(REWARDBENCH),
            "--output_dir",
            str(out),
            "--max_samples",
            "16",
        ]
    )
    assert code == 0
    table = (out / "comparison.md").read_text()
    assert table.startswith("| metric | bt | gaussian |") and "| Score |" in table
    _assert_png(out / "reliability_comparison.png")
    assert not (out / "bt" / FIGURE_FILES["sigma_deciles"]).exists()  # a BT arm has no σ
    _assert_png(out / "gaussian" / FIGURE_FILES["sigma_deciles"])
    summary = json.loads((out / "comparison.json").read_text())
    assert summary["pairs"]["bt"]["num_pairs"] == 16 and "mean_sigma" in summary["pairs"]["gaussian"]
    rewardbench = json.loads((out / "gaussian" / "rewardbench.json").read_text())
    assert rewardbench["complete"] is False and rewardbench["subsets"]["math-prm"]["count"] == 2


def test_local_file_with_single_split(trained, tmp_path):
    data = tmp_path / "prefs.jsonl"
    data.write_text(
        "".join(
            json.dumps({"prompt": "hi", "chosen": "a helpful answer", "rejected": "rude", "soft_label": 0.5 + 0.1 * i})
            + "\n"
            for i in range(5)
        )
    )
    assert (
        cli(
            [
                "evaluate",
                "--model_name_or_path",
                str(trained / "gaussian"),
                "--dataset_name",
                str(data),
                "--output_dir",
                str(tmp_path / "o"),
                "--plots",
                "false",
            ]
        )
        == 0
    )
    assert json.loads((tmp_path / "o" / "evaluation.json").read_text())["metrics"]["num_pairs"] == 5
    assert not (tmp_path / "o" / FIGURE_FILES["reliability"]).exists()


def test_arguments_are_checked(tmp_path):
    with pytest.raises(ValueError, match="at least one `--model_name_or_path`"):
        cli(["evaluate", "--dataset_name", "x.jsonl"])
    with pytest.raises(ValueError, match="Nothing to evaluate on"):
        cli(["evaluate", "--model_name_or_path", str(tmp_path)])
    with pytest.raises(ValueError, match="two columns"):
        cli(["evaluate", "--model_name_or_path", "m", "--dataset_name", "x", "--disagreement_columns", "a"])
