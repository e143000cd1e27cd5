"""The server with a multi-attribute model: `/score` has one column per attribute, transforms combine them with the
weights recorded in the model config, `/get_reward` returns one reward per query (checked against scipy)."""

import numpy as np
import torch
from scipy.stats import norm
from starlette.testclient import TestClient
from transformers import AutoTokenizer

from tests.conftest import tiny_gpt2_config
from trl_anchor import GaussianRewardModel, score_responses
from trl_anchor.serving.app import create_app
from trl_anchor.serving.config import ServeConfig
from trl_anchor.serving.scorer import RewardScorer

ATTRS = ["helpfulness", "correctness", "verbosity"]
W = np.array([0.6, 0.8, -0.4])


def test_score_and_get_reward_with_a_multi_attribute_model(tmp_path, tokenizer_dir):
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    model = GaussianRewardModel.from_config(tiny_gpt2_config(tokenizer, num_labels=3), attributes=ATTRS)
    with torch.no_grad():
        model.variance_head.weight.normal_()
    model.record_training_settings(attribute_weights=W.tolist())
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    scorer = RewardScorer.from_pretrained(str(tmp_path))
    responses = ["the quick brown fox", " a helpful answer"]
    with TestClient(create_app(scorer, ServeConfig(max_wait_ms=1.0, transform="quantile:0.1"))) as client:
        body = client.post("/score", json={"responses": responses, "transforms": ["quantile:0.1"]}).json()
        rewards = client.post("/get_reward", json={"query": responses}).json()["rewards"]
        info = client.get("/info").json()
    direct = score_responses(scorer.model, scorer.tokenizer, responses)
    assert body["attributes"] == ATTRS == info["attributes"]
    np.testing.assert_allclose(body["mu"], direct.mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(body["sigma"], direct.std, rtol=1e-5)
    expected = direct.mean @ W + norm.ppf(0.1) * np.sqrt(direct.variance @ W**2)
    np.testing.assert_allclose(np.asarray(body["transforms"]["quantile:0.1"])[:, 0], expected, rtol=1e-5)
    np.testing.assert_allclose(rewards, expected, rtol=1e-5)
