"""Multi-attribute models in the reward consumers: weighted transforms, per-attribute scoring, GRPO reward function."""

import numpy as np
import pytest
import torch
from scipy.stats import norm

from tests.conftest import tiny_gpt2_config
from trl_anchor import GaussianRewardFunction, GaussianRewardModel, RewardTransform, score_responses

ATTRS = ["helpfulness", "correctness", "coherence", "complexity", "verbosity"]
W = [0.65, 0.8, 0.45, 0.55, -0.4]


def _model(tokenizer, weights=W):
    torch.manual_seed(0)
    model = GaussianRewardModel.from_config(tiny_gpt2_config(tokenizer, num_labels=5), attributes=ATTRS).eval()
    with torch.no_grad():
        model.variance_head.weight.normal_(std=0.5)
    model.record_training_settings(attribute_weights=weights)
    return model


def test_weighted_quantile_spec_round_trips_and_matches_hand_computation():
    transform = RewardTransform.parse("quantile:0.1,weights:0.65:0.8:0.45:0.55:-0.4")
    assert transform.weights == tuple(W)
    assert RewardTransform.parse(str(transform)) == transform
    mean = np.array([[4.0, 3.0, 2.0, 1.0, 0.5], [1.0, 1.0, 1.0, 1.0, 1.0]])
    std = np.array([[1.0, 0.5, 0.2, 0.3, 2.0], [0.1, 0.1, 0.1, 0.1, 0.1]])
    r = mean @ np.array(W)
    sigma = np.sqrt((std**2) @ np.array(W) ** 2)
    np.testing.assert_allclose(transform(mean, std), r + norm.ppf(0.1) * sigma, rtol=1e-12)
    with pytest.raises(ValueError, match="combines 5 attributes"):
        transform(mean[:, :3], std[:, :3])
    with pytest.raises(ValueError, match="weights"):
        RewardTransform.parse("mean,weights:a:b")


def test_bind_takes_the_models_weights(tokenizer):
    model = _model(tokenizer)
    assert RewardTransform.parse("lcb:1.0").bind(model).weights == tuple(W)
    assert RewardTransform.parse("mean,weights:1:0:0:0:0").bind(model).weights == (1.0, 0, 0, 0, 0)
    with pytest.raises(ValueError, match="3 weights for the model's 5 attributes"):
        RewardTransform.parse("mean,weights:1:2:3").bind(model)
    scalar = GaussianRewardModel.from_config(tiny_gpt2_config(tokenizer))
    with pytest.raises(ValueError, match="one output"):
        RewardTransform.parse("mean,weights:1:2").bind(scalar)


def test_score_responses_returns_per_attribute_mu_sigma(tokenizer):
    model = _model(tokenizer)
    responses, prompts = [" it is four", " no", " two plus two is four"], ["what is two plus two"] * 3
    scores = score_responses(model, tokenizer, responses, prompts, batch_size=2)
    assert scores.mean.shape == scores.variance.shape == (3, 5) and scores.attributes == ATTRS
    for i, response in enumerate(responses):  # one at a time, unpadded: the same numbers
        alone = score_responses(model, tokenizer, [response], [prompts[i]])
        np.testing.assert_allclose(scores.mean[i], alone.mean[0], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(scores.variance[i], alone.variance[0], rtol=1e-5)


def test_grpo_reward_function_uses_a_multi_attribute_model_unchanged(tokenizer):
    model = _model(tokenizer)
    reward_fn = GaussianRewardFunction(model, tokenizer, transform="quantile:0.1")
    prompts, completions = ["what is two plus two"] * 2, [" it is four", " no"]
    rewards = reward_fn(prompts=prompts, completions=completions)
    scores = score_responses(model, tokenizer, completions, prompts)
    r = scores.mean @ np.array(W)
    sigma = np.sqrt(scores.variance @ np.array(W) ** 2)
    np.testing.assert_allclose(rewards, r + norm.ppf(0.1) * sigma, rtol=1e-5)
    assert len(rewards) == 2 and all(isinstance(x, float) for x in rewards)


def test_combined_scores_for_best_of_n(tokenizer):
    from trl_anchor.rewards.scoring import combined_scores, model_attribute_weights

    model = _model(tokenizer)
    scores = score_responses(model, tokenizer, [" it is four", " no"], ["what is two plus two"] * 2)
    weights = model_attribute_weights(model)
    assert weights == W
    combined = combined_scores(scores, weights)
    np.testing.assert_allclose(combined.mean, scores.mean @ np.array(W), rtol=1e-12)
    np.testing.assert_allclose(combined.variance, scores.variance @ np.array(W) ** 2, rtol=1e-12)
    assert combined.attributes is None and combined.mean.shape == (2,)
    # The best-of-N `quantile:0.1` policy on the combined scores equals the weighted transform on the attributes.
    direct = RewardTransform.parse("quantile:0.1").bind(model)(scores.mean, scores.std)
    np.testing.assert_allclose(RewardTransform.parse("quantile:0.1")(combined.mean, combined.std), direct, rtol=1e-10)
