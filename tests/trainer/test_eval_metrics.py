"""Evaluation as in TRL: every reward of every pair counts (also in the last partial batch), `compute_metrics` and
`preprocess_logits_for_metrics` receive TRL's logits array, each evaluation loop starts from empty buffers, one
accuracy definition (the majority side of the soft label) for training and evaluation, and calibration without the
training margin. Expected values are written out with numpy/scipy from each sequence scored alone."""

import numpy as np
import pytest
import torch
from conftest import tiny_gpt2_config
from datasets import Dataset
from scipy.stats import norm
from transformers import GPT2ForSequenceClassification
from trl import RewardConfig, RewardTrainer

from trl_anchor import AnchorGaussianRewardConfig, AnchorGaussianRewardTrainer, GaussianRewardModel

WORDS = ["the quick brown fox", "a helpful answer", "this response is rude", "the cartoon shows a cat", "four", "no"]


def _data(n, seed=0, **extra):
    rng = np.random.default_rng(seed)
    rows = {
        "prompt": [f"user {i} asks " for i in range(n)],
        "chosen": [f"{WORDS[i % 6]} {i}" for i in range(n)],
        "rejected": [f"{WORDS[(i + 3) % 6]} {i} {WORDS[i % 2]}" for i in range(n)],
        "soft_label": rng.choice([0.0, 0.2, 0.45, 0.5, 0.6, 0.9, 1.0], n).tolist(),  # many below ½
        "chosen_anchor": rng.integers(0, 3, n).tolist(),
        "rejected_anchor": rng.integers(0, 3, n).tolist(),
    }
    rows.update(extra)
    return Dataset.from_dict(rows)


def _trainer(tmp_path, tokenizer, train, **kwargs):
    torch.manual_seed(0)
    model = GaussianRewardModel.from_config(tiny_gpt2_config(tokenizer))
    with torch.no_grad():  # distinct μ and σ² per response from the start
        model.score.weight.normal_(0, 1.0)
        model.variance_head.weight.normal_(0, 0.5)
    defaults = dict(
        output_dir=str(tmp_path), report_to="none", use_cpu=True, bf16=False, max_steps=1, learning_rate=0.0,
        per_device_train_batch_size=8, per_device_eval_batch_size=4, logging_steps=1, save_strategy="no",
        anchor_thresholds=[-0.5, 0.5],
    )
    args = AnchorGaussianRewardConfig(**{**defaults, **kwargs.pop("args", {})})
    return AnchorGaussianRewardTrainer(
        model=model, args=args, train_dataset=train, processing_class=tokenizer, **kwargs
    )


def _alone(model, ids):
    with torch.no_grad():
        out = model.eval()(input_ids=torch.tensor([ids]))
    return out.mean.item(), out.variance.item()


def _expected(trainer, dataset):
    """Dataset-level metrics written out from each sequence scored alone."""
    prepared = trainer._prepare_dataset(dataset, trainer.processing_class, trainer.args, "eval")
    chosen = np.array([_alone(trainer.model, ids) for ids in prepared["chosen_ids"]])
    rejected = np.array([_alone(trainer.model, ids) for ids in prepared["rejected_ids"]])
    prob = norm.cdf((chosen[:, 0] - rejected[:, 0]) / np.sqrt(chosen[:, 1] + rejected[:, 1]))
    label = np.asarray(dataset["soft_label"])
    # majority side of the soft label; a ½ label counts ½ whatever the prediction
    accuracy = np.mean(np.where(label == 0.5, 0.5, (prob > 0.5) == (label > 0.5)))
    rewards = np.concatenate([chosen[:, 0], rejected[:, 0]])
    return {
        "accuracy": accuracy,
        "margin": np.mean(chosen[:, 0] - rejected[:, 0]),
        "mean_reward": rewards.mean(),
        "min_reward": rewards.min(),
        "max_reward": rewards.max(),
        "mean_std": np.sqrt(np.concatenate([chosen[:, 1], rejected[:, 1]])).mean(),
        "brier": np.mean((prob - label) ** 2),
        "soft_ce": np.mean(-(label * np.log(prob) + (1 - label) * np.log1p(-prob))),
    }


def test_every_reward_of_every_pair_counts_in_the_last_partial_batch(tmp_path, tokenizer):
    evaluation = _data(5, seed=1)  # batches of 4 pairs: the last batch holds one pair
    trainer = _trainer(tmp_path, tokenizer, _data(8))
    metrics = trainer.evaluate(evaluation)
    for key, value in _expected(trainer, evaluation).items():
        assert metrics[f"eval_{key}"] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    rewards = trainer.eval_rewards
    assert rewards["chosen_mean"].shape == rewards["rejected_variance"].shape == (5,)


def test_training_and_evaluation_accuracy_use_the_majority_side_of_the_soft_label(tmp_path, tokenizer):
    data = _data(8, seed=2)
    assert min(data["soft_label"]) < 0.5
    trainer = _trainer(tmp_path, tokenizer, data)  # learning rate 0: the logged step sees the model scored below
    expected = _expected(trainer, data)
    trainer.train()
    logged = next(entry for entry in trainer.state.log_history if "accuracy" in entry)
    assert logged["accuracy"] == pytest.approx(expected["accuracy"])
    assert trainer.evaluate(data)["eval_accuracy"] == pytest.approx(expected["accuracy"])


def test_calibration_ignores_the_training_margin(tmp_path, tokenizer):
    data = _data(8, seed=3, margin=[0.5, 1.0, 0.0, 2.0, 0.3, 0.1, 1.5, 0.7])
    trainer = _trainer(tmp_path, tokenizer, data)
    metrics = trainer.evaluate(data)
    expected = _expected(trainer, data)
    for key in ("brier", "soft_ce", "accuracy"):
        assert metrics[f"eval_{key}"] == pytest.approx(expected[key], rel=1e-5), key


def test_each_evaluation_starts_from_empty_buffers(tmp_path, tokenizer):
    first, second = _data(8, seed=4), _data(6, seed=5)
    trainer = _trainer(tmp_path, tokenizer, first)
    trainer.predict(trainer._prepare_dataset(first, tokenizer, trainer.args, "eval"))
    metrics = trainer.evaluate(second)
    for key, value in _expected(trainer, second).items():
        assert metrics[f"eval_{key}"] == pytest.approx(value, rel=1e-5, abs=1e-6), key
    assert trainer.eval_rewards["chosen_mean"].shape == (6,)


def _recording(store):
    def compute_metrics(prediction):
        store["predictions"], store["label_ids"] = prediction.predictions, prediction.label_ids
        return {"rows": float(len(prediction.predictions))}

    def preprocess_logits_for_metrics(logits, labels):
        store.setdefault("preprocessed", []).append((type(logits), tuple(logits.shape), labels))
        return logits

    return {"compute_metrics": compute_metrics, "preprocess_logits_for_metrics": preprocess_logits_for_metrics}


def test_compute_metrics_receives_what_trl_gives(tmp_path, tokenizer):
    data = _data(8, seed=6)
    ours, theirs = {}, {}
    trainer = _trainer(tmp_path / "ours", tokenizer, data, **_recording(ours))
    metrics = trainer.evaluate(data)
    torch.manual_seed(0)
    trl_trainer = RewardTrainer(
        model=GPT2ForSequenceClassification(tiny_gpt2_config(tokenizer)),
        args=RewardConfig(str(tmp_path / "trl"), report_to="none", use_cpu=True, bf16=False,
                          per_device_eval_batch_size=4),
        train_dataset=data, processing_class=tokenizer, **_recording(theirs),
    )
    trl_metrics = trl_trainer.evaluate(data)
    assert metrics["eval_rows"] == trl_metrics["eval_rows"] == 16
    assert type(ours["predictions"]) is type(theirs["predictions"]) is np.ndarray
    assert ours["predictions"].shape == theirs["predictions"].shape == (16, 1)
    assert ours["label_ids"] == theirs["label_ids"]
    assert ours["preprocessed"] == theirs["preprocessed"]
    # the logits are μ: per batch of 4 pairs, the 4 chosen then the 4 rejected responses
    prepared = trainer._prepare_dataset(data, tokenizer, trainer.args, "eval")
    order = [
        ids for start in (0, 4) for side in ("chosen_ids", "rejected_ids") for ids in prepared[side][start : start + 4]
    ]
    expected = [_alone(trainer.model, ids)[0] for ids in order]
    np.testing.assert_allclose(ours["predictions"][:, 0], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(trainer.eval_rewards["chosen_mean"], [_alone(trainer.model, ids)[0] for ids in
                                                                     prepared["chosen_ids"]], rtol=1e-5, atol=1e-6)
