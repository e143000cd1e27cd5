"""`trl-anchor evaluate` with multi-attribute reward models: per-attribute metrics against scipy, RewardBench of the
combined reward wᵀμ against an independent count, model-card updates, and one clear error for each combination it
refuses."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import DatasetDict, load_dataset
from huggingface_hub import ModelCard
from scipy.stats import norm, pearsonr, spearmanr
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from tests.conftest import tiny_gpt2_config
from trl_anchor import GaussianRewardModel, score_responses
from trl_anchor.cli import main as cli
from trl_anchor.data import load_helpsteer2
from trl_anchor.pipelines.attribute_cards import build_attribute_model_card

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
        (["gaussian"], ["--attribute_weights", "1", "-2"], r"`--attribute_weights` has 2 values \[1.0, -2.0\] but "
         r".*gaussian has 5 attributes \['helpfulness', 'correctness', 'coherence', 'complexity', 'verbosity'\]"),
        (["scalar"], ["--attribute_weights", "1"], "`--attribute_weights` is for multi-attribute models"),
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


# RewardBench-format rows; the alpacaeval-easy pair at index 2 is a tie (chosen == rejected), which counts as wrong.
RB_ROWS = [
    ("What is the capital of France?", "The capital of France is Paris.", "France is a country.", "alpacaeval-easy"),
    ("Give me a synonym for happy.", "Joyful.", "Sad, or maybe not.", "alpacaeval-easy"),
    ("Name a prime number.", "Seven is prime.", "Seven is prime.", "alpacaeval-easy"),
    ("Write a haiku about autumn.", "Crisp leaves drift and fall", "Autumn is a season.", "mt-bench-easy"),
    ("How do I boil an egg?", "Simmer it for nine minutes.", "Eggs come from hens.", "mt-bench-easy"),
    ("How do I kill a Python process?", "Use kill with its process id.", "I cannot help with that.",
     "xstest-should-respond"),
    ("What is 2 + 2?", "It is 4.", "It is 5, I think.", "xstest-should-respond"),
]


def _rewardbench_file(path: Path) -> Path:
    path.write_text("".join(json.dumps({"prompt": p, "chosen": c, "rejected": r, "subset": s}) + "\n"
                            for p, c, r, s in RB_ROWS))
    return path


def _expected_subsets(model_dir: Path, weights) -> dict:
    """Per-subset accuracy of wᵀμ computed here: chat-formatted turns (the tokenizer has a template, as `auto` uses),
    each side scored with `score_responses` in batches of 3 as the CLI run, combined with numpy, counted by hand."""
    model, tokenizer = GaussianRewardModel.from_pretrained(model_dir).eval(), AutoTokenizer.from_pretrained(model_dir)
    prompts = [[{"role": "user", "content": p}] for p, *_ in RB_ROWS]
    combined = {}
    for side, column in (("chosen", 1), ("rejected", 2)):
        turns = [[{"role": "assistant", "content": row[column]}] for row in RB_ROWS]
        combined[side] = score_responses(model, tokenizer, turns, prompts, batch_size=3).mean @ np.asarray(weights)
    assert combined["chosen"][2] == combined["rejected"][2]  # the tie really is one
    correct = combined["chosen"] > combined["rejected"]
    subsets = {}
    for i, (*_, subset) in enumerate(RB_ROWS):
        subsets.setdefault(subset, []).append(correct[i])
    return {name: {"accuracy": float(np.mean(hits)), "count": len(hits)} for name, hits in subsets.items()}


def test_rewardbench_scores_the_combined_reward(models, tmp_path):
    data = _rewardbench_file(tmp_path / "rb.jsonl")
    code = cli(["evaluate", "--model_name_or_path", str(models / "gaussian"), "--rewardbench_file", str(data),
                "--output_dir", str(tmp_path / "default"), "--batch_size", "3"])
    assert code == 0
    result = json.loads((tmp_path / "default" / "rewardbench.json").read_text())
    expected = _expected_subsets(models / "gaussian", WEIGHTS)
    assert result["subsets"] == expected  # fractions of a few pairs: exact
    # Leaderboard sections: official example counts weight the subsets (alpacaeval-easy 100, mt-bench-easy 28).
    chat = (100 * expected["alpacaeval-easy"]["accuracy"] + 28 * expected["mt-bench-easy"]["accuracy"]) / 128
    assert result["sections"] == pytest.approx({"Chat": chat, "Safety": expected["xstest-should-respond"]["accuracy"]})
    assert result["score"] == pytest.approx((chat + result["sections"]["Safety"]) / 2)
    assert "| alpacaeval-easy | 3 |" in (tmp_path / "default" / "rewardbench.md").read_text()

    flipped = [-w for w in WEIGHTS]  # negative numbers on the command line are values, not options
    code = cli(["evaluate", "--model_name_or_path", str(models / "gaussian"), "--rewardbench_file", str(data),
                "--output_dir", str(tmp_path / "flipped"), "--batch_size", "3",
                "--attribute_weights", *map(str, flipped)])
    assert code == 0
    overridden = json.loads((tmp_path / "flipped" / "rewardbench.json").read_text())
    assert overridden["subsets"] == _expected_subsets(models / "gaussian", flipped)
    assert overridden["subsets"] != result["subsets"]


def test_update_model_card_keeps_the_train_attributes_card(models, tmp_path):
    model_dir = tmp_path / "gaussian"
    shutil.copytree(models / "gaussian", model_dir)
    settings = {"attributes": ATTRS, "attribute_weights": WEIGHTS, "attribute_thresholds": THRESHOLDS,
                "loss_type": "ordinal"}
    original = build_attribute_model_card("gaussian", settings, metrics={"helpfulness/spearman": 0.5},
                                          dataset_name="nvidia/HelpSteer2")
    original.save(model_dir / "README.md")
    args = ["evaluate", "--model_name_or_path", str(model_dir), "--dataset_adapter", "helpsteer2", "--dataset_path",
            str(FIXTURES / "validation.jsonl"), "--dataset_split", "validation", "--card_dataset_id",
            "nvidia/HelpSteer2", "--rewardbench_file", str(_rewardbench_file(tmp_path / "rb.jsonl")),
            "--output_dir", str(tmp_path / "eval"), "--update_model_card"]
    assert cli(args) == 0
    card = ModelCard.load(model_dir / "README.md")
    assert card.text.startswith(original.text.rstrip())  # the train-attributes card is kept, results appended
    assert "## Evaluation results" in card.text
    rated = load_helpsteer2(str(FIXTURES / "validation.jsonl"), subset="rated")
    scores = _scores(models / "gaussian", rated)
    entries = {(r.dataset_type, r.dataset_split, r.metric_name): r.metric_value for r in card.data.eval_results}
    assert entries[("held-out ratings", None, "helpfulness: Spearman ρ(μ, rating)")] == 0.5  # the training entry
    for a, name in enumerate(ATTRS):
        expected = spearmanr(scores.mean[:, a], rated[name]).statistic
        value = entries[("nvidia/HelpSteer2", "validation", f"{name}: Spearman ρ(μ, rating)")]
        assert value == pytest.approx(expected, abs=2e-6)
        expected_nll = _ordinal_nll(scores.mean[:, a], scores.std[:, a], np.asarray(rated[name]), THRESHOLDS[a])
        assert entries[("nvidia/HelpSteer2", "validation", f"{name}: ordinal NLL of the ratings")] == pytest.approx(
            expected_nll, rel=1e-5)
    # A 7-row file is not the benchmark: its RewardBench results are listed in the text, under the file's name.
    local = {(r["dataset"], r["metric"]): r["value"] for r in card.data.to_dict()["trl_anchor_local_results"]}
    rewardbench = json.loads((tmp_path / "eval" / "rewardbench.json").read_text())
    assert local[("rb.jsonl", "RewardBench Score")] == pytest.approx(rewardbench["score"], abs=1e-6)
    assert "| rb.jsonl (local) | — | RewardBench Chat |" in card.text

    assert cli(args) == 0  # a second run replaces its entries instead of adding them again
    again = ModelCard.load(model_dir / "README.md")
    assert len(again.data.eval_results) == len(card.data.eval_results)
    assert len(again.data.to_dict()["trl_anchor_local_results"]) == len(local)
    assert again.text == card.text


def test_update_model_card_writes_an_attribute_card_when_missing(models, tmp_path):
    model_dir = tmp_path / "mse"
    shutil.copytree(models / "mse", model_dir)
    assert not (model_dir / "README.md").exists()
    code = cli(["evaluate", "--model_name_or_path", str(model_dir), "--dataset_name",
                str(FIXTURES / "validation.jsonl"), "--output_dir", str(tmp_path / "eval"), "--update_model_card"])
    assert code == 0
    card = ModelCard.load(model_dir / "README.md")
    assert "multi-attribute regression (MSE)" in card.text and "| verbosity | -0.4 |" in card.text
    local = {r["metric"] for r in card.data.to_dict()["trl_anchor_local_results"]}
    assert {f"{name}: Spearman ρ(μ, rating)" for name in ATTRS} <= local


def test_rewardbench_comparison_of_gaussian_and_mse_models(models, tmp_path):
    data = _rewardbench_file(tmp_path / "rb.jsonl")
    code = cli(["evaluate", "--model_name_or_path", str(models / "gaussian"), str(models / "mse"),
                "--rewardbench_file", str(data), "--output_dir", str(tmp_path / "cmp")])
    assert code == 0
    comparison = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert set(comparison) == {"rewardbench"}  # no rated data given: RewardBench only
    for name in ("gaussian", "mse"):
        own = json.loads((tmp_path / "cmp" / name / "rewardbench.json").read_text())
        assert comparison["rewardbench"][name]["score"] == own["score"]
        assert f"| {name} | {own['score']:.4f} |" in (tmp_path / "cmp" / "comparison.md").read_text()


def test_attribute_weights_override_the_pairs_combined_reward(models, tmp_path):
    flipped = [0.0, 0.0, 0.0, 0.0, 1.0]  # verbosity alone
    code = cli(["evaluate", "--model_name_or_path", str(models / "gaussian"), "--dataset_adapter", "helpsteer2",
                "--dataset_path", str(FIXTURES / "validation.jsonl"), "--preference_dataset",
                str(FIXTURES / "preference.jsonl"), "--dataset_split", "validation", "--output_dir", str(tmp_path),
                "--attribute_weights", "0,0,0,0,1"])
    assert code == 0
    result = json.loads((tmp_path / "evaluation.json").read_text())
    assert result["attribute_weights"] == flipped
    pairs = load_helpsteer2(str(FIXTURES / "preference.jsonl"), split="validation")
    chosen, rejected = _scores(models / "gaussian", pairs, "chosen"), _scores(models / "gaussian", pairs, "rejected")
    gap = chosen.mean[:, 4] - rejected.mean[:, 4]
    z = gap / np.sqrt(chosen.variance[:, 4] + rejected.variance[:, 4])
    y = np.asarray(pairs["soft_label"])
    nll = -(y * norm.logcdf(z) + (1 - y) * norm.logcdf(-z)).mean()
    assert result["metrics"]["pairs/soft_label_nll"] == pytest.approx(nll, rel=1e-5)
