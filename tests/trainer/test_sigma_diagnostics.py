"""σ diagnostics: the spread of μ and σ across each batch in the train metrics, and one warning when σ stays flat."""

import numpy as np
import pytest
import torch
from conftest import tiny_gpt2_config
from datasets import Dataset

from trl_anchor import AnchorGaussianRewardConfig, AnchorGaussianRewardTrainer, GaussianRewardModel
from trl_anchor.trainer.reward_metrics import flat_sigma_warning

WORDS = "the quick brown fox jumps over the lazy dog a helpful answer explains the reason step by step".split()


def _data(n=8, seed=0):
    rng = np.random.default_rng(seed)
    texts = [" ".join(rng.choice(WORDS, int(rng.integers(2, 9)))) for _ in range(2 * n)]
    return Dataset.from_dict({
        "prompt": [f"user {i} asks " for i in range(n)], "chosen": texts[:n], "rejected": texts[n:],
        "soft_label": rng.uniform(0.3, 1.0, n).round(3).tolist(),
        "chosen_anchor": rng.integers(0, 3, n).tolist(), "rejected_anchor": rng.integers(0, 3, n).tolist(),
    })


def _trainer(tmp_path, tokenizer, **kwargs):
    torch.manual_seed(0)
    config = tiny_gpt2_config(tokenizer, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    args = AnchorGaussianRewardConfig(
        str(tmp_path), report_to="none", use_cpu=True, bf16=False, anchor_thresholds=[-1.0, 1.0],
        per_device_train_batch_size=4, **kwargs,
    )
    model = GaussianRewardModel.from_config(config)
    return AnchorGaussianRewardTrainer(model=model, args=args, train_dataset=_data(), processing_class=tokenizer)


def test_spread_metrics_are_the_batch_std_of_mu_and_sigma(tmp_path, tokenizer):
    trainer = _trainer(tmp_path, tokenizer, max_steps=1)
    with torch.no_grad():  # a variance head that varies across responses
        trainer.model.variance_head.weight.normal_(0, 1.0)
        trainer.model.score.weight.normal_(0, 1.0)
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    trainer.model.train()
    with torch.no_grad():
        trainer.compute_loss(trainer.model, dict(batch))
        out = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    metrics = trainer._metrics["train"]
    assert metrics["sigma_spread"][-1] == pytest.approx(np.std(out.std.double().numpy()), rel=1e-6)
    assert metrics["reward_spread"][-1] == pytest.approx(np.std(out.mean.double().numpy()), rel=1e-6)
    assert metrics["sigma_spread"][-1] > 0.01


def test_flat_sigma_is_warned_once(tmp_path, tokenizer, caplog):
    # Heads that cannot move: σ is the same for every response (fresh heads start with zero weights).
    trainer = _trainer(tmp_path, tokenizer, max_steps=4, logging_steps=1, learning_rate=1e-12)
    with caplog.at_level("WARNING"):
        trainer.train()
    assert caplog.text.count("The variance head is not learning") == 1
    assert all("sigma_spread" in entry for entry in trainer.state.log_history if "loss" in entry)


def test_flat_sigma_rule():
    window = {"sigma_spread": [0.001, 0.003], "mean_std": [1.0, 1.2]}  # 0.002 < 1% of 1.1
    assert flat_sigma_warning(window, step=30, max_steps=100) is not None
    assert flat_sigma_warning(window, step=20, max_steps=100) is None  # before a quarter of training
    assert flat_sigma_warning({"sigma_spread": [0.02], "mean_std": [1.1]}, step=30, max_steps=100) is None
    assert flat_sigma_warning({}, step=30, max_steps=100) is None  # BT arm: no σ
