"""The anchor term of the training loss against expectations written out with scipy: the paper's normalisation (a
mean over each side's anchored responses) by default, the per-pair mean as an option, unequal weights and partial
anchors."""

import numpy as np
import pytest
import torch
from conftest import tiny_gpt2_config
from datasets import Dataset
from scipy.stats import norm

from trl_anchor import AnchorGaussianRewardConfig, AnchorGaussianRewardTrainer, GaussianRewardModel

THRESHOLDS = [-0.2, 0.3]
CHOSEN_CLASS = [2, None, 1, 0, 2, 1]
REJECTED_CLASS = [0, None, 1, 0, 1, 2]
WEIGHTS = [1.0, 0.0, 0.5, 2.0, 0.0, 1.5]  # pairs 1 and 4 have no anchors (4's classes are ignored)
SOFT = [0.9, 0.4, 0.7, 1.0, 0.55, 0.2]


def _trainer(tmp_path, tokenizer, **kwargs):
    torch.manual_seed(0)
    model = GaussianRewardModel.from_config(tiny_gpt2_config(tokenizer))
    with torch.no_grad():
        model.variance_head.weight.normal_(0, 0.5)
    data = Dataset.from_dict({
        "prompt": [f"user {i} asks " for i in range(6)],
        "chosen": ["the quick brown fox", "a helpful answer", "the cat", "four", "step by step", "it is four"],
        "rejected": ["rude", "wrong answer here", "no", "the lazy dog", "unhelpful", "this is wrong"],
        "soft_label": SOFT,
        "chosen_anchor": CHOSEN_CLASS,
        "rejected_anchor": REJECTED_CLASS,
        "anchor_weight": WEIGHTS,
    })
    args = AnchorGaussianRewardConfig(
        str(tmp_path), report_to="none", use_cpu=True, bf16=False, max_steps=1, anchor_thresholds=THRESHOLDS,
        anchor_lambda=0.3, **kwargs,
    )
    return AnchorGaussianRewardTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)


def _class_nll(mean, std, cls) -> float:
    edges = [-np.inf, *THRESHOLDS, np.inf]  # class j: τ_j ≤ r < τ_{j+1}
    return -np.log(norm.cdf((edges[cls + 1] - mean) / std) - norm.cdf((edges[cls] - mean) / std))


def _loss_and_expected_terms(trainer):
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(6)])
    model = trainer.model.eval()
    with torch.no_grad():
        loss = trainer.compute_loss(model, dict(batch)).item()
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    mean, std = out.mean.double().numpy(), out.std.double().numpy()
    gap = (mean[:6] - mean[6:]) / np.sqrt(std[:6] ** 2 + std[6:] ** 2)
    soft = np.asarray(SOFT)
    pair = np.mean(-(soft * norm.logcdf(gap) + (1 - soft) * norm.logcdf(-gap)))
    weighted = {"chosen": [], "rejected": []}
    for i, w in enumerate(WEIGHTS):
        if w > 0:
            weighted["chosen"].append(w * _class_nll(mean[i], std[i], CHOSEN_CLASS[i]))
            weighted["rejected"].append(w * _class_nll(mean[6 + i], std[6 + i], REJECTED_CLASS[i]))
    return loss, pair, weighted


def test_anchor_term_is_a_mean_over_the_anchored_responses(tmp_path, tokenizer):
    loss, pair, weighted = _loss_and_expected_terms(_trainer(tmp_path, tokenizer))
    # the paper's code: Σ_anchored w·L_anchor / (number of anchored responses), per side; 4 of 6 pairs are anchored
    anchor = sum(weighted["chosen"]) / 4 + sum(weighted["rejected"]) / 4
    assert loss == pytest.approx(pair + 0.3 * anchor, rel=1e-6)


def test_per_pair_normalisation_is_kept_as_an_option(tmp_path, tokenizer):
    loss, pair, weighted = _loss_and_expected_terms(_trainer(tmp_path, tokenizer, anchor_normalization="pairs"))
    anchor = (sum(weighted["chosen"]) + sum(weighted["rejected"])) / 6
    assert loss == pytest.approx(pair + 0.3 * anchor, rel=1e-6)


def test_normalisation_must_be_known(tmp_path):
    with pytest.raises(ValueError, match="anchor_normalization"):
        AnchorGaussianRewardConfig(str(tmp_path), use_cpu=True, anchor_normalization="responses")
