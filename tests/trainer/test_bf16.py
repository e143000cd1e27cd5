"""bf16 training on CPU (bf16 autocast runs there): both reward heads stay float32 and move at a 7B learning rate, and
the in-memory model scores exactly like the saved one after `trainer.train()` (no autocast left on its forward)."""

import numpy as np
import pytest
import torch
from conftest import tiny_gpt2_config
from datasets import Dataset
from transformers import GPT2ForSequenceClassification

from trl_anchor import AnchorGaussianRewardConfig, AnchorGaussianRewardTrainer, GaussianRewardModel
from trl_anchor.rewards.scoring import score_responses

TEXTS = ["the quick brown fox", "a helpful answer explains the reason", "this response is rude", "the cat", "four"]


def _data(n=16):
    rng = np.random.default_rng(0)
    return Dataset.from_dict({
        "prompt": [f"user {i % 3} asks " for i in range(n)],
        "chosen": [TEXTS[i % 2] + f" {i}" for i in range(n)],
        "rejected": [TEXTS[2 + i % 3] + f" {i}" for i in range(n)],
        "soft_label": rng.uniform(0.5, 1.0, n).round(3).tolist(),
        "chosen_anchor": rng.integers(1, 3, n).tolist(),
        "rejected_anchor": rng.integers(0, 2, n).tolist(),
    })


def _base_checkpoint(path, tokenizer):
    torch.manual_seed(0)
    GPT2ForSequenceClassification(tiny_gpt2_config(tokenizer)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def _args(tmp_path, **kwargs):
    defaults = dict(
        output_dir=str(tmp_path / "out"), max_steps=3, per_device_train_batch_size=4, report_to="none", use_cpu=True,
        bf16=True, save_strategy="no", seed=0, anchor_thresholds=[-1.0, 1.0], logging_steps=1,
    )
    return AnchorGaussianRewardConfig(**{**defaults, **kwargs})


def test_bf16_checkpoint_keeps_float32_heads_that_compute_in_float32(tmp_path, tokenizer):
    path = _base_checkpoint(tmp_path / "base", tokenizer)
    model = GaussianRewardModel.from_pretrained(path, dtype=torch.bfloat16).eval()
    assert model.transformer.h[0].attn.c_attn.weight.dtype == torch.bfloat16
    for param in (model.score.weight, model.variance_head.weight, model.variance_head.bias):
        assert param.dtype == torch.float32
    ids = torch.tensor([tokenizer("the quick brown fox<eos>")["input_ids"]])
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(input_ids=ids)
        hidden = model.transformer(input_ids=ids).last_hidden_state[0, -1]
    assert out.logits.dtype == torch.float32
    # μ is the float32 product of the (bf16) hidden state with the float32 head, not a bf16-rounded value
    expected = (hidden.double() @ model.score.weight[0].double()).item()
    assert out.mean.item() == pytest.approx(expected, rel=1e-6)


def test_bf16_training_moves_both_heads_and_scores_like_the_reloaded_model(tmp_path, tokenizer):
    path = _base_checkpoint(tmp_path / "base", tokenizer)
    args = _args(tmp_path, learning_rate=1e-5, model_init_kwargs={"dtype": "bfloat16"})
    trainer = AnchorGaussianRewardTrainer(model=path, args=args, train_dataset=_data(), processing_class=tokenizer)
    model = trainer.model
    assert model.transformer.h[0].mlp.c_fc.weight.dtype == torch.bfloat16
    heads = {"score.weight": model.score.weight, "variance_head.weight": model.variance_head.weight,
             "variance_head.bias": model.variance_head.bias}
    before = {name: p.detach().clone() for name, p in heads.items()}
    assert all(p.dtype == torch.float32 for p in heads.values())
    trainer.train()
    for name, param in heads.items():
        # a 1e-5 Adam step cannot move a bf16 bias of ≈0.54 (its spacing there is 2^-8 ≈ 0.004)
        assert param.dtype == torch.float32 and not torch.equal(param.detach(), before[name]), name
    trainer.save_model(tmp_path / "saved")
    reloaded = GaussianRewardModel.from_pretrained(tmp_path / "saved").eval()
    in_memory = score_responses(model, tokenizer, TEXTS, batch_size=5)
    again = score_responses(reloaded, tokenizer, TEXTS, batch_size=5)
    np.testing.assert_allclose(in_memory.mean, again.mean, rtol=0, atol=1e-7)
    np.testing.assert_allclose(in_memory.variance, again.variance, rtol=0, atol=1e-7)


def test_float32_weights_under_bf16_autocast_score_like_the_reloaded_model(tmp_path, tokenizer):
    """TRL's default `bf16=True` on float32 weights: accelerate wraps the forward in autocast for training; afterwards
    the in-memory model must score at float32 precision, as the saved weights do."""
    torch.manual_seed(0)
    model = GaussianRewardModel.from_config(tiny_gpt2_config(tokenizer))
    trainer = AnchorGaussianRewardTrainer(model=model, args=_args(tmp_path, learning_rate=1e-3), train_dataset=_data(),
                                          processing_class=tokenizer)
    trainer.train()
    trainer.save_model(tmp_path / "saved")
    reloaded = GaussianRewardModel.from_pretrained(tmp_path / "saved").eval()
    in_memory = score_responses(trainer.model, tokenizer, TEXTS, batch_size=5)
    again = score_responses(reloaded, tokenizer, TEXTS, batch_size=5)
    np.testing.assert_allclose(in_memory.mean, again.mean, rtol=0, atol=1e-6)
    np.testing.assert_allclose(in_memory.variance, again.variance, rtol=0, atol=1e-6)
    metrics = trainer.evaluate(_data(8))  # evaluation still runs (under autocast, as in training) and leaves it off
    assert np.isfinite(metrics["eval_loss"])
    np.testing.assert_allclose(score_responses(trainer.model, tokenizer, TEXTS, batch_size=5).mean, again.mean,
                               rtol=0, atol=1e-6)
