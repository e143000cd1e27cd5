"""Shared by the adapter tests: the fixture folder and a one-epoch training run of a tiny Gaussian reward model.

(A plain module, not a conftest: `tests/conftest.py` already owns that module name.)"""

import math
from pathlib import Path

import numpy as np
import torch
from conftest import tiny_gpt2_config

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def train_one_epoch(dataset, tokenizer, output_dir, **overrides):
    """Train a tiny GPT-2 Gaussian reward model for one epoch on `dataset` and check that it really trained."""
    from trl_anchor import AnchorGaussianRewardConfig, AnchorGaussianRewardTrainer, GaussianRewardModel

    torch.manual_seed(0)
    model = GaussianRewardModel.from_config(tiny_gpt2_config(tokenizer))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    settings = dict(
        output_dir=str(output_dir),
        num_train_epochs=1,
        per_device_train_batch_size=4,
        learning_rate=1e-3,
        logging_steps=1,
        max_length=256,
        report_to="none",
        use_cpu=True,
        bf16=False,
        gradient_checkpointing=False,
        save_strategy="no",
        seed=0,
    )
    settings.update(overrides)
    trainer = AnchorGaussianRewardTrainer(
        model=model, args=AnchorGaussianRewardConfig(**settings), train_dataset=dataset, processing_class=tokenizer
    )
    trainer.train()
    assert len(trainer.train_dataset) == len(dataset)  # nothing was cut by max_length
    assert trainer.state.global_step == math.ceil(len(dataset) / settings["per_device_train_batch_size"])
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert losses and np.isfinite(losses).all()
    assert any(not torch.equal(p, before[n]) for n, p in trainer.model.named_parameters())
    return trainer
