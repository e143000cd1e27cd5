import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import tiny_gpt2_config
from datasets import Dataset
from PIL import Image
from scipy.special import log_ndtr
from scipy.stats import spearmanr
from transformers import AutoModelForSequenceClassification

from trl_anchor.metrics import vote_spread
from trl_anchor.models.loading import load_reward_model
from trl_anchor.models.modeling_gaussian import GaussianRewardModel
from trl_anchor.pipelines.evaluation import evaluate_reward_model
from trl_anchor.pipelines.evaluation_plots import (
    FIGURE_FILES,
    plot_accuracy_by_sigma,
    plot_reliability_diagram,
    plot_sigma_vs_disagreement,
)

THRESHOLDS = [-0.5, 0.5]
_WORDS = [
    "the quick brown fox",
    "a helpful answer",
    "this is rude and wrong",
    "the cartoon cat",
    "numbers 1 2 3",
    "some people disagree",
    "step by step",
    "jumps over the lazy dog",
]


def _phi(x):
    return 0.5 * (1.0 + np.vectorize(math.erf)(np.asarray(x) / math.sqrt(2.0)))


def _pairs(n=36, seed=0, counts=True):
    rng = np.random.default_rng(seed)
    rows = {
        "prompt": [_WORDS[i % 8] + " ?" for i in range(n)],
        "chosen": [" ".join(rng.choice(_WORDS, size=1 + i % 3)) for i in range(n)],
        "rejected": [" ".join(rng.choice(_WORDS, size=1 + (i + 1) % 3)) for i in range(n)],
        "soft_label": np.round(rng.uniform(0.0, 1.0, n), 3).tolist(),
    }
    if counts:
        rows["chosen_anchor_counts"] = rng.integers(0, 6, (n, 3)).clip(min=[1, 0, 0]).tolist()
        rows["rejected_anchor_counts"] = rng.integers(0, 6, (n, 3)).clip(min=[0, 0, 1]).tolist()
    return Dataset.from_dict(rows)


@pytest.fixture(scope="module")
def tokenizer(tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tokenizer_dir)


@pytest.fixture(scope="module")
def gaussian_model(tokenizer):
    torch.manual_seed(0)
    model = GaussianRewardModel.from_config(tiny_gpt2_config(tokenizer))
    with torch.no_grad():  # a fresh head gives σ = 1 everywhere; spread it so σ varies across responses
        model.variance_head.weight.normal_(0.0, 0.5)
    model.record_training_settings(anchor_thresholds=THRESHOLDS)
    return model.eval()


@pytest.fixture(scope="module")
def gaussian_result(gaussian_model, tokenizer):
    return evaluate_reward_model(gaussian_model, tokenizer, _pairs(), batch_size=8)


def _direct_score(model, tokenizer, prompt, response):
    """Unbatched forward on `prompt + response + EOS`, the trainer's text format."""
    ids = tokenizer(prompt + response + tokenizer.eos_token, return_tensors="pt")
    with torch.no_grad():
        out = model(**ids)
    return out.logits[0, 0].item(), (out.variance[0].item() if hasattr(out, "variance") else None)


def test_scores_match_unbatched_forward(gaussian_model, gaussian_result, tokenizer):
    data = _pairs()
    for i in (0, 7, 20):
        mean, variance = _direct_score(gaussian_model, tokenizer, data[i]["prompt"], data[i]["rejected"])
        assert gaussian_result.pairs["rejected_mean"][i] == pytest.approx(mean, abs=1e-5)
        assert gaussian_result.pairs["rejected_std"][i] ** 2 == pytest.approx(variance, rel=1e-5)


def test_calibration_metrics_match_numpy(gaussian_result):
    pairs = gaussian_result.pairs
    z = (pairs["chosen_mean"] - pairs["rejected_mean"]) / np.sqrt(
        pairs["chosen_std"] ** 2 + pairs["rejected_std"] ** 2
    )
    probs = _phi(z)
    labels = np.asarray(_pairs()["soft_label"])
    np.testing.assert_allclose(pairs["probability"], probs, rtol=1e-9)

    brier = np.mean((probs - labels) ** 2)
    ce = -np.mean(labels * np.log(probs) + (1 - labels) * np.log(1 - probs))
    ece = 0.0
    for k in range(10):
        upper = probs <= (k + 1) / 10 if k == 9 else probs < (k + 1) / 10
        in_bin = (probs >= k / 10) & upper
        if in_bin.any():
            ece += in_bin.mean() * abs(probs[in_bin].mean() - labels[in_bin].mean())
    metrics = gaussian_result.metrics
    assert metrics["brier"] == pytest.approx(brier, rel=1e-9)
    assert metrics["soft_ce"] == pytest.approx(ce, rel=1e-9)
    assert metrics["ece"] == pytest.approx(ece, rel=1e-9)
    assert 0.0 < metrics["ece"] < 1.0 and metrics["num_pairs"] == 36


def _log_class_probs(mean, std):
    """log π_0..2 with scipy's log Φ; the middle class reflected into the lower tail where Φ keeps its digits."""
    z = (mean[:, None] - np.asarray(THRESHOLDS)) / std[:, None]
    upper, lower = np.where(z.sum(1) > 0, -z[:, 1], z[:, 0]), np.where(z.sum(1) > 0, -z[:, 0], z[:, 1])
    middle = log_ndtr(upper) + np.log1p(-np.exp(log_ndtr(lower) - log_ndtr(upper)))
    return np.stack([log_ndtr(-z[:, 0]), middle, log_ndtr(z[:, 1])], axis=1)


def _hits(probs, labels):
    return np.array([0.5 if y == 0.5 else float((p > 0.5) == (y > 0.5)) for p, y in zip(probs, labels, strict=True)])


def test_sigma_decile_accuracy(gaussian_result):
    pairs = gaussian_result.pairs
    pair_std = np.sqrt(pairs["chosen_std"] ** 2 + pairs["rejected_std"] ** 2)
    order = np.argsort(pair_std, kind="stable")
    hits = _hits(pairs["probability"], pairs["soft_label"])
    deciles = gaussian_result.sigma_deciles
    assert len(deciles) == 10 and sum(d["count"] for d in deciles) == 36
    start = 0
    for k, decile in enumerate(deciles):
        size = 36 // 10 + (1 if k < 36 % 10 else 0)
        group = order[start : start + size]
        start += size
        assert decile["count"] == size
        assert decile["accuracy"] == pytest.approx(hits[group].mean())
        assert decile["sigma_low"] == pytest.approx(pair_std[group].min())
    assert [d["mean_sigma"] for d in deciles] == sorted(d["mean_sigma"] for d in deciles)
    assert gaussian_result.metrics["accuracy"] == pytest.approx(hits.mean())


def test_anchor_accuracy_and_disagreement(gaussian_result):
    pairs, metrics, data = gaussian_result.pairs, gaussian_result.metrics, _pairs()
    mean = np.concatenate([pairs["chosen_mean"], pairs["rejected_mean"]])
    std = np.concatenate([pairs["chosen_std"], pairs["rejected_std"]])
    cdf = _phi((mean[:, None] - np.asarray(THRESHOLDS)) / std[:, None])
    class_probs = np.stack([1 - cdf[:, 0], cdf[:, 0] - cdf[:, 1], cdf[:, 1]], axis=1)
    counts = np.concatenate([data["chosen_anchor_counts"], data["rejected_anchor_counts"]])
    assert metrics["anchor_accuracy"] == pytest.approx(np.mean(class_probs.argmax(1) == counts.argmax(1)))
    assert metrics["num_anchored_responses"] == 72
    expected_nll = -np.mean((counts * _log_class_probs(mean, std)).sum(1) / counts.sum(1))
    assert metrics["anchor_nll"] == pytest.approx(expected_nll, rel=1e-6)

    labels = np.asarray(data["soft_label"])
    pair_std = np.sqrt(pairs["chosen_std"] ** 2 + pairs["rejected_std"] ** 2)
    rho = spearmanr(pair_std, 1 - np.abs(2 * labels - 1)).statistic
    assert metrics["sigma_spearman_soft_label"] == pytest.approx(rho, abs=1e-12)
    spread = [
        np.sqrt(np.average((np.arange(3) - np.average(np.arange(3), weights=c)) ** 2, weights=c)) for c in counts
    ]
    spread = np.round(spread, 9)  # exact ties between equal spreads of different vote totals
    assert metrics["sigma_spearman_vote_spread"] == pytest.approx(spearmanr(std, spread).statistic, abs=1e-12)
    crowd_mean = (counts * np.arange(3)).sum(1) / counts.sum(1)
    assert metrics["sigma_partial_vote_spread"] == pytest.approx(_partial(std, spread, crowd_mean), abs=1e-9)


def _partial(x, y, z):
    """Partial Spearman correlation by the textbook formula on scipy's rank correlations."""
    r_xy, r_xz, r_yz = (spearmanr(a, b).statistic for a, b in ((x, y), (x, z), (y, z)))
    return (r_xy - r_xz * r_yz) / math.sqrt((1 - r_xz**2) * (1 - r_yz**2))


def test_soft_labels_built_from_two_vote_distributions_are_not_called_disagreement(gaussian_model, tokenizer):
    data = _pairs(20)
    chosen, rejected = np.asarray(data["chosen_anchor_counts"]), np.asarray(data["rejected_anchor_counts"])

    def brute_force(a, b):  # P(vote_a > vote_b) + ½ P(tie) over all pairs of individual votes
        diff = np.subtract.outer(np.repeat([1, 2, 3], a), np.repeat([1, 2, 3], b))
        return float((diff > 0).mean() + 0.5 * (diff == 0).mean())

    derived = data.remove_columns("soft_label").add_column(
        "soft_label", [brute_force(a, b) for a, b in zip(chosen, rejected, strict=True)]
    )
    result = evaluate_reward_model(gaussian_model, tokenizer, derived)
    assert "sigma_spearman_soft_label" not in result.metrics
    assert any("independent vote distributions" in note for note in result.notes)
    assert "sigma_partial_vote_spread" in result.metrics
    # Annotators' own soft labels on the same pairs are disagreement, and are correlated.
    assert "sigma_spearman_soft_label" in evaluate_reward_model(gaussian_model, tokenizer, data).metrics


def test_vote_spread_and_reference_columns(gaussian_model, tokenizer):
    assert vote_spread([[0, 5, 0], [3, 0, 3], [1, 1, 1]]).tolist() == pytest.approx([0.0, 1.0, math.sqrt(2 / 3)])
    data = _pairs(12, counts=False)
    data = data.add_column("chosen_true_std", np.linspace(0.1, 2.0, 12).tolist())
    data = data.add_column("rejected_true_std", np.linspace(2.0, 0.1, 12).tolist())
    data = data.add_column("chosen_true_mean", np.cos(np.arange(12.0)).tolist())
    data = data.add_column("rejected_true_mean", np.sin(np.arange(12.0)).tolist())
    result = evaluate_reward_model(
        gaussian_model,
        tokenizer,
        data,
        disagreement_columns=("chosen_true_std", "rejected_true_std"),
        disagreement_mean_columns=("chosen_true_mean", "rejected_true_mean"),
    )
    assert "sigma_spearman_true_std" in result.metrics and "sigma_spearman_vote_spread" not in result.metrics
    assert "anchor_accuracy" not in result.metrics
    sigma = np.concatenate([result.pairs["chosen_std"], result.pairs["rejected_std"]])
    truth = np.concatenate([data["chosen_true_std"], data["rejected_true_std"]])
    control = np.concatenate([data["chosen_true_mean"], data["rejected_true_mean"]])
    assert result.metrics["sigma_partial_true_std"] == pytest.approx(_partial(sigma, truth, control), abs=1e-9)


def test_a_model_is_not_evaluated_on_its_training_data(tokenizer, gaussian_model):
    from trl_anchor.data.provenance import TrainedOnEvaluationDataError, record_training_data

    data = _pairs(12).add_column("contest", [700 + i % 3 for i in range(12)])
    train = data.filter(lambda c: c != 702, input_columns="contest")
    validation = data.filter(lambda c: c == 702, input_columns="contest")
    model = GaussianRewardModel.from_config(gaussian_model.config).eval()
    record_training_data(model, train, validation)
    assert model.config.gaussian_reward["training_data"]["train_contests"] == [700, 701]
    with pytest.raises(TrainedOnEvaluationDataError, match=r"trained on contests \[700, 701\]"):
        evaluate_reward_model(model, tokenizer, data)
    rebuilt = Dataset.from_dict(train.remove_columns("contest").to_dict())  # same rows, built anew
    with pytest.raises(TrainedOnEvaluationDataError, match="training set"):
        evaluate_reward_model(model, tokenizer, rebuilt)
    assert evaluate_reward_model(model, tokenizer, data, allow_training_data=True).metrics["num_pairs"] == 12
    result = evaluate_reward_model(model, tokenizer, validation)
    assert any("validation data" in note and "[702]" in note for note in result.notes)


def test_anchor_forms_and_weights(gaussian_model, tokenizer, monkeypatch):
    data = _pairs(10, counts=False)
    data = data.add_column("chosen_score", [1.0, -1.0, 0.0, 2.0, None, 0.7, -0.2, 0.1, 0.9, -3.0])
    data = data.add_column("rejected_score", [0.0] * 4 + [None] + [0.3] * 5)
    data = data.add_column("anchor_weight", [1.0] * 4 + [0.0] + [1.0] * 5)
    result = evaluate_reward_model(gaussian_model, tokenizer, data)
    assert result.metrics["num_anchored_responses"] == 18
    assert any("2 responses without anchors" in note for note in result.notes)
    # Without thresholds the anchors cannot be classified: reported, not guessed.
    settings = {k: v for k, v in gaussian_model.config.gaussian_reward.items() if k != "anchor_thresholds"}
    monkeypatch.setattr(gaussian_model.config, "gaussian_reward", settings)
    result = evaluate_reward_model(gaussian_model, tokenizer, data)
    assert "anchor_accuracy" not in result.metrics and any("anchor thresholds" in n for n in result.notes)
    result = evaluate_reward_model(gaussian_model, tokenizer, data, anchor_thresholds=[0.5])
    assert result.metrics["num_anchored_responses"] == 18


def test_bad_input_is_named(gaussian_model, tokenizer):
    data = _pairs(6, counts=False)
    with pytest.raises(ValueError, match="row 2 has 1.5"):
        evaluate_reward_model(
            gaussian_model, tokenizer, data.map(lambda r, i: {"soft_label": 1.5 if i == 2 else 0.5}, with_indices=True)
        )
    with pytest.raises(ValueError, match="no `rejected` column"):
        evaluate_reward_model(gaussian_model, tokenizer, data.remove_columns("rejected"))
    with pytest.raises(ValueError, match="not its pair"):
        evaluate_reward_model(gaussian_model, tokenizer, data.add_column("chosen_anchor", [0] * 6))
    with pytest.raises(ValueError, match="0..2"):
        bad = data.add_column("chosen_anchor", [0, 1, 2, 3, 0, 0]).add_column("rejected_anchor", [0] * 6)
        evaluate_reward_model(gaussian_model, tokenizer, bad)


def test_bt_checkpoint_and_gaussian_checkpoint(gaussian_model, tokenizer, tmp_path):
    torch.manual_seed(1)
    AutoModelForSequenceClassification.from_config(tiny_gpt2_config(tokenizer)).save_pretrained(tmp_path / "bt")
    tokenizer.save_pretrained(tmp_path / "bt")
    bt, bt_tokenizer = load_reward_model(str(tmp_path / "bt"))
    assert not isinstance(bt, GaussianRewardModel)
    data = _pairs(16)
    result = evaluate_reward_model(bt, bt_tokenizer, data)
    assert result.reward_type == "bt" and result.sigma_deciles is None and not result.disagreement
    gap = result.pairs["chosen_mean"] - result.pairs["rejected_mean"]
    np.testing.assert_allclose(result.pairs["probability"], 1 / (1 + np.exp(-gap)), rtol=1e-9)
    assert {"accuracy", "brier", "soft_ce", "ece"} <= set(result.metrics) and "anchor_accuracy" not in result.metrics
    written = result.save(tmp_path / "bt_eval")
    assert set(written) == {"json", "markdown", "reliability"}

    gaussian_model.save_pretrained(tmp_path / "gauss")
    tokenizer.save_pretrained(tmp_path / "gauss")
    loaded, _ = load_reward_model(str(tmp_path / "gauss"))
    assert isinstance(loaded, GaussianRewardModel)
    assert evaluate_reward_model(loaded, tokenizer, data).reward_type == "gaussian"


def test_conversational_implicit_prompt(gaussian_model, tokenizer):
    data = Dataset.from_dict(
        {
            "chosen": [[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "a helpful answer"}]] * 3,
            "rejected": [[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "rude"}]] * 3,
        }
    )
    result = evaluate_reward_model(gaussian_model, tokenizer, data)
    ids = tokenizer.apply_chat_template(data[0]["chosen"], tokenize=True, return_dict=True, return_tensors="pt")
    with torch.no_grad():
        expected = gaussian_model(**ids).logits[0, 0].item()
    assert result.pairs["chosen_mean"][0] == pytest.approx(expected, abs=1e-5)
    assert any("no disagreement" in note for note in result.notes)


def _assert_png(path: Path):
    image = np.asarray(Image.open(path).convert("L"), dtype=np.float64)
    assert image.shape[0] > 200 and image.shape[1] > 200
    assert image.std() > 5 and len(np.unique(image)) > 20, f"{path.name} looks blank"


def test_figures_render_with_labels(gaussian_result, tmp_path):
    written = gaussian_result.save(tmp_path)
    for key, name in FIGURE_FILES.items():
        assert written[key] == tmp_path / name
        _assert_png(written[key])
    saved = json.loads(written["json"].read_text())
    assert saved["metrics"]["brier"] == pytest.approx(gaussian_result.metrics["brier"])
    assert "| brier |" in written["markdown"].read_text()

    figures = [
        plot_reliability_diagram(gaussian_result),
        plot_sigma_vs_disagreement(gaussian_result),
        plot_accuracy_by_sigma(gaussian_result),
    ]
    for figure in figures:
        labelled = [ax for ax in figure.axes if ax.get_xlabel() and ax.get_ylabel()]
        assert labelled, "every figure needs labelled axes"
        assert any(ax.get_title() for ax in figure.axes) or figure.get_suptitle()
    assert "Predicted P(chosen" in figures[0].axes[1].get_xlabel()
    assert [ax.get_title().split(":")[0] for ax in figures[1].axes] == ["soft_label", "vote_spread"]
    assert figures[2].axes[0].get_ylabel() == "Accuracy"
