"""Anchors relative to their group's base rate (`anchor_group_column`).

Expected values come from scipy: the group fit is a Nelder–Mead maximum of the grouped class-share likelihood written
here with `norm.cdf`, and the training loss is recomputed from the model's own μ and σ with `norm.logcdf`.
"""

import numpy as np
import pytest
import torch
from conftest import tiny_gpt2_config
from datasets import Dataset
from scipy.optimize import minimize
from scipy.stats import norm
from transformers import BertConfig

from trl_anchor import (
    AnchorGaussianRewardConfig,
    AnchorGaussianRewardTrainer,
    GaussianRewardModel,
    GaussianRewardModelOutput,
)
from trl_anchor.trainer.anchor_groups import ANCHOR_GROUP_VARIANCE, ANCHOR_OFFSET

THRESHOLDS = np.array([-1.0, 1.0])
WORDS = "the quick brown fox jumps over the lazy dog a helpful answer explains the reason step by step".split()
# Three crowds: harsh, middling and lenient voters.
BASE_RATES = {11: [0.9, 0.08, 0.02], 12: [0.7, 0.2, 0.1], 13: [0.4, 0.35, 0.25]}


def _grouped_votes(n_per_group=8, seed=0, groups=BASE_RATES):
    rng = np.random.default_rng(seed)
    rows = {k: [] for k in ("contest", "prompt", "chosen", "rejected", "soft_label", "chosen_anchor_counts",
                            "rejected_anchor_counts", "anchor_weight")}
    for group, rates in groups.items():
        for _ in range(n_per_group):
            rows["contest"].append(group)
            rows["prompt"].append(f"cartoon {group} ")
            rows["chosen"].append(" ".join(rng.choice(WORDS, int(rng.integers(2, 8)))))
            rows["rejected"].append(" ".join(rng.choice(WORDS, int(rng.integers(2, 8)))))
            rows["soft_label"].append(float(rng.uniform(0.4, 0.9)))
            for side in ("chosen", "rejected"):
                rows[f"{side}_anchor_counts"].append(rng.multinomial(int(rng.integers(5, 40)), rates).tolist())
            rows["anchor_weight"].append(float(rng.choice([0.5, 1.0, 2.0])))
    rows["anchor_weight"][2] = 0.0  # an unanchored pair counts in no group's shares
    return Dataset.from_dict(rows)


def _scipy_group_fit(data):
    """(μ₀, σ₀, {group: δ_g}) maximising Σ_g w_g Σ_j s_gj log π_j(μ_g, σ), with Σ w_g δ_g = 0."""
    groups = sorted(set(data["contest"]))
    shares, weights = [], []
    for g in groups:
        total, weight = np.zeros(3), 0.0
        for side in ("chosen", "rejected"):
            for c, votes, w in zip(data["contest"], data[f"{side}_anchor_counts"], data["anchor_weight"], strict=True):
                if c == g and w > 0:
                    votes = np.asarray(votes, float)
                    total += w * votes / votes.sum()
                    weight += w
        shares.append(total / total.sum())
        weights.append(weight)
    shares, weights = np.array(shares), np.array(weights)

    def nll(x):
        means, std = x[:-1], np.exp(x[-1])
        cdf = norm.cdf((THRESHOLDS[None, :] - means[:, None]) / std)
        probs = np.diff(np.c_[np.zeros(len(means)), cdf, np.ones(len(means))], axis=1)
        return -(weights * (shares * np.log(probs)).sum(1)).sum() / weights.sum()

    start = np.r_[np.full(len(groups), -1.0), np.log(2.0)]
    fit = minimize(nll, start, method="Nelder-Mead", options=dict(xatol=1e-10, fatol=1e-14, maxiter=40_000))
    means = fit.x[:-1]
    mean = float((weights * means).sum() / weights.sum())
    offsets = dict(zip(groups, means - mean, strict=True))
    variance = float((weights * (means - mean) ** 2).sum() / weights.sum())
    return mean, float(np.exp(fit.x[-1])), offsets, variance


def _bert(tokenizer):
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=128, num_labels=1, pad_token_id=tokenizer.pad_token_id, hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    return GaussianRewardModel.from_config(config)


def _trainer(tmp_path, tokenizer, model, data, eval_dataset=None, **kwargs):
    settings = dict(report_to="none", use_cpu=True, bf16=False, max_steps=1, anchor_thresholds=THRESHOLDS.tolist(),
                    anchor_group_column="contest")
    args = AnchorGaussianRewardConfig(str(tmp_path), **{**settings, **kwargs})
    return AnchorGaussianRewardTrainer(
        model=model, args=args, train_dataset=data, eval_dataset=eval_dataset, processing_class=tokenizer
    )


def test_group_offsets_and_the_heads_start_are_the_grouped_maximum_likelihood(tmp_path, tokenizer):
    torch.manual_seed(0)
    data = _grouped_votes()
    model = _bert(tokenizer)
    trainer = _trainer(tmp_path, tokenizer, model, data)
    mean, std, offsets, variance = _scipy_group_fit(data)
    assert max(offsets.values()) - min(offsets.values()) > 1.0  # the crowds really differ

    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(trainer.train_dataset))])
    with torch.no_grad():
        out = model.eval()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    np.testing.assert_allclose(out.mean.double().numpy(), mean, atol=1e-4)  # every response at μ₀
    np.testing.assert_allclose(out.std.double().numpy(), std, atol=1e-4)  # σ₀ around a group's own base rate
    expected = [offsets[c] for c in data["contest"]]
    np.testing.assert_allclose(trainer.train_dataset[ANCHOR_OFFSET], expected, atol=1e-4)
    np.testing.assert_array_equal(trainer.train_dataset[ANCHOR_GROUP_VARIANCE], 0.0)  # train groups: offset known
    settings = model.config.gaussian_reward
    assert settings["anchor_group_column"] == "contest" and settings["anchor_groups"] == 3
    assert settings["anchor_group_variance"] == pytest.approx(variance, abs=1e-4)


def test_at_the_heads_start_the_grouped_anchor_term_is_stationary(tmp_path, tokenizer):
    # The start is the joint maximum of every group's anchor likelihood, so moving all responses' μ or σ together
    # cannot lower the anchor term; reading the offsets with the opposite sign (or not at all) could.
    torch.manual_seed(0)
    data = _grouped_votes(seed=4)
    model = _bert(tokenizer)
    trainer = _trainer(tmp_path, tokenizer, model, data)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(len(trainer.train_dataset))])
    biases = (model.classifier.bias, model.variance_head.bias)

    def bias_gradients(offset_sign):
        model.zero_grad()
        inputs = {**batch, ANCHOR_OFFSET: offset_sign * batch[ANCHOR_OFFSET]}
        out = model.eval()(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        trainer._anchor_terms(out, inputs)["loss"].backward()
        return np.array([float(b.grad.abs().sum()) for b in biases])

    assert bias_gradients(1.0).max() < 1e-5
    assert bias_gradients(-1.0).max() > 1e-2 and bias_gradients(0.0).max() > 1e-3


def test_the_anchor_loss_reads_each_pair_relative_to_its_group(tmp_path, tokenizer):
    # A decoder whose pad token is its EOS token, as Llama / Qwen reward models are set up.
    tokenizer.pad_token = tokenizer.eos_token
    torch.manual_seed(0)
    data = _grouped_votes(n_per_group=4, seed=1)
    model = GaussianRewardModel.from_config(tiny_gpt2_config(tokenizer, resid_pdrop=0.0, embd_pdrop=0.0,
                                                             attn_pdrop=0.0, pad_token_id=tokenizer.pad_token_id))
    lam = 0.7
    trainer = _trainer(tmp_path, tokenizer, model, data, anchor_lambda=lam)
    start, _, offsets, _ = _scipy_group_fit(data)
    # GPT-2's `score` has no bias: μ stays 0 and the anchors read μ + μ₀ + δ_g (`anchor_mean_offset` = μ₀).
    assert model.config.gaussian_reward["anchor_mean_offset"] == pytest.approx(start, abs=1e-4)
    rows = [trainer.train_dataset[i] for i in range(len(trainer.train_dataset))]
    batch = trainer.data_collator(rows)
    with torch.no_grad():
        loss = trainer.compute_loss(model.train(), batch).item()
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    mean, std = out.mean.double().numpy(), out.std.double().numpy()
    n = len(rows)
    z = (mean[:n] - mean[n:]) / np.hypot(std[:n], std[n:])
    label = np.asarray(data["soft_label"])
    pair = -(label * norm.logcdf(z) + (1 - label) * norm.logcdf(-z)).mean()
    np.testing.assert_array_equal(mean, 0.0)
    delta = start + np.tile([offsets[c] for c in data["contest"]], 2)
    cdf = norm.cdf((THRESHOLDS[None, :] - (mean + delta)[:, None]) / std[:, None])
    probs = np.diff(np.c_[np.zeros(2 * n), cdf, np.ones(2 * n)], axis=1)
    counts = np.array(list(data["chosen_anchor_counts"]) + list(data["rejected_anchor_counts"]), float)
    nll = -(counts / counts.sum(1, keepdims=True) * np.log(probs)).sum(1)
    weight = np.tile(data["anchor_weight"], 2)
    anchor = sum((weight * nll)[s].sum() / (weight[s] > 0).sum() for s in (slice(0, n), slice(n, None)))
    assert loss == pytest.approx(pair + lam * anchor, rel=1e-5)
    # Without the offsets the anchor term differs, so the check above could fail.
    cdf0 = norm.cdf((THRESHOLDS[None, :] - mean[:, None]) / std[:, None])
    nll0 = -(counts / counts.sum(1, keepdims=True) * np.log(np.diff(np.c_[np.zeros(2 * n), cdf0, np.ones(2 * n)])))
    assert abs((weight * nll0.sum(1)).sum() - (weight * nll).sum()) > 1e-2


def test_eval_pairs_of_a_new_group_get_the_offsets_variance(tmp_path, tokenizer):
    torch.manual_seed(0)
    data = _grouped_votes(seed=2)
    new_crowd = {11: BASE_RATES[11], 99: [0.5, 0.3, 0.2]}
    eval_data = _grouped_votes(n_per_group=3, seed=3, groups=new_crowd)
    model = _bert(tokenizer)
    trainer = _trainer(tmp_path, tokenizer, model, data, eval_dataset=eval_data)
    train_offsets = dict(zip(trainer.train_dataset["contest"], trainer.train_dataset[ANCHOR_OFFSET], strict=True))
    variance = model.config.gaussian_reward["anchor_group_variance"]
    assert variance > 0.1
    prepared = trainer.eval_dataset
    columns = (prepared["contest"], prepared[ANCHOR_OFFSET], prepared[ANCHOR_GROUP_VARIANCE])
    for contest, offset, extra in zip(*columns, strict=True):
        if contest == 11:
            assert (offset, extra) == (pytest.approx(train_offsets[11]), 0.0)
        else:
            assert (offset, extra) == (0.0, pytest.approx(variance))
    metrics = trainer.evaluate()
    assert np.isfinite(metrics["eval_loss"])


def test_a_missing_or_empty_group_is_named(tmp_path, tokenizer):
    data = _grouped_votes(n_per_group=2)
    with pytest.raises(ValueError, match="no column `contest`"):
        _trainer(tmp_path, tokenizer, _bert(tokenizer), data.remove_columns("contest"))
    groups = list(data["contest"])
    groups[4] = None
    with pytest.raises(ValueError, match=r"`contest` \(`anchor_group_column`\) of the train dataset is empty \(None\) "
                                         r"at rows \[4\]"):
        _trainer(tmp_path, tokenizer, _bert(tokenizer), data.remove_columns("contest").add_column("contest", groups))


def test_bf16_training_reads_offsets_in_float32(tmp_path, tokenizer):
    from trl_anchor.trainer.anchor_groups import anchor_mean_std

    torch.manual_seed(0)
    data = _grouped_votes(seed=5)
    trainer = _trainer(
        tmp_path, tokenizer, _bert(tokenizer), data, bf16=True, max_steps=2, per_device_train_batch_size=8
    )
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(8)])
    # A backbone whose heads return bf16 (a bf16-loaded model): μ near −3 is only representable in steps of 0.0156.
    mean_bf16 = torch.linspace(-3.5, -2.5, 16).to(torch.bfloat16)
    out = GaussianRewardModelOutput(mean=mean_bf16, variance=torch.full((16,), 5.0, dtype=torch.bfloat16))
    mean, std = anchor_mean_std(out, batch)
    # The offsets (float32) are added after upcasting, not rounded to bf16's grid.
    assert mean.dtype == std.dtype == torch.float32
    torch.testing.assert_close(mean, mean_bf16.float() + batch[ANCHOR_OFFSET].repeat(2), rtol=0, atol=0)
    assert np.isfinite(trainer.train().training_loss)
