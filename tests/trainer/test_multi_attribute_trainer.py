"""MultiAttributeRewardTrainer: ordinal (Gaussian) and MSE arms on rating data, optional combined-reward pairs.

Expected losses are recomputed here with scipy from the model's own outputs, never with trl_anchor.losses."""

import copy
import logging

import numpy as np
import pytest
import torch
from datasets import Dataset
from scipy.stats import norm
from transformers import AutoModelForSequenceClassification

from tests.conftest import tiny_gpt2_config
from trl_anchor import GaussianRewardModel
from trl_anchor.trainer.multi_attribute_config import HELPSTEER2_WEIGHTS, MultiAttributeRewardConfig
from trl_anchor.trainer.multi_attribute_data import auto_thresholds
from trl_anchor.trainer.multi_attribute_trainer import MultiAttributeRewardTrainer

ATTRS = ["helpfulness", "verbosity"]


def _ratings(n=8):
    rng = np.random.default_rng(0)
    words = ["good answer", "bad answer", "long long long answer", "short"]
    rows = {"prompt": [], "response": [], "helpfulness": [], "verbosity": []}
    for i in range(n):
        w = words[i % 4]
        rows["prompt"].append("what is two plus two")
        rows["response"].append(f" {w} {i}")
        rows["helpfulness"].append(int(rng.integers(0, 5)) if i != 3 else None)
        rows["verbosity"].append(int(rng.integers(0, 5)))
    return Dataset.from_dict(rows)


def _pairs(n=4):
    return Dataset.from_dict({
        "prompt": ["what is two plus two"] * n,
        "chosen": [f" it is four {i}" for i in range(n)],
        "rejected": [f" no {i}" for i in range(n)],
        "soft_label": [0.9, 0.7, 1.0, 0.6][:n],
    })


def _trainer(tokenizer, tmp_path, loss_type="ordinal", pairs=None, model=None, **kwargs):
    torch.manual_seed(0)
    if model is None:
        config = tiny_gpt2_config(tokenizer, num_labels=len(ATTRS))
        model = (GaussianRewardModel.from_config(config, attributes=ATTRS) if loss_type == "ordinal"
                 else AutoModelForSequenceClassification.from_config(config))
    args = MultiAttributeRewardConfig(
        str(tmp_path), attributes=ATTRS, loss_type=loss_type, per_device_train_batch_size=4, report_to="none",
        use_cpu=True, attribute_weights=[0.7, -0.3], **kwargs,
    )
    trainer = MultiAttributeRewardTrainer(model, args, train_dataset=_ratings(), preference_dataset=pairs,
                                          processing_class=tokenizer)
    trainer.model.eval()  # no dropout: the expected values come from a second forward pass
    return trainer


def _batch(trainer, indices):
    return trainer.data_collator([trainer.train_dataset[i] for i in indices])


def test_ordinal_loss_matches_scipy(tokenizer, tmp_path):
    trainer = _trainer(tokenizer, tmp_path)
    batch = _batch(trainer, range(8))
    loss = trainer.compute_loss(trainer.model, batch).item()
    out = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    mean, std = out.mean.detach().double().numpy(), out.std.detach().double().numpy()
    edges = np.array([-np.inf, 0.5, 1.5, 2.5, 3.5, np.inf])  # "midpoints" thresholds
    ratings = batch["ratings"].numpy()
    nll = [
        -np.log(norm.cdf((edges[r + 1] - mean[i, a]) / std[i, a]) - norm.cdf((edges[r] - mean[i, a]) / std[i, a]))
        for i in range(8) for a in range(2) if (r := ratings[i, a]) >= 0
    ]
    assert len(nll) == 15  # one rating is missing
    assert loss == pytest.approx(np.mean(nll), rel=1e-5)


def test_mse_arm_is_nemo_regression(tokenizer, tmp_path):
    trainer = _trainer(tokenizer, tmp_path, loss_type="mse")
    assert type(trainer.model).__name__ == "GPT2ForSequenceClassification"
    batch = _batch(trainer, range(8))
    loss = trainer.compute_loss(trainer.model, batch).item()
    mean = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits.detach()
    ratings = batch["ratings"].numpy()
    errors = [(mean[i, a].item() - ratings[i, a]) ** 2 for i in range(8) for a in range(2) if ratings[i, a] >= 0]
    assert loss == pytest.approx(np.mean(errors), rel=1e-5)


def test_pairwise_term_on_the_combined_reward(tokenizer, tmp_path):
    trainer = _trainer(tokenizer, tmp_path, pairs=_pairs(), pairwise_lambda=2.0)
    rated = trainer.compute_loss(trainer.model, _batch(trainer, [0, 1])).item()  # rated rows only
    batch = _batch(trainer, [0, 1, 8, 9])  # rows 8, 9 are the first two pairs
    assert batch["pair_index"].tolist() == [2, 3] and batch["input_ids"].shape[0] == 6
    loss = trainer.compute_loss(trainer.model, batch).item()
    out = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    w = np.array([0.7, -0.3])
    mean, var = out.mean.detach().double().numpy(), out.variance.detach().double().numpy()
    r, v = mean @ w, var @ w**2
    z = (r[[2, 3]] - r[[4, 5]]) / np.sqrt(v[[2, 3]] + v[[4, 5]])
    p = np.array([0.9, 0.7])
    pair = -(p * norm.logcdf(z) + (1 - p) * norm.logcdf(-z)).mean()
    assert loss == pytest.approx(rated + 2.0 * pair, rel=1e-5)


def test_missing_and_bad_ratings(tokenizer, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        _trainer(tokenizer, tmp_path)
    assert "{'helpfulness': 1}" in caplog.text
    bad = _ratings().map(lambda row, i: {"verbosity": 7 if i == 5 else row["verbosity"]}, with_indices=True)
    args = MultiAttributeRewardConfig(str(tmp_path), attributes=ATTRS, report_to="none", use_cpu=True)
    model = GaussianRewardModel.from_config(tiny_gpt2_config(tokenizer), attributes=ATTRS)
    with pytest.raises(ValueError, match=r"`verbosity`.*row 5 has 7"):
        MultiAttributeRewardTrainer(model, args, train_dataset=bad, processing_class=tokenizer)


def test_auto_thresholds_are_probits_of_rating_shares():
    ratings = np.array([[0], [1], [1], [2], [2], [2], [3], [4], [-1]])
    expected = norm.ppf([1 / 8, 3 / 8, 6 / 8, 7 / 8])
    np.testing.assert_allclose(auto_thresholds(ratings, ["a"], 4)[0], expected, rtol=1e-10)
    with pytest.raises(ValueError, match="every rating 0..4 of `a`"):
        auto_thresholds(np.array([[0], [1], [2], [3]]), ["a"], 4)


def test_config_defaults_are_helpsteer2():
    args = MultiAttributeRewardConfig("out", report_to="none")
    assert args.attributes == ["helpfulness", "correctness", "coherence", "complexity", "verbosity"]
    assert args.attribute_weights == list(HELPSTEER2_WEIGHTS) == [0.65, 0.8, 0.45, 0.55, -0.4]
    assert MultiAttributeRewardConfig("out", attributes=["a", "b"], report_to="none").attribute_weights == [0.5, 0.5]
    with pytest.raises(ValueError, match="4 thresholds"):
        MultiAttributeRewardConfig("out", rating_thresholds=[0.0, 1.0], report_to="none")


def test_padding_free_matches_padded_with_pad_equal_eos(tokenizer, tmp_path):
    tokenizer = copy.deepcopy(tokenizer)
    tokenizer.pad_token = tokenizer.eos_token  # what TRL does for Llama-3 / GPT-2
    config = tiny_gpt2_config(tokenizer, num_labels=2)
    torch.manual_seed(0)
    model = GaussianRewardModel.from_config(config, attributes=ATTRS)
    padded = _trainer(tokenizer, tmp_path, model=model, pairs=_pairs())
    packed = _trainer(tokenizer, tmp_path, model=model, pairs=_pairs(), padding_free=True)
    indices = [0, 1, 2, 8, 9]
    a = padded.compute_loss(model, _batch(padded, indices)).item()
    b = packed.compute_loss(model, _batch(packed, indices)).item()
    assert "sequence_ends" in _batch(packed, indices)
    assert a == pytest.approx(b, rel=1e-4)


def test_training_learns_and_saves_plain_transformers_checkpoint(tokenizer, tmp_path):
    trainer = _trainer(tokenizer, tmp_path, pairs=_pairs(), num_train_epochs=3, learning_rate=1e-3,
                       logging_steps=1, save_strategy="no")
    batch = _batch(trainer, range(12))
    before = trainer.compute_loss(trainer.model, batch).item()
    trainer.train()
    trainer.model.eval()
    with torch.no_grad():
        after = trainer.compute_loss(trainer.model, batch).item()
    assert after < before
    logged = trainer.state.log_history[0]
    assert {"rating_loss", "pair_loss", "sigma/helpfulness", "rating_accuracy/verbosity"} <= set(logged)
    trainer.save_model(str(tmp_path / "model"))
    settings = GaussianRewardModel.from_pretrained(tmp_path / "model").gaussian_settings
    assert settings["attributes"] == ATTRS and settings["attribute_weights"] == [0.7, -0.3]
    assert settings["attribute_thresholds"] == [[0.5, 1.5, 2.5, 3.5]] * 2
    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path / "model")
    assert plain.config.num_labels == 2 and plain.config.id2label == {0: "helpfulness", 1: "verbosity"}


def test_peft_trains_and_saves_the_variance_heads(tokenizer, tmp_path):
    from peft import LoraConfig

    config = tiny_gpt2_config(tokenizer, num_labels=2)
    torch.manual_seed(0)
    model = GaussianRewardModel.from_config(config, attributes=ATTRS)
    args = MultiAttributeRewardConfig(str(tmp_path), attributes=ATTRS, report_to="none", use_cpu=True,
                                      max_steps=2, per_device_train_batch_size=4, save_strategy="no")
    peft_config = LoraConfig(r=4, target_modules=["c_attn"], modules_to_save=["score"])
    trainer = MultiAttributeRewardTrainer(model, args, train_dataset=_ratings(), processing_class=tokenizer,
                                          peft_config=peft_config)
    head = trainer.model.get_base_model().variance_head
    before = head.weight.detach().clone()
    trainer.train()
    assert not torch.equal(before, head.weight.detach())
    trainer.save_model(str(tmp_path / "adapter"))
    from safetensors.torch import load_file

    saved = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    torch.testing.assert_close(saved["base_model.model.variance_head.weight"], head.weight.detach())


def test_trains_on_helpsteer2_rated_fixture_with_chat_template(tokenizer, tmp_path):
    from pathlib import Path

    from trl_anchor.data import load_helpsteer2
    from trl_anchor.rewards.scoring import tokenize_response

    rated = load_helpsteer2(Path(__file__).parents[1] / "fixtures" / "helpsteer2" / "train.jsonl", subset="rated")
    config = tiny_gpt2_config(tokenizer, num_labels=5)
    args = MultiAttributeRewardConfig(str(tmp_path), report_to="none", use_cpu=True, max_steps=1,
                                      per_device_train_batch_size=4, save_strategy="no")
    trainer = MultiAttributeRewardTrainer(GaussianRewardModel.from_config(config, attributes=args.attributes), args,
                                          train_dataset=rated, processing_class=tokenizer)
    # The chat template renders the conversation exactly as score_responses will.
    assert trainer.train_dataset[0]["input_ids"] == tokenize_response(tokenizer, rated[0]["response"],
                                                                      rated[0]["prompt"])
    assert trainer.train_dataset[0]["ratings"] == [4, 4, 4, 1, 2]
    trainer.train()
    assert trainer.model.config.gaussian_reward["attribute_weights"] == [0.65, 0.8, 0.45, 0.55, -0.4]


def _head_rates(trainer) -> tuple[set[float], set[float]]:
    modules = [getattr(trainer.model, name) for name in ("score", "variance_head") if hasattr(trainer.model, name)]
    heads = {id(p) for module in modules for p in module.parameters()}
    groups = trainer.create_optimizer().param_groups
    head_rates = {g["lr"] for g in groups if all(id(p) in heads for p in g["params"])}
    return head_rates, {g["lr"] for g in groups if not any(id(p) in heads for p in g["params"])}


def test_fresh_heads_default_to_the_multiplied_learning_rate(tokenizer, tmp_path):
    # The same default as the pairwise trainer: heads created for this run train at 30 × learning_rate.
    trainer = _trainer(tokenizer, tmp_path, learning_rate=1e-4)
    assert trainer.args.head_learning_rate_multiplier == 30.0
    head_rates, backbone_rates = _head_rates(trainer)
    assert sorted(head_rates) == pytest.approx([3e-3]) and backbone_rates == {1e-4}
    # A trained checkpoint's heads are not fresh: one rate for everything.
    trainer.save_model(str(tmp_path / "trained"))
    loaded = GaussianRewardModel.from_pretrained(tmp_path / "trained")
    assert {g["lr"] for g in _trainer(tokenizer, tmp_path, model=loaded, learning_rate=1e-4)
            .create_optimizer().param_groups} == {1e-4}
    # The MSE arm's head is fresh when the trainer builds the model from a path or Hub id.
    config = tiny_gpt2_config(tokenizer, num_labels=len(ATTRS))
    AutoModelForSequenceClassification.from_config(config).save_pretrained(tmp_path / "backbone")
    mse = _trainer(tokenizer, tmp_path, loss_type="mse", model=str(tmp_path / "backbone"), learning_rate=1e-4)
    head_rates, backbone_rates = _head_rates(mse)
    assert sorted(head_rates) == pytest.approx([3e-3]) and backbone_rates == {1e-4}
    explicit = _trainer(tokenizer, tmp_path, learning_rate=1e-4, head_learning_rate=2e-3)
    assert _head_rates(explicit)[0] == {2e-3}
    with pytest.raises(ValueError, match="head_learning_rate_multiplier"):
        MultiAttributeRewardConfig(str(tmp_path), head_learning_rate_multiplier=0.0)
