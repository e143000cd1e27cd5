"""Multi-attribute evaluation metrics against independent computations (scipy, numpy)."""

import numpy as np
import pytest
import torch
from datasets import Dataset
from scipy.stats import norm, pearsonr, spearmanr

from tests.conftest import tiny_gpt2_config
from trl_anchor import GaussianRewardModel, score_responses
from trl_anchor.pipelines.multi_attribute_evaluation import (
    comparison_table,
    evaluate_multi_attribute,
    rating_metrics,
)

EDGES = np.array([-np.inf, 0.5, 1.5, 2.5, 3.5, np.inf])


def test_rating_metrics_match_scipy():
    rng = np.random.default_rng(0)
    mean, std = rng.uniform(0, 4, 50), rng.uniform(0.3, 1.5, 50)
    ratings = [int(np.clip(np.rint(rng.normal(m, s)), 0, 4)) for m, s in zip(mean, std, strict=True)]
    ratings[7] = None
    metrics = rating_metrics(mean, std, ratings, [0.5, 1.5, 2.5, 3.5], disagreement=std * 2 + 1)
    keep = np.array([r is not None for r in ratings])
    r = np.array([x for x in ratings if x is not None])
    assert metrics["spearman"] == pytest.approx(spearmanr(mean[keep], r).statistic, abs=1e-12)
    assert metrics["pearson"] == pytest.approx(pearsonr(mean[keep], r).statistic, abs=1e-12)
    p = norm.cdf((EDGES[r + 1] - mean[keep]) / std[keep]) - norm.cdf((EDGES[r] - mean[keep]) / std[keep])
    assert metrics["ordinal_nll"] == pytest.approx(-np.log(p).mean(), rel=1e-9)
    assert metrics["sigma_spearman"] == pytest.approx(1.0) and metrics["sigma_pearson"] == pytest.approx(1.0)
    assert 0 <= metrics["ece"] <= 1
    # A constant σ (the MSE arm's residual RMSE) gives NLL and ECE but no σ correlation.
    constant = rating_metrics(mean, np.float64(0.8), ratings, [0.5, 1.5, 2.5, 3.5], disagreement=std)
    assert "ordinal_nll" in constant and "sigma_spearman" not in constant


def test_evaluate_multi_attribute_and_table(tokenizer):
    torch.manual_seed(0)
    attrs = ["helpfulness", "verbosity"]
    model = GaussianRewardModel.from_config(tiny_gpt2_config(tokenizer, num_labels=2), attributes=attrs).eval()
    with torch.no_grad():
        model.variance_head.weight.normal_()
    model.record_training_settings(attribute_weights=[1.0, -0.5], attribute_thresholds=[[0.5, 1.5, 2.5, 3.5]] * 2)
    responses = [" four", " it is four", " no", " 4"]
    rated = Dataset.from_dict({"prompt": ["what is two plus two"] * 4, "response": responses,
                               "helpfulness": [4, 3, 0, None], "verbosity": [1, 2, 0, 1],
                               "helpfulness_std": [0.1, 0.5, 0.2, 0.3], "verbosity_std": [0.0, 0.4, 0.4, 0.1]})
    pairs = Dataset.from_dict({"prompt": ["q", "q"], "chosen": [" four", " it is four"], "rejected": [" no", " 4"],
                               "soft_label": [0.8, 0.5]})
    metrics = evaluate_multi_attribute(model, tokenizer, rated, pairs)
    scores = score_responses(model, tokenizer, rated["response"], rated["prompt"])
    assert metrics["helpfulness/spearman"] == pytest.approx(spearmanr(scores.mean[:3, 0], [4, 3, 0]).statistic)
    assert metrics["verbosity/sigma_spearman"] == pytest.approx(
        spearmanr(scores.std[:, 1], [0.0, 0.4, 0.4, 0.1]).statistic
    )
    c = score_responses(model, tokenizer, [" four"], ["q"])
    r_ = score_responses(model, tokenizer, [" no"], ["q"])
    w = np.array([1.0, -0.5])
    assert metrics["pairs/accuracy"] == float((c.mean[0] @ w) > (r_.mean[0] @ w))  # the 0.5 pair is undecided
    table = comparison_table({"ordinal": metrics, "mse": {"helpfulness/spearman": 0.5}}, attrs)
    assert "| helpfulness |" in table and "/ 0.500" in table and "—" in table
