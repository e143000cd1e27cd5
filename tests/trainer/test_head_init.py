"""Fresh heads start at the train anchors' base rate: at step 0 the predicted anchor class shares equal the data's.

Expected shares are computed here from the raw dataset columns and the predicted ones with scipy's normal CDF from the
model's own μ and σ of every train response.
"""

import numpy as np
import pytest
import torch
from conftest import tiny_gpt2_config
from datasets import Dataset
from scipy.stats import norm
from transformers import BertConfig, BertModel

from trl_anchor import AnchorGaussianRewardConfig, AnchorGaussianRewardTrainer, GaussianRewardModel

THRESHOLDS = [-1.0, 1.0]
WORDS = "the quick brown fox jumps over the lazy dog a helpful answer explains the reason step by step".split()


def _tiny_bert_config(tokenizer, **overrides):
    kwargs = dict(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=128, num_labels=1, pad_token_id=tokenizer.pad_token_id,
    )
    return BertConfig(**{**kwargs, **overrides})


def _vote_data(n=24, seed=0):
    """Crowd votes over 3 classes skewed to the lowest (like caption votes), unequal weights, one unanchored pair."""
    rng = np.random.default_rng(seed)

    def votes():
        return rng.multinomial(int(rng.integers(3, 30)), [0.8, 0.15, 0.05]).tolist()

    texts = [" ".join(rng.choice(WORDS, int(rng.integers(2, 9)))) for _ in range(2 * n)]
    weights = rng.choice([0.5, 1.0, 2.0], n)
    weights[3] = 0.0
    return Dataset.from_dict({
        "prompt": [f"user {i} asks " for i in range(n)],
        "chosen": texts[:n],
        "rejected": texts[n:],
        "soft_label": rng.uniform(0.3, 1.0, n).round(3).tolist(),
        "chosen_anchor_counts": [votes() for _ in range(n)],
        "rejected_anchor_counts": [votes() for _ in range(n)],
        "anchor_weight": weights.tolist(),
    })


def _data_shares(data, normalize=True):
    total = np.zeros(3)
    for side in ("chosen", "rejected"):
        for votes, weight in zip(data[f"{side}_anchor_counts"], data["anchor_weight"], strict=True):
            votes = np.asarray(votes, dtype=float)
            total += weight * (votes / votes.sum() if normalize else votes)
    return total / total.sum()


def _step0_mean_std(trainer):
    rows = [trainer.train_dataset[i] for i in range(len(trainer.train_dataset))]
    batch = trainer.data_collator(rows)
    with torch.no_grad():
        out = trainer.model.eval()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    return out.mean.double().numpy(), out.std.double().numpy()


def _predicted_shares(mean, std):
    cdf = norm.cdf((np.asarray(THRESHOLDS)[None, :] - mean[:, None]) / std[:, None])
    return np.diff(np.c_[np.zeros(len(mean)), cdf, np.ones(len(mean))], axis=1).mean(0)


def _trainer(tmp_path, tokenizer, model, data, peft_config=None, **kwargs):
    args = AnchorGaussianRewardConfig(
        str(tmp_path), report_to="none", use_cpu=True, bf16=False, max_steps=1, anchor_thresholds=THRESHOLDS, **kwargs
    )
    return AnchorGaussianRewardTrainer(
        model=model, args=args, train_dataset=data, processing_class=tokenizer, peft_config=peft_config
    )


@pytest.mark.parametrize("normalize", [True, False])
def test_step0_shares_equal_the_data(tmp_path, tokenizer, normalize):
    torch.manual_seed(0)
    data = _vote_data()
    model = GaussianRewardModel.from_config(_tiny_bert_config(tokenizer))
    trainer = _trainer(tmp_path, tokenizer, model, data, normalize_anchor_counts=normalize)
    mean, std = _step0_mean_std(trainer)
    expected = _data_shares(data, normalize)
    assert expected[0] > 0.7  # far from what (μ, σ) = (0, 1) predicts: 0.16 / 0.68 / 0.16
    np.testing.assert_allclose(_predicted_shares(mean, std), expected, atol=1e-3)
    settings = model.config.gaussian_reward
    assert settings["initial_mean"] == pytest.approx(mean[0], abs=1e-5)
    assert settings["initial_std"] == pytest.approx(std[0], abs=1e-5)


def test_off_switch_keeps_the_default_start(tmp_path, tokenizer):
    torch.manual_seed(0)
    model = GaussianRewardModel.from_config(_tiny_bert_config(tokenizer))
    trainer = _trainer(tmp_path, tokenizer, model, _vote_data(), init_heads_from_anchors=False)
    _, std = _step0_mean_std(trainer)
    np.testing.assert_allclose(std, 1.0, atol=1e-6)


def test_model_from_a_base_checkpoint_path_is_initialised(tmp_path, tokenizer):
    torch.manual_seed(0)
    BertModel(_tiny_bert_config(tokenizer)).save_pretrained(tmp_path / "base")
    data = _vote_data(seed=1)
    trainer = _trainer(tmp_path / "out", tokenizer, str(tmp_path / "base"), data)
    mean, std = _step0_mean_std(trainer)
    np.testing.assert_allclose(_predicted_shares(mean, std), _data_shares(data), atol=1e-3)


def test_mean_head_without_bias_starts_at_the_data_through_the_offset(tmp_path, tokenizer, tiny_causal_lm_dir):
    # GPT-2's `score` has no bias to hold μ₀: μ starts at 0 and the anchors read μ + μ₀ (`anchor_mean_offset`).
    from trl_anchor import score_responses

    data = _vote_data(seed=2)
    trainer = _trainer(tmp_path, tokenizer, str(tiny_causal_lm_dir), data)
    mean, std = _step0_mean_std(trainer)
    np.testing.assert_array_equal(mean, 0.0)
    settings = trainer.model.config.gaussian_reward
    offset = settings["anchor_mean_offset"]
    assert offset == settings["initial_mean"] and offset < -0.5  # the data sit mostly in the lowest class
    expected = _data_shares(data)
    np.testing.assert_allclose(_predicted_shares(mean + offset, std), expected, atol=1e-3)
    assert np.abs(_predicted_shares(mean, std) - expected).max() > 0.05  # μ alone would not match the data
    # Scoring reads the recorded offset too: every response's class probabilities are the data's shares.
    scores = score_responses(trainer.model, tokenizer, data["chosen"], data["prompt"])
    assert scores.mean_offset == offset
    np.testing.assert_allclose(scores.class_probs, np.tile(expected, (len(data), 1)), atol=1e-3)


def test_loaded_heads_are_kept(tmp_path, tokenizer):
    torch.manual_seed(0)
    model = GaussianRewardModel.from_config(tiny_gpt2_config(tokenizer))
    with torch.no_grad():
        model.variance_head.weight.normal_(0, 0.5)
    model.save_pretrained(tmp_path / "trained")
    reloaded = GaussianRewardModel.from_pretrained(tmp_path / "trained")
    assert reloaded.fresh_heads == set()
    _trainer(tmp_path / "out", tokenizer, reloaded, _vote_data())
    torch.testing.assert_close(reloaded.variance_head.weight, model.variance_head.weight)
    torch.testing.assert_close(reloaded.score.weight, model.score.weight)


def test_peft_heads_in_modules_to_save_are_initialised(tmp_path, tokenizer):
    from peft import LoraConfig

    torch.manual_seed(0)
    data = _vote_data(seed=3)
    model = GaussianRewardModel.from_config(_tiny_bert_config(tokenizer))
    peft_config = LoraConfig(r=4, target_modules=["query", "value"], modules_to_save=["classifier"])
    trainer = _trainer(tmp_path, tokenizer, model, data, peft_config=peft_config)
    mean, std = _step0_mean_std(trainer)
    np.testing.assert_allclose(_predicted_shares(mean, std), _data_shares(data), atol=1e-3)


def test_frozen_mean_head_keeps_its_weights_and_sigma_is_fitted_alone(tmp_path, tokenizer):
    from peft import LoraConfig

    torch.manual_seed(0)
    data = _vote_data(seed=4)
    model = GaussianRewardModel.from_config(_tiny_bert_config(tokenizer))
    random_head = model.classifier.weight.detach().clone()
    peft_config = LoraConfig(r=4, target_modules=["query", "value"])  # the mean head is not trained
    trainer = _trainer(tmp_path, tokenizer, model, data, peft_config=peft_config)
    torch.testing.assert_close(model.classifier.weight, random_head)  # zeroed, a frozen head would give μ ≡ 0 forever
    _, std = _step0_mean_std(trainer)
    grid = np.linspace(0.2, 20, 4000)
    shares = _data_shares(data)
    ce = [-(shares * np.log(_predicted_shares(np.zeros(1), np.full(1, s)))).sum() for s in grid]
    np.testing.assert_allclose(std, grid[int(np.argmin(ce))], atol=0.01)


def test_train_base_rate_is_recorded_and_is_the_evaluation_reference(tmp_path, tokenizer):
    from trl_anchor.pipelines.evaluation import evaluate_reward_model

    torch.manual_seed(0)
    data = _vote_data(seed=5)
    model = GaussianRewardModel.from_config(_tiny_bert_config(tokenizer))
    trainer = _trainer(tmp_path, tokenizer, model, data, init_heads_from_anchors=False)
    shares = _data_shares(data)
    np.testing.assert_allclose(model.config.gaussian_reward["anchor_class_shares"], shares, rtol=1e-12)
    metrics = evaluate_reward_model(trainer.model, trainer.processing_class, data, allow_training_data=True).metrics
    votes = [
        np.asarray(v, float) for side in ("chosen", "rejected")
        for v, w in zip(data[f"{side}_anchor_counts"], data["anchor_weight"], strict=True) if w > 0
    ]
    expected = np.mean([-(v / v.sum() * np.log(shares)).sum() for v in votes])  # unanchored responses left out
    assert metrics["anchor_nll_base_rate"] == pytest.approx(expected, rel=1e-9)


def test_a_variance_head_changed_after_creation_is_kept(tmp_path, tokenizer):
    # e.g. a trained adapter loaded onto a freshly loaded base: the heads were created, then given trained values.
    torch.manual_seed(0)
    model = GaussianRewardModel.from_config(_tiny_bert_config(tokenizer))
    with torch.no_grad():
        model.variance_head.weight.normal_(0, 0.5)
    weight, bias = model.variance_head.weight.detach().clone(), model.classifier.bias.detach().clone()
    _trainer(tmp_path, tokenizer, model, _vote_data())
    torch.testing.assert_close(model.variance_head.weight, weight)
    torch.testing.assert_close(model.classifier.bias, bias)
