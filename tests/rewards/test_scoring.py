"""`score_responses` pads with the token id the model pools on and truncates without dropping the special tokens an
encoder pools on."""

import numpy as np
import torch
from conftest import tiny_gpt2_config
from transformers import AutoTokenizer

from trl_anchor import GaussianRewardModel
from trl_anchor.rewards.scoring import score_responses

RESPONSES = [" the quick brown fox jumps over the lazy dog", " no", " a helpful answer", " the cat"]


def _alone(model, ids):
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]))
    return out.mean.item(), out.variance.item()


def test_pads_with_the_id_the_model_pools_on(tokenizer):
    # The tokenizer pads with `<pad>` but the model pools on the EOS id (a checkpoint trained with pad = eos).
    config = tiny_gpt2_config(tokenizer, pad_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    model = GaussianRewardModel.from_config(config).eval()
    with torch.no_grad():
        model.variance_head.weight.normal_(0, 0.5)
    assert tokenizer.pad_token_id != model.config.pad_token_id
    scores = score_responses(model, tokenizer, RESPONSES, batch_size=4)
    expected = np.array([_alone(model, tokenizer(r + tokenizer.eos_token)["input_ids"]) for r in RESPONSES])
    np.testing.assert_allclose(scores.mean, expected[:, 0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scores.variance, expected[:, 1], rtol=1e-5, atol=1e-6)


def test_truncation_keeps_the_leading_special_tokens_of_an_encoder(minilm_dir):
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir)
    model = GaussianRewardModel.from_pretrained(minilm_dir).eval()
    long = "a caption that goes on and on " * 20
    ids = tokenizer(long)["input_ids"]
    assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id and len(ids) > 32
    kept = [tokenizer.cls_token_id] + ids[-31:]  # [CLS] (what BERT pools on) + the last 31 tokens, ending in [SEP]
    scores = score_responses(model, tokenizer, [long, " short caption"], max_length=32)
    expected = [_alone(model, kept)[0], _alone(model, tokenizer(" short caption")["input_ids"])[0]]
    np.testing.assert_allclose(scores.mean, expected, rtol=1e-5, atol=1e-6)


def test_anchored_scores_expose_expected_class_and_p_top():
    from scipy.stats import norm

    from trl_anchor.rewards.scoring import RewardScores

    mean, variance, thresholds = np.array([0.3, -2.0, 1.5]), np.array([0.25, 4.0, 1.0]), [-1.0, 0.0, 1.0]
    scores = RewardScores(mean=mean, variance=variance, thresholds=thresholds)
    cdf = norm.cdf((np.asarray(thresholds)[None, :] - mean[:, None]) / np.sqrt(variance)[:, None])
    probs = np.diff(np.c_[np.zeros(3), cdf, np.ones(3)], axis=1)
    np.testing.assert_allclose(scores.expected_class, probs @ np.arange(4), rtol=1e-10)
    np.testing.assert_allclose(scores.p_top, probs[:, -1], rtol=1e-10)
    assert RewardScores(mean=mean, variance=None, thresholds=thresholds).expected_class is None  # BT: no σ
    assert RewardScores(mean=mean, variance=variance).p_top is None  # no anchors


def test_score_responses_carries_the_models_anchor_thresholds(tokenizer):
    torch.manual_seed(0)
    model = GaussianRewardModel.from_config(tiny_gpt2_config(tokenizer)).eval()
    assert score_responses(model, tokenizer, RESPONSES).thresholds is None
    model.record_training_settings(anchor_thresholds=[-1.0, 1.0])
    scores = score_responses(model, tokenizer, RESPONSES)
    assert scores.thresholds == [-1.0, 1.0] and scores.expected_class.shape == (len(RESPONSES),)


def test_class_probabilities_of_a_grouped_model_add_the_group_variance(tokenizer):
    from scipy.stats import norm

    from trl_anchor.rewards.scoring import RewardScores

    mean, variance, thresholds = np.array([0.3, -2.0]), np.array([0.25, 4.0]), [-1.0, 1.0]
    scores = RewardScores(mean=mean, variance=variance, thresholds=thresholds, group_variance=1.5)
    std = np.sqrt(variance + 1.5)
    cdf = norm.cdf((np.asarray(thresholds)[None, :] - mean[:, None]) / std[:, None])
    np.testing.assert_allclose(scores.class_probs, np.diff(np.c_[np.zeros(2), cdf, np.ones(2)], axis=1), rtol=1e-10)
    np.testing.assert_allclose(scores.std, np.sqrt(variance))  # σ itself (pairs, quantiles) is the model's
    torch.manual_seed(0)
    model = GaussianRewardModel.from_config(tiny_gpt2_config(tokenizer)).eval()
    model.record_training_settings(anchor_thresholds=thresholds, anchor_group_variance=0.8)
    assert score_responses(model, tokenizer, RESPONSES).group_variance == 0.8


def test_class_probabilities_of_a_model_without_a_mean_bias_add_its_offset(tokenizer):
    from scipy.stats import norm

    from trl_anchor.rewards.scoring import RewardScores

    mean, variance, thresholds = np.array([0.3, -2.0]), np.array([0.25, 4.0]), [-1.0, 1.0]
    scores = RewardScores(mean=mean, variance=variance, thresholds=thresholds, mean_offset=-0.7)
    cdf = norm.cdf((np.asarray(thresholds)[None, :] - (mean[:, None] - 0.7)) / np.sqrt(variance)[:, None])
    np.testing.assert_allclose(scores.class_probs, np.diff(np.c_[np.zeros(2), cdf, np.ones(2)], axis=1), rtol=1e-10)
    np.testing.assert_array_equal(scores.mean, mean)  # μ itself (pairs, rankings) is the model's
    torch.manual_seed(0)
    model = GaussianRewardModel.from_config(tiny_gpt2_config(tokenizer)).eval()
    model.record_training_settings(anchor_thresholds=thresholds, anchor_mean_offset=-0.7)
    assert score_responses(model, tokenizer, RESPONSES).mean_offset == -0.7
