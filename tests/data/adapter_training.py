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
    steps_per_epoch = math.ceil(len(dataset) / settings["per_device_train_batch_size"])
    assert trainer.state.global_step == steps_per_epoch * settings["num_train_epochs"]
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert losses and np.isfinite(losses).all()
    assert any(not torch.equal(p, before[n]) for n, p in trainer.model.named_parameters())
    return trainer


def train_and_check_learning(dataset, tokenizer, output_dir, epochs: int = 15):
    """Train on the adapter's pairs for several epochs and check the model learned them: the soft cross-entropy of
    its pairwise probabilities against the adapter's soft labels falls well below where it started, and every pair's
    preferred side ends up scored higher. A smoke run cannot tell a working adapter from one whose columns the
    trainer silently ignores."""
    from trl_anchor.pipelines.evaluation import evaluate_reward_model

    def fit(model):
        result = evaluate_reward_model(model, tokenizer, dataset, allow_training_data=True)
        return result.metrics["soft_ce"], result.metrics["accuracy"]

    from trl_anchor import GaussianRewardModel

    torch.manual_seed(0)  # the same initial model as `train_one_epoch`'s
    before, _ = fit(GaussianRewardModel.from_config(tiny_gpt2_config(tokenizer)))
    trainer = train_one_epoch(dataset, tokenizer, output_dir, num_train_epochs=epochs)
    after, accuracy = fit(trainer.model)
    assert after < before - 0.1, (before, after)
    assert accuracy == 1.0
    return trainer
