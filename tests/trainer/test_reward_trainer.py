"""AnchorGaussianRewardTrainer: training, metrics, anchors in every form, LoRA, and bad-input errors.

Runs unchanged on TRL 1.12.0 and on the newest TRL (`.ci/run` runs it in both environments)."""

import numpy as np
import pytest
import torch
from datasets import Dataset
from scipy.stats import norm
from transformers import GPT2ForSequenceClassification
from trl import RewardConfig

from trl_anchor import (
    AnchorGaussianRewardConfig,
    AnchorGaussianRewardTrainer,
    AnchorIdentifiabilityWarning,
    GaussianRewardModel,
)
from trl_anchor.rewards.scoring import score_responses

N = 16


def _dataset(anchors: str | None = None, n: int = N, seed: int = 0, **extra) -> Dataset:
    rng = np.random.default_rng(seed)
    words = ["the quick brown fox", "a helpful answer", "this response is rude", "the cartoon shows a cat"]
    rows = {
        "prompt": [f"user {i % 3} asks " for i in range(n)],
        "chosen": [words[i % 2] + f" {i}" for i in range(n)],
        "rejected": [words[2 + i % 2] + f" {i}" for i in range(n)],
        "soft_label": rng.uniform(0.5, 1.0, n).round(3).tolist(),
    }
    if anchors == "score":
        rows["chosen_score"] = rng.normal(1.0, 1.0, n).tolist()
        rows["rejected_score"] = rng.normal(-1.0, 1.0, n).tolist()
    elif anchors == "class":
        rows["chosen_anchor"] = rng.integers(1, 3, n).tolist()
        rows["rejected_anchor"] = rng.integers(0, 2, n).tolist()
    elif anchors == "counts":
        rows["chosen_anchor_counts"] = rng.integers(0, 20, (n, 3)).clip(1).tolist()
        rows["rejected_anchor_counts"] = rng.integers(0, 20, (n, 3)).clip(1).tolist()
    rows.update(extra)
    return Dataset.from_dict(rows)


def _args(tmp_path, **kwargs) -> AnchorGaussianRewardConfig:
    defaults = dict(
        output_dir=str(tmp_path),
        max_steps=4,
        per_device_train_batch_size=4,
        per_device_eval_batch_size=8,
        learning_rate=1e-3,
        logging_steps=2,
        report_to="none",
        bf16=False,
        gradient_checkpointing=False,
        use_cpu=True,
        save_strategy="no",
        seed=0,
    )
    defaults.update(kwargs)
    return AnchorGaussianRewardConfig(**defaults)


def _trainer(tmp_path, tokenizer, config, dataset, model=None, **kwargs):
    torch.manual_seed(0)
    reward_type = kwargs.pop("reward_type", "gaussian")
    if model is None:
        model = (
            GaussianRewardModel.from_config(config)
            if reward_type == "gaussian"
            else GPT2ForSequenceClassification(config)
        )
    eval_dataset = kwargs.pop("eval_dataset", None)
    peft_config = kwargs.pop("peft_config", None)
    return AnchorGaussianRewardTrainer(
        model=model,
        args=_args(tmp_path, reward_type=reward_type, **kwargs),
        train_dataset=dataset,
        eval_dataset=eval_dataset,
        processing_class=tokenizer,
        peft_config=peft_config,
    )


# ------------------------------------------------------------------------------------------------------ training
def test_gaussian_training_logs_metrics_and_learns(tmp_path, tokenizer, tiny_config):
    trainer = _trainer(tmp_path, tokenizer, tiny_config, _dataset("score"), anchor_thresholds="auto", max_steps=12)
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry]
    for key in ("accuracy", "margin", "mean_reward", "mean_std", "pair_loss", "anchor_loss", "anchor_accuracy"):
        assert key in logs[-1], key
    assert logs[-1]["loss"] < logs[0]["loss"]
    changed = {n for n, p in trainer.model.named_parameters() if not torch.equal(p, before[n])}
    assert {"score.weight", "variance_head.weight", "variance_head.bias"} <= changed


def test_auto_thresholds_are_train_score_percentiles_and_recorded(tmp_path, tokenizer, tiny_config):
    data = _dataset("score")
    trainer = _trainer(tmp_path, tokenizer, tiny_config, data, anchor_thresholds="auto", anchor_percentiles=[20, 80])
    scores = np.concatenate([data["chosen_score"], data["rejected_score"]])
    np.testing.assert_allclose(trainer.anchor_thresholds, np.percentile(scores, [20, 80]))
    settings = trainer.model.config.gaussian_reward
    assert settings["anchor_thresholds"] == trainer.anchor_thresholds
    assert settings["anchor_lambda"] == 0.1 and settings["anchor_percentiles"] == [20.0, 80.0]
    # the classes fed to the loss are the number of thresholds each score reaches (score ≥ τ)
    for row, example in zip(data, trainer.train_dataset, strict=True):
        for side in ("chosen", "rejected"):
            expected = sum(row[f"{side}_score"] >= tau for tau in trainer.anchor_thresholds)
            assert example[f"{side}_anchor_targets"] == [float(k == expected) for k in range(3)]


def test_discrete_judge_scores_at_a_threshold_reach_it(tmp_path, tokenizer, tiny_config):
    # 1-10 judge scores; τ = [4, 7] are observed scores, so many responses sit exactly on a threshold.
    chosen = [4, 7, 9, 4, 7, 5, 10, 4] * 2
    rejected = [1, 4, 3, 2, 6, 4, 7, 3] * 2
    data = _dataset(chosen_score=[float(v) for v in chosen], rejected_score=[float(v) for v in rejected])
    trainer = _trainer(tmp_path, tokenizer, tiny_config, data, anchor_thresholds=[4.0, 7.0])
    classes = {4: 1, 7: 2, 9: 2, 5: 1, 10: 2, 1: 0, 3: 0, 2: 0, 6: 1}  # written out by hand: #{τ_k ≤ score}
    for side, scores in (("chosen", chosen), ("rejected", rejected)):
        targets = np.asarray(trainer.train_dataset[f"{side}_anchor_targets"])
        assert targets.argmax(1).tolist() == [classes[v] for v in scores]


def _scipy_pair_and_anchor_terms(out, batch, thresholds, mean_offset, margin=None):
    """The soft probit loss per pair and the count-anchor NLL per response (normalised by the votes), with scipy.
    The anchors read μ + `mean_offset` (GPT-2's `score` has no bias, so the heads' start μ₀ is held outside it)."""
    mean, variance = out.mean.double().numpy(), out.variance.double().numpy()
    half = len(mean) // 2
    gap = mean[:half] - mean[half:] - (0.0 if margin is None else margin)
    z = gap / np.sqrt(variance[:half] + variance[half:])
    p = batch["soft_label"].double().numpy()
    pair = -(p * norm.logcdf(z) + (1 - p) * norm.logcdf(-z))
    cdf = norm.cdf((np.asarray(thresholds)[None, :] - (mean + mean_offset)[:, None]) / np.sqrt(variance)[:, None])
    class_probs = np.diff(np.concatenate([np.zeros((len(mean), 1)), cdf, np.ones((len(mean), 1))], axis=1), axis=1)
    counts = np.concatenate([batch["chosen_anchor_targets"].numpy(), batch["rejected_anchor_targets"].numpy()])
    anchor = -(counts * np.log(class_probs)).sum(1) / counts.sum(1)
    return pair, anchor[:half], anchor[half:]


def test_compute_loss_matches_scipy(tmp_path, tokenizer, tiny_config):
    trainer = _trainer(tmp_path, tokenizer, tiny_config, _dataset("counts"), anchor_thresholds=[-0.5, 0.5],
                       anchor_lambda=0.3)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    model = trainer.model.eval()
    with torch.no_grad():
        model.variance_head.weight.normal_(0, 0.5)
        loss = trainer.compute_loss(model, dict(batch))
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    offset = model.config.gaussian_reward["anchor_mean_offset"]
    assert abs(offset) > 0.01  # the counts sit slightly off τ = ±0.5; without the offset the loss differs by 1e-3
    pair, anchor_c, anchor_r = _scipy_pair_and_anchor_terms(out, batch, [-0.5, 0.5], offset)
    assert loss.item() == pytest.approx(pair.mean() + 0.3 * (anchor_c.mean() + anchor_r.mean()), rel=1e-6)


def test_margin_and_center_rewards_coefficient_enter_the_loss(tmp_path, tokenizer, tiny_config):
    margin = np.linspace(0.0, 1.5, N).round(3).tolist()
    trainer = _trainer(tmp_path, tokenizer, tiny_config, _dataset("counts", margin=margin),
                       anchor_thresholds=[-0.5, 0.5], anchor_lambda=0.3, center_rewards_coefficient=0.02)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4, 8)])
    assert batch["margin"].tolist() == pytest.approx(margin[4:8])
    model = trainer.model.eval()
    with torch.no_grad():
        model.score.weight.normal_(0, 1.0)  # rewards far from 0, so the centring term matters
        loss = trainer.compute_loss(model, dict(batch))
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    offset = model.config.gaussian_reward["anchor_mean_offset"]
    pair, anchor_c, anchor_r = _scipy_pair_and_anchor_terms(out, batch, [-0.5, 0.5], offset, np.asarray(margin[4:8]))
    mean = out.mean.double().numpy()
    center = 0.02 * np.mean((mean[:4] + mean[4:]) ** 2)  # TRL: coefficient · mean((r_c + r_r)²)
    assert center > 1e-4
    assert loss.item() == pytest.approx(pair.mean() + 0.3 * (anchor_c.mean() + anchor_r.mean()) + center, rel=1e-6)


def test_gradient_accumulation_matches_one_large_batch(tmp_path, tokenizer, tiny_config):
    params = {}
    for batch_size, accumulation in ((8, 1), (4, 2)):
        trainer = _trainer(tmp_path / str(batch_size), tokenizer, tiny_config, _dataset("class"), max_steps=2,
                           per_device_train_batch_size=batch_size, gradient_accumulation_steps=accumulation,
                           anchor_thresholds=[-0.5, 0.5], optim="sgd", learning_rate=0.05)
        trainer.train()
        params[accumulation] = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    initial = GaussianRewardModel.from_config(tiny_config).state_dict()
    assert any(not torch.equal(p, initial[n]) for n, p in params[1].items())
    for name, value in params[1].items():
        torch.testing.assert_close(params[2][name], value, rtol=1e-5, atol=1e-6, msg=name)


def test_bt_arm_uses_soft_labels(tmp_path, tokenizer, tiny_config):
    trainer = _trainer(tmp_path, tokenizer, tiny_config, _dataset(), reward_type="bt")
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model.eval(), dict(batch))
        logits = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    rc, rr = logits.squeeze(-1).chunk(2)
    p = batch["soft_label"]
    logsigmoid = torch.nn.functional.logsigmoid
    expected = -(p * logsigmoid(rc - rr) + (1 - p) * logsigmoid(rr - rc)).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    trainer.train()


def test_eval_calibration_metrics_match_direct_scoring(tmp_path, tokenizer, tiny_config):
    data = _dataset("class")
    trainer = _trainer(tmp_path, tokenizer, tiny_config, data, eval_dataset=data, anchor_thresholds=[-0.5, 0.5])
    trainer.train()
    metrics = trainer.evaluate()
    scored = [score_responses(trainer.model, tokenizer, data[side], data["prompt"]) for side in ("chosen", "rejected")]
    prob = norm.cdf((scored[0].mean - scored[1].mean) / np.sqrt(scored[0].variance + scored[1].variance))
    label = np.asarray(data["soft_label"])
    assert metrics["eval_brier"] == pytest.approx(np.mean((prob - label) ** 2), rel=1e-5)
    soft_ce = np.mean(-(label * np.log(prob) + (1 - label) * np.log1p(-prob)))
    assert metrics["eval_soft_ce"] == pytest.approx(soft_ce, rel=1e-5)
    bins = np.minimum((prob * 10).astype(int), 9)  # ECE over 10 equal-width bins, weighted by count
    ece = sum(abs(prob[bins == b].mean() - label[bins == b].mean()) * (bins == b).mean() for b in set(bins))
    assert metrics["eval_ece"] == pytest.approx(ece, rel=1e-5, abs=1e-9)
    assert metrics["eval_accuracy"] == pytest.approx(np.mean((prob > 0.5) == (label > 0.5)))  # labels are ≥ 0.5
    assert "eval_anchor_accuracy" in metrics


def test_count_anchors_take_their_number_of_thresholds_from_the_count_vectors(tmp_path, tokenizer, tiny_config):
    trainer = _trainer(tmp_path, tokenizer, tiny_config, _dataset("counts"))
    assert trainer.anchor_thresholds == [-1.0, 1.0]
    trainer.train()


def test_class_anchors_never_infer_the_number_of_thresholds_from_the_largest_class(tmp_path, tokenizer, tiny_config):
    # Classes 0..2 of a 3-class scale, but this train set happens to hold only classes 0 and 1.
    data = _dataset(chosen_anchor=[1, 0] * (N // 2), rejected_anchor=[0] * N)
    with pytest.raises(ValueError, match=r"anchor_thresholds.*anchor_num_thresholds"):
        _trainer(tmp_path, tokenizer, tiny_config, data)
    trainer = _trainer(tmp_path, tokenizer, tiny_config, data, anchor_num_thresholds=2)
    assert trainer.anchor_thresholds == [-1.0, 1.0]
    assert np.asarray(trainer.train_dataset["chosen_anchor_targets"]).shape == (N, 3)
    with pytest.raises(ValueError, match=r"anchor_num_thresholds=3.*2 thresholds"):
        _trainer(tmp_path, tokenizer, tiny_config, data, anchor_num_thresholds=3, anchor_thresholds=[0.0, 1.0])


def test_anchor_fraction_is_a_seeded_subset(tmp_path, tokenizer, tiny_config):
    data = _dataset("score", n=40)
    thresholds = [-0.5, 0.5]

    def prepared(**kwargs):
        trainer = _trainer(tmp_path, tokenizer, tiny_config, data, anchor_fraction=0.25, anchor_thresholds=thresholds,
                           **kwargs)
        return (np.asarray(trainer.train_dataset["anchor_weight"]), np.asarray(trainer.train_dataset[
            "chosen_anchor_targets"]), np.asarray(trainer.train_dataset["rejected_anchor_targets"]))

    weight, chosen, rejected = prepared()
    assert sorted(set(weight.tolist())) == [0.0, 1.0] and weight.sum() == 10
    kept = weight > 0
    assert not chosen[~kept].any() and not rejected[~kept].any()  # the 30 others lose their anchors entirely
    for side, targets in (("chosen", chosen), ("rejected", rejected)):
        classes = [sum(score >= tau for tau in thresholds) for score in np.asarray(data[f"{side}_score"])[kept]]
        assert targets[kept].argmax(1).tolist() == classes and (targets[kept].sum(1) == 1).all()
    # the subset depends on `anchor_seed` only, not on the training seed
    assert np.array_equal(prepared(seed=1, anchor_seed=0)[0], prepared(seed=2, anchor_seed=0)[0])
    assert not np.array_equal(prepared(anchor_seed=0)[0], prepared(anchor_seed=1)[0])
    assert np.array_equal(prepared(seed=0)[0], weight)  # `anchor_seed=None` uses `seed`


def test_partial_anchors_with_weight(tmp_path, tokenizer, tiny_config):
    data = _dataset(n=8, chosen_anchor=[2, None, 1, None, 2, 1, None, 0],
                    rejected_anchor=[0, None, 1, None, 0, 0, None, 0],
                    anchor_weight=[1.0, 0.0, 1.0, 0.0, 0.5, 1.0, 0.0, 1.0])
    trainer = _trainer(tmp_path, tokenizer, tiny_config, data, anchor_thresholds=[0.0, 1.0])
    targets = trainer.train_dataset["chosen_anchor_targets"]
    assert targets[1] == [0.0, 0.0, 0.0] and targets[0] == [0.0, 0.0, 1.0]
    trainer.train()


def test_conversational_and_implicit_prompt(tmp_path, tokenizer, tiny_config):
    conversational = Dataset.from_dict({
        "prompt": [[{"role": "user", "content": "what is two plus two"}]] * 4,
        "chosen": [[{"role": "assistant", "content": "it is four"}]] * 4,
        "rejected": [[{"role": "assistant", "content": "it is five"}]] * 4,
        "soft_label": [0.9, 0.8, 0.7, 0.6],
    })
    _trainer(tmp_path, tokenizer, tiny_config, conversational, max_steps=1).train()
    implicit = Dataset.from_dict({"chosen": ["the quick fox"] * 4, "rejected": ["the lazy dog"] * 4})
    trainer = _trainer(tmp_path, tokenizer, tiny_config, implicit, max_steps=1)
    assert trainer.train_dataset["soft_label"] == [1.0] * 4  # default label
    trainer.train()


def test_model_id_string_and_save_roundtrip(tmp_path, tokenizer, tiny_config):
    GPT2ForSequenceClassification(tiny_config).save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    trainer = AnchorGaussianRewardTrainer(
        model=str(tmp_path / "base"),
        args=_args(tmp_path / "out", anchor_thresholds=[-1.0, 1.0], variance_floor=1e-3),
        train_dataset=_dataset("class"),
    )
    assert isinstance(trainer.model, GaussianRewardModel)
    trainer.train()
    trainer.save_model(tmp_path / "saved")
    reloaded = GaussianRewardModel.from_pretrained(tmp_path / "saved")
    assert reloaded.config.gaussian_reward["variance_floor"] == 1e-3
    assert reloaded.config.gaussian_reward["anchor_thresholds"] == [-1.0, 1.0]
    torch.testing.assert_close(reloaded.variance_head.weight, trainer.model.variance_head.weight)


def test_plain_reward_config_is_upgraded(tmp_path, tokenizer, tiny_config):
    args = RewardConfig(str(tmp_path), max_steps=1, report_to="none", bf16=False, use_cpu=True,
                        gradient_checkpointing=False, per_device_train_batch_size=4, max_length=77)
    model = GaussianRewardModel.from_config(tiny_config)
    trainer = AnchorGaussianRewardTrainer(model=model, args=args, train_dataset=_dataset(), processing_class=tokenizer)
    assert isinstance(trainer.args, AnchorGaussianRewardConfig) and trainer.args.max_length == 77
    trainer.train()


def test_max_length_filtering_is_reported(tmp_path, tokenizer, tiny_config, caplog):
    data = _dataset(chosen=["word " * 200] + ["short"] * (N - 1))
    with caplog.at_level("WARNING"):
        trainer = _trainer(tmp_path, tokenizer, tiny_config, data, max_length=32)
    assert len(trainer.train_dataset) == N - 1
    assert "1 of 16 train pairs exceed max_length=32" in caplog.text


def test_lora_trains_and_saves_both_heads(tmp_path, tokenizer, tiny_config):
    from peft import LoraConfig
    from safetensors.torch import load_file

    peft_config = LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn"], task_type="SEQ_CLS")
    trainer = _trainer(tmp_path, tokenizer, tiny_config, _dataset("class"), peft_config=peft_config,
                       anchor_thresholds=[-1.0, 1.0], max_steps=3)
    trainer.train()
    trainer.save_model(tmp_path / "adapter")
    saved = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    assert any("variance_head" in key for key in saved) and any("score" in key for key in saved)
    torch.manual_seed(0)  # the same base weights as `_trainer` built
    base = GaussianRewardModel.from_config(tiny_config)
    trained = trainer.model.get_base_model().variance_head
    assert not torch.equal(trained.weight, base.variance_head.weight)
    # the adapter reloads onto a fresh base model and scores exactly like the trained model
    from peft import PeftModel

    reloaded = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    with torch.no_grad():
        expected, again = trainer.model.eval()(**inputs), reloaded(**inputs)
    torch.testing.assert_close(again.mean, expected.mean, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(again.variance, expected.variance, rtol=1e-6, atol=1e-7)


# --------------------------------------------------------------------------------------------------- bad input
def test_missing_chosen_column(tmp_path, tokenizer, tiny_config):
    with pytest.raises(ValueError, match="no `rejected` column"):
        _trainer(tmp_path, tokenizer, tiny_config, _dataset().remove_columns("rejected"))


@pytest.mark.parametrize("bad", [1.5, -0.1, float("nan")])
def test_soft_label_out_of_range(tmp_path, tokenizer, tiny_config, bad):
    labels = [0.7] * N
    labels[5] = bad
    with pytest.raises(ValueError, match=r"`soft_label`.*row 5"):
        _trainer(tmp_path, tokenizer, tiny_config, _dataset(soft_label=labels))


def test_partial_anchors_without_weight(tmp_path, tokenizer, tiny_config):
    chosen = [1] * N
    chosen[3] = None
    with pytest.raises(ValueError, match=r"empty on some rows \(first: row 3\).*anchor_weight"):
        _trainer(tmp_path, tokenizer, tiny_config, _dataset(chosen_anchor=chosen, rejected_anchor=[0] * N),
                 anchor_thresholds=[0.0, 1.0])


def test_thresholds_not_increasing(tmp_path):
    with pytest.raises(ValueError, match="strictly increasing"):
        _args(tmp_path, anchor_thresholds=[0.5, 0.5])
    with pytest.raises(ValueError, match="strictly increasing"):
        _args(tmp_path, anchor_thresholds=[1.0, -1.0])


def test_anchor_class_out_of_range(tmp_path, tokenizer, tiny_config):
    chosen = [1] * N
    chosen[7] = 3
    with pytest.raises(ValueError, match=r"`chosen_anchor`.*0\.\.2.*row 7 has 3"):
        _trainer(tmp_path, tokenizer, tiny_config, _dataset(chosen_anchor=chosen, rejected_anchor=[0] * N),
                 anchor_thresholds=[0.0, 1.0])


@pytest.mark.parametrize("bad, message", [([-1, 2, 3], "negative counts at row 2"), ([0, 0, 0], "all-zero counts")])
def test_bad_counts(tmp_path, tokenizer, tiny_config, bad, message):
    counts = [[1, 2, 3]] * N
    counts[2] = bad
    with pytest.raises(ValueError, match=message):
        _trainer(tmp_path, tokenizer, tiny_config,
                 _dataset(chosen_anchor_counts=counts, rejected_anchor_counts=[[3, 2, 1]] * N))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_scores(tmp_path, tokenizer, tiny_config, bad):
    scores = np.linspace(-1, 1, N).tolist()
    scores[4] = bad
    with pytest.raises(ValueError, match=r"`chosen_score`.*non-finite.*rows \[4\]"):
        _trainer(tmp_path, tokenizer, tiny_config, _dataset(chosen_score=scores, rejected_score=[0.0] * N),
                 anchor_thresholds=[-0.5, 0.5])


def test_all_anchors_in_one_class_warns(tmp_path, tokenizer, tiny_config):
    with pytest.warns(AnchorIdentifiabilityWarning, match="class 1"):
        _trainer(tmp_path, tokenizer, tiny_config, _dataset(chosen_anchor=[1] * N, rejected_anchor=[1] * N),
                 anchor_thresholds=[0.0, 1.0])


def test_num_labels_must_be_one(tmp_path, tokenizer, tiny_config):
    tiny_config.num_labels = 2
    with pytest.raises(ValueError, match="num_labels"):
        _trainer(tmp_path, tokenizer, tiny_config, _dataset(), model=GPT2ForSequenceClassification(tiny_config),
                 reward_type="bt")


def test_tokenizer_without_pad_or_eos(tmp_path, tokenizer, tiny_config):
    tokenizer.pad_token = None
    tokenizer.eos_token = None
    with pytest.raises(ValueError, match="neither a pad token nor an EOS token"):
        _trainer(tmp_path, tokenizer, tiny_config, _dataset())


def test_anchor_column_without_its_pair(tmp_path, tokenizer, tiny_config):
    with pytest.raises(ValueError, match="`chosen_score` but not its pair"):
        _trainer(tmp_path, tokenizer, tiny_config, _dataset(chosen_score=[0.0] * N))


def test_head_learning_rate_gets_its_own_param_groups(tmp_path, tokenizer, tiny_config):
    trainer = _trainer(tmp_path, tokenizer, tiny_config, _dataset(), head_learning_rate=0.05, learning_rate=1e-4)
    optimizer = trainer.create_optimizer()
    heads = {id(p) for m in (trainer.model.score, trainer.model.variance_head) for p in m.parameters()}
    for group in optimizer.param_groups:
        in_head = {id(p) in heads for p in group["params"]}
        assert len(in_head) == 1  # no group mixes head and backbone parameters
        assert group["lr"] == (0.05 if in_head.pop() else 1e-4)
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(trainer.model.parameters()))


def _head_and_backbone_rates(trainer) -> tuple[set[float], set[float]]:
    optimizer = trainer.create_optimizer()
    heads = {id(p) for m in (trainer.model.score, trainer.model.variance_head) for p in m.parameters()}
    head_rates = {g["lr"] for g in optimizer.param_groups if all(id(p) in heads for p in g["params"])}
    backbone_rates = {g["lr"] for g in optimizer.param_groups if not any(id(p) in heads for p in g["params"])}
    return head_rates, backbone_rates


def test_fresh_heads_default_to_a_multiple_of_the_learning_rate(tmp_path, tokenizer, tiny_config):
    trainer = _trainer(tmp_path, tokenizer, tiny_config, _dataset(), learning_rate=1e-4)
    multiplier = trainer.args.head_learning_rate_multiplier
    assert multiplier > 1
    head_rates, backbone_rates = _head_and_backbone_rates(trainer)
    assert sorted(head_rates) == pytest.approx([multiplier * 1e-4]) and backbone_rates == {1e-4}
    # Loaded heads (a trained Gaussian checkpoint) keep the backbone's rate.
    trainer.model.save_pretrained(tmp_path / "trained")
    loaded = GaussianRewardModel.from_pretrained(tmp_path / "trained")
    trainer = _trainer(tmp_path, tokenizer, tiny_config, _dataset(), model=loaded, learning_rate=1e-4)
    assert {g["lr"] for g in trainer.create_optimizer().param_groups} == {1e-4}
    trainer = _trainer(tmp_path, tokenizer, tiny_config, _dataset(), learning_rate=1e-4,
                       head_learning_rate_multiplier=1.0)
    assert {g["lr"] for g in trainer.create_optimizer().param_groups} == {1e-4}


def test_head_learning_rate_is_refused_where_it_cannot_be_applied(tmp_path, tokenizer, tiny_config):
    from trl_anchor.trainer.head_optimizer import check_head_learning_rate

    model = GaussianRewardModel.from_config(tiny_config)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="optimizer passed in `optimizers`"):
        AnchorGaussianRewardTrainer(model=model, args=_args(tmp_path, head_learning_rate=0.05),
                                    train_dataset=_dataset(), processing_class=tokenizer, optimizers=(optimizer, None))
    assert [g["lr"] for g in optimizer.param_groups] == [0.1]  # the user's optimizer is left as it was
    with pytest.raises(ValueError, match="optimizer defined in the DeepSpeed config"):
        check_head_learning_rate(0.05, None, {"optimizer": {"type": "AdamW"}, "zero_optimization": {"stage": 3}})
    check_head_learning_rate(0.05, None, {"zero_optimization": {"stage": 3}})  # the trainer's optimizer: applied
    check_head_learning_rate(None, optimizer, {"optimizer": {"type": "AdamW"}})  # nothing to apply


def test_the_users_config_and_tokenizer_are_not_mutated(tmp_path, tokenizer, tiny_config, minilm_dir):
    from transformers import AutoTokenizer

    GPT2ForSequenceClassification(tiny_config).save_pretrained(tmp_path / "base")
    tokenizer.save_pretrained(tmp_path / "base")
    args = _args(tmp_path / "out", model_init_kwargs={"dtype": "float32"}, anchor_thresholds=[-1.0, 1.0])
    AnchorGaussianRewardTrainer(model=str(tmp_path / "base"), args=args, train_dataset=_dataset("class"))
    assert args.model_init_kwargs == {"dtype": "float32"}

    # a decoder tokenizer without a pad token: the trainer pads with EOS on its own copy
    tokenizer.pad_token = None
    trainer = _trainer(tmp_path, tokenizer, tiny_config, _dataset())
    assert tokenizer.pad_token is None and trainer.processing_class.pad_token == tokenizer.eos_token
    # an encoder tokenizer has no EOS token: the trainer ends text with [SEP] on its own copy
    encoder_tokenizer = AutoTokenizer.from_pretrained(minilm_dir)
    assert encoder_tokenizer.eos_token is None
    trainer = AnchorGaussianRewardTrainer(
        model=GaussianRewardModel.from_pretrained(minilm_dir), args=_args(tmp_path), train_dataset=_dataset(),
        processing_class=encoder_tokenizer,
    )
    assert encoder_tokenizer.eos_token is None and trainer.processing_class.eos_token == "[SEP]"
