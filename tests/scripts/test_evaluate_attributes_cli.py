"""`trl-anchor evaluate` with multi-attribute reward models: per-attribute metrics against scipy, and one clear error
for each combination it refuses."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import DatasetDict, load_dataset
from scipy.stats import norm, pearsonr, spearmanr
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from tests.conftest import tiny_gpt2_config
from trl_anchor import GaussianRewardModel, score_responses
from trl_anchor.cli import main as cli
from trl_anchor.data import load_helpsteer2

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "helpsteer2"
REWARDBENCH = Path(__file__).resolve().parents[1] / "fixtures" / "rewardbench" / "sample.jsonl"
ATTRS = ["helpfulness", "correctness", "coherence", "complexity", "verbosity"]
WEIGHTS = [0.65, 0.8, 0.45, 0.55, -0.4]
# Different cut points per attribute, around the untrained model's μ, so that using the recorded ones matters.
THRESHOLDS = [[-1.0 + 0.1 * a, -0.3, 0.2 + 0.05 * a, 0.9] for a in range(len(ATTRS))]
MIDPOINTS = [0.5, 1.5, 2.5, 3.5]


@pytest.fixture(scope="module")
def models(tmp_path_factory, tokenizer_dir):
    """A 5-attribute Gaussian model, its MSE counterpart and a scalar Gaussian one, tiny GPT-2s with pad = EOS."""
    root = tmp_path_factory.mktemp("attribute_models")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    tokenizer.pad_token = tokenizer.eos_token
    config = dict(pad_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    gaussian = GaussianRewardModel.from_config(tiny_gpt2_config(tokenizer, num_labels=5, **config), attributes=ATTRS)
    with torch.no_grad():
        gaussian.variance_head.weight.normal_(std=0.1)  # σ varies by response, within a few times its start
    gaussian.record_training_settings(
        reward_type="gaussian", attribute_weights=WEIGHTS, attribute_thresholds=THRESHOLDS, max_rating=4,
        loss_type="ordinal",
    )
    mse = AutoModelForSequenceClassification.from_config(tiny_gpt2_config(
        tokenizer, num_labels=5, problem_type="regression", id2label=dict(enumerate(ATTRS)), **config
    ))
    mse.config.attribute_reward = {"attributes": ATTRS, "attribute_weights": WEIGHTS, "attribute_thresholds": None,
                                   "max_rating": 4, "loss_type": "mse"}
    scalar = GaussianRewardModel.from_config(tiny_gpt2_config(tokenizer, **config))
    for name, model in (("gaussian", gaussian), ("mse", mse), ("scalar", scalar)):
        model.save_pretrained(root / name)
        tokenizer.save_pretrained(root / name)
    return root


def _scores(model_dir: Path, dataset, column="response"):
    model = GaussianRewardModel.from_pretrained(model_dir) if model_dir.name == "gaussian" else (
        AutoModelForSequenceClassification.from_pretrained(model_dir))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return score_responses(model.eval(), tokenizer, dataset[column], dataset["prompt"])


def _ordinal_nll(mean, std, ratings, thresholds) -> float:
    edges = np.array([-np.inf, *thresholds, np.inf])
    lo, hi = (edges[ratings] - mean) / std, (edges[ratings + 1] - mean) / std
    p = np.where(lo > 0, norm.sf(lo) - norm.sf(hi), norm.cdf(hi) - norm.cdf(lo))  # no cancellation in the tails
    return float(-np.log(p).mean())


def test_helpsteer2_gaussian_and_mse_models_match_scipy(models, tmp_path):
    out = tmp_path / "eval"
    code = cli([
        "evaluate", "--model_name_or_path", str(models / "gaussian"), str(models / "mse"),
        "--dataset_adapter", "helpsteer2", "--dataset_path", str(FIXTURES / "validation.jsonl"),
        "--preference_dataset", str(FIXTURES / "preference.jsonl"), "--dataset_split", "validation",
        "--output_dir", str(out), "--batch_size", "3",  # the last batch is partial
    ])
    assert code == 0
    rated = load_helpsteer2(str(FIXTURES / "validation.jsonl"), subset="rated")
    pairs = load_helpsteer2(str(FIXTURES / "preference.jsonl"), split="validation")
    result = json.loads((out / "gaussian" / "evaluation.json").read_text())
    assert result["reward_type"] == "gaussian" and result["num_rated"] == 10 and result["num_pairs"] == len(pairs) == 2
    metrics, scores = result["metrics"], _scores(models / "gaussian", rated)
    for a, name in enumerate(ATTRS):
        ratings = np.asarray(rated[name])
        assert metrics[f"{name}/spearman"] == pytest.approx(spearmanr(scores.mean[:, a], ratings).statistic, abs=1e-9)
        assert metrics[f"{name}/pearson"] == pytest.approx(pearsonr(scores.mean[:, a], ratings).statistic, abs=1e-6)
        expected = _ordinal_nll(scores.mean[:, a], scores.std[:, a], ratings, THRESHOLDS[a])
        assert metrics[f"{name}/ordinal_nll"] == pytest.approx(expected, rel=1e-5)
    w = np.asarray(WEIGHTS)
    chosen, rejected = _scores(models / "gaussian", pairs, "chosen"), _scores(models / "gaussian", pairs, "rejected")
    gap = chosen.mean @ w - rejected.mean @ w
    z = gap / np.sqrt(chosen.variance @ w**2 + rejected.variance @ w**2)
    y = np.asarray(pairs["soft_label"])
    assert metrics["pairs/accuracy"] == pytest.approx(np.mean(gap > 0))
    nll = -(y * norm.logcdf(z) + (1 - y) * norm.logcdf(-z)).mean()
    assert metrics["pairs/soft_label_nll"] == pytest.approx(nll, rel=1e-5)
    assert "| helpfulness |" in (out / "gaussian" / "evaluation.md").read_text()

    # The MSE model has no σ and a single-file dataset has no other split to measure its residual RMSE on: its
    # probabilistic metrics are left out and the output says so.
    mse = json.loads((out / "mse" / "evaluation.json").read_text())
    assert mse["reward_type"] == "mse" and mse["residual_std"] is None
    assert not any(key.endswith(("ordinal_nll", "ece")) for key in mse["metrics"])
    assert any("no ordinal NLL" in note for note in mse["notes"])
    assert "no ordinal NLL" in (out / "mse" / "evaluation.md").read_text()
    mse_scores = _scores(models / "mse", rated)
    assert mse["metrics"]["verbosity/spearman"] == pytest.approx(
        spearmanr(mse_scores.mean[:, 4], rated["verbosity"]).statistic, abs=1e-9
    )
    comparison = json.loads((out / "comparison.json").read_text())["attributes"]
    assert comparison["gaussian"] == pytest.approx(metrics) and comparison["mse"] == pytest.approx(mse["metrics"])
    assert "| coherence |" in (out / "comparison.md").read_text()


def test_mse_model_gets_sigma_from_the_reference_split(models, tmp_path):
    data = DatasetDict({
        "train": load_dataset("json", data_files=str(FIXTURES / "train.jsonl"), split="train"),
        "validation": load_dataset("json", data_files=str(FIXTURES / "validation.jsonl"), split="train"),
    })
    data["validation_pairs"] = data["validation"].select(range(0, 10, 2)).map(
        lambda row, i: {"chosen": row["response"], "rejected": data["validation"][i * 2 + 1]["response"],
                        "soft_label": [0.9, 0.2, 0.7, 1.0, 0.5][i]},
        with_indices=True, remove_columns=data["validation"].column_names[1:],
    )
    data.save_to_disk(tmp_path / "data")
    out = tmp_path / "eval"
    # No --dataset_split: the default `test` is absent, so the held-out `validation` split (and its pairs) is used.
    code = cli(["evaluate", "--model_name_or_path", str(models / "mse"), "--dataset_name", str(tmp_path / "data"),
                "--output_dir", str(out)])
    assert code == 0
    result = json.loads((out / "evaluation.json").read_text())
    assert result["split"] == "validation" and result["num_rated"] == 10
    reference, rated = _scores(models / "mse", data["train"]), _scores(models / "mse", data["validation"])
    expected_std = [np.sqrt(np.mean((reference.mean[:, a] - np.asarray(data["train"][name])) ** 2))
                    for a, name in enumerate(ATTRS)]
    assert result["residual_std"] == pytest.approx(expected_std, rel=1e-6)
    for a, name in enumerate(ATTRS):
        expected = _ordinal_nll(rated.mean[:, a], expected_std[a], np.asarray(data["validation"][name]), MIDPOINTS)
        assert result["metrics"][f"{name}/ordinal_nll"] == pytest.approx(expected, rel=1e-5)
    pairs = data["validation_pairs"]
    gap = (_scores(models / "mse", pairs, "chosen").mean - _scores(models / "mse", pairs, "rejected").mean) @ WEIGHTS
    labels = np.asarray(pairs["soft_label"])
    decided = labels != 0.5  # a 0.5 label has no majority side
    assert result["num_pairs"] == 5
    assert result["metrics"]["pairs/accuracy"] == pytest.approx(np.mean(((gap > 0) == (labels > 0.5))[decided]))
    assert "pairs/soft_label_nll" not in result["metrics"]  # no σ of the combined reward


def test_missing_attribute_column_names_column_and_model(models, tmp_path):
    rows = load_dataset("json", data_files=str(FIXTURES / "validation.jsonl"), split="train")
    rows.remove_columns("verbosity").to_json(tmp_path / "rated.jsonl")
    with pytest.raises(ValueError, match=r"lacks the column\(s\) \['verbosity'\] that the multi-attribute model .*"
                                         r"gaussian needs"):
        cli(["evaluate", "--model_name_or_path", str(models / "gaussian"), "--dataset_name",
             str(tmp_path / "rated.jsonl"), "--output_dir", str(tmp_path / "eval")])


@pytest.mark.parametrize(
    ("models_used", "extra", "message"),
    [
        (["scalar", "gaussian"], [], r"Cannot compare scalar reward models \[.*scalar'\] with multi-attribute models"),
        (["gaussian"], ["--rewardbench_file", str(REWARDBENCH)], "`--rewardbench_file` scores one scalar reward"),
        (["mse"], ["--update_model_card"], "`--update_model_card` is not supported for the multi-attribute models"),
        (["gaussian"], ["--use_margin"], "--use_margin apply to scalar reward models only"),
        (["scalar"], ["--preference_dataset", str(FIXTURES / "preference.jsonl")], "is for multi-attribute models"),
    ],
)
def test_refused_combinations_say_why(models, tmp_path, models_used, extra, message):
    with pytest.raises(ValueError, match=message):
        cli(["evaluate", "--model_name_or_path", *(str(models / m) for m in models_used), "--dataset_adapter",
             "helpsteer2", "--dataset_path", str(FIXTURES / "validation.jsonl"), "--output_dir", str(tmp_path),
             *extra])


def test_disagreements_subset_correlates_sigma_with_annotator_spread(models, tmp_path):
    code = cli(["evaluate", "--model_name_or_path", str(models / "gaussian"), "--dataset_adapter", "helpsteer2",
                "--dataset_path", str(FIXTURES / "disagreements.jsonl"), "--dataset_kwargs",
                '{"subset": "disagreements"}', "--output_dir", str(tmp_path)])
    assert code == 0
    metrics = json.loads((tmp_path / "evaluation.json").read_text())["metrics"]
    rated = load_helpsteer2(str(FIXTURES / "disagreements.jsonl"), subset="disagreements")
    scores = _scores(models / "gaussian", rated)
    expected = spearmanr(scores.std[:, 0], rated["helpfulness_std"]).statistic
    assert np.isfinite(expected) and metrics["helpfulness/sigma_spearman"] == pytest.approx(expected, abs=1e-9)
