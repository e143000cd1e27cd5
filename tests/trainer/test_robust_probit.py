"""The default pairwise loss bounds the influence of a mislabelled pair (`probit_tail`), checked at the variance floor
against the tangent continuation of −log Φ written out with scipy; `probit_tail=None` trains the exact probit."""

import numpy as np
import pytest
import torch
from conftest import tiny_gpt2_config
from datasets import Dataset
from scipy.stats import norm

from trl_anchor import AnchorGaussianRewardConfig, AnchorGaussianRewardTrainer, GaussianRewardModel


def _trainer(tmp_path, tokenizer, **kwargs):
    torch.manual_seed(0)
    model = GaussianRewardModel.from_config(tiny_gpt2_config(tokenizer))
    data = Dataset.from_dict({
        "chosen": ["the quick brown fox", "a helpful answer", "the cat", "four"],
        "rejected": ["this response is rude", "no", "the lazy dog jumps", "it is five"],
        "soft_label": [1.0, 0.7, 1.0, 0.2],
    })
    args = AnchorGaussianRewardConfig(str(tmp_path), report_to="none", use_cpu=True, bf16=False, max_steps=1, **kwargs)
    return AnchorGaussianRewardTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)


def _loss_at_the_floor(trainer):
    model = trainer.model.eval()
    with torch.no_grad():
        model.score.weight.normal_(0, 300.0)  # |Δμ| in the tens: confidently ordered, often the wrong way round
        model.variance_head.bias.fill_(-1e4)  # softplus underflows: σ² = floor = 1e-4
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    model.zero_grad()
    loss, out = trainer.compute_loss(model, dict(batch), return_outputs=True)
    loss.backward()
    mean, variance = out.mean.detach().double().numpy(), out.variance.detach().double().numpy()
    z = (mean[:4] - mean[4:]) / np.sqrt(variance[:4] + variance[4:])
    return loss.item(), z, batch["soft_label"].double().numpy(), model.score.weight.grad.norm().item()


def test_default_loss_has_a_linear_tail_at_the_variance_floor(tmp_path, tokenizer):
    trainer = _trainer(tmp_path, tokenizer)
    assert trainer.args.probit_tail == 5.0 and trainer.model.config.gaussian_reward["probit_tail"] == 5.0
    loss, z, label, grad_norm = _loss_at_the_floor(trainer)
    assert (np.abs(z) > 5).sum() >= 2  # pairs far in the tail on both sides

    def nll(x):  # −log Φ(x), continued below −5 by its tangent
        slope = norm.pdf(5.0) / norm.cdf(-5.0)
        return np.where(x < -5.0, -norm.logcdf(-5.0) + slope * (-5.0 - x), -norm.logcdf(x))

    assert loss == pytest.approx(np.mean(label * nll(z) + (1 - label) * nll(-z)), rel=1e-6)
    exact_trainer = _trainer(tmp_path, tokenizer, probit_tail=None)
    exact_loss, exact_z, _, exact_grad_norm = _loss_at_the_floor(exact_trainer)
    np.testing.assert_allclose(exact_z, z)
    assert exact_loss == pytest.approx(np.mean(-(label * norm.logcdf(z) + (1 - label) * norm.logcdf(-z))), rel=1e-6)
    assert exact_loss > 10 * loss and exact_grad_norm > 10 * grad_norm


def test_probit_tail_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="probit_tail"):
        AnchorGaussianRewardConfig(str(tmp_path), use_cpu=True, probit_tail=0.0)
