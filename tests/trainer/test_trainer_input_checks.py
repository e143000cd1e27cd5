"""Inputs that used to train silently wrong or fail deep inside TRL/numpy get one clear error from the trainer
(issue 12): empty data, every pair over `max_length`, no anchor at all, text/ragged anchor values, `None` responses,
and resuming a checkpoint with other anchor thresholds."""

import numpy as np
import pytest
import torch
from conftest import tiny_gpt2_config
from datasets import Dataset

from trl_anchor import AnchorGaussianRewardConfig, AnchorGaussianRewardTrainer, GaussianRewardModel


def _data(n=8, **extra):
    rows = {
        "prompt": [f"user {i % 3} asks " for i in range(n)],
        "chosen": [f"a helpful answer {i}" for i in range(n)],
        "rejected": [f"this response is rude {i}" for i in range(n)],
    }
    rows.update(extra)
    return Dataset.from_dict(rows)


def _args(tmp_path, **kwargs):
    defaults = dict(
        output_dir=str(tmp_path), max_steps=2, per_device_train_batch_size=4, learning_rate=1e-3, report_to="none",
        bf16=False, use_cpu=True, save_strategy="no", seed=0, logging_steps=1,
    )
    return AnchorGaussianRewardConfig(**{**defaults, **kwargs})


def _trainer(tmp_path, tokenizer, dataset, **kwargs):
    torch.manual_seed(0)
    model = GaussianRewardModel.from_config(tiny_gpt2_config(tokenizer))
    return AnchorGaussianRewardTrainer(
        model=model, args=_args(tmp_path, **kwargs), train_dataset=dataset, processing_class=tokenizer
    )


def test_empty_train_set(tmp_path, tokenizer):
    with pytest.raises(ValueError, match="train dataset is empty"):
        _trainer(tmp_path, tokenizer, _data(n=0))


def test_empty_eval_set(tmp_path, tokenizer):
    model = GaussianRewardModel.from_config(tiny_gpt2_config(tokenizer))
    with pytest.raises(ValueError, match="holdout dataset is empty"):
        AnchorGaussianRewardTrainer(model=model, args=_args(tmp_path), train_dataset=_data(),
                                    eval_dataset={"holdout": _data(n=0)}, processing_class=tokenizer)


def test_every_pair_over_max_length(tmp_path, tokenizer):
    with pytest.raises(ValueError, match="All 8 train pairs exceed max_length=3"):
        _trainer(tmp_path, tokenizer, _data(), max_length=3)


def test_all_count_anchors_empty(tmp_path, tokenizer):
    data = _data(chosen_anchor_counts=[None] * 8, rejected_anchor_counts=[None] * 8, anchor_weight=[0.0] * 8)
    with pytest.raises(ValueError, match="`chosen_anchor_counts` is empty on every row"):
        _trainer(tmp_path, tokenizer, data)


def test_all_class_anchors_weighted_out(tmp_path, tokenizer):
    data = _data(chosen_anchor=[1] * 8, rejected_anchor=[0] * 8, anchor_weight=[0.0] * 8)
    with pytest.raises(ValueError, match="No train pair has an anchor"):
        _trainer(tmp_path, tokenizer, data, anchor_num_thresholds=1)


def test_anchor_fraction_zero_still_trains_without_anchors(tmp_path, tokenizer):
    data = _data(chosen_anchor=[1] * 8, rejected_anchor=[0] * 8)
    trainer = _trainer(tmp_path, tokenizer, data, anchor_num_thresholds=1, anchor_fraction=0.0)
    assert not np.asarray(trainer.train_dataset["anchor_weight"]).any()


def test_typo_class_is_named(tmp_path, tokenizer):
    data = _data(chosen_anchor=[1, 2, 100, 1, 2, 1, 2, 1], rejected_anchor=[0] * 8)
    with pytest.raises(ValueError, match="`chosen_anchor` must hold integer anchor classes in 0..2.*row 2 has 100"):
        _trainer(tmp_path, tokenizer, data, anchor_thresholds=[-1.0, 1.0])


@pytest.mark.parametrize(
    "column, values, message",
    [
        ("soft_label", ["0.9", "0.8", "high", "0.7", "0.6", "0.9", "0.8", "0.7"], r"`soft_label`.*row 2 has 'high'"),
        ("margin", ["0", "0", "0", "0", "x", "0", "0", "0"], r"`margin`.*row 4 has 'x'"),
    ],
)
def test_text_in_numeric_columns_names_the_row(tmp_path, tokenizer, column, values, message):
    with pytest.raises(ValueError, match=message):
        _trainer(tmp_path, tokenizer, _data(**{column: values}))


def test_text_scores_name_the_row(tmp_path, tokenizer):
    scores = ["1.0", "2.0", "3.0", "n/a", "1.0", "2.0", "3.0", "4.0"]
    with pytest.raises(ValueError, match=r"`chosen_score/rejected_score`.*row 3 has 'n/a'"):
        _trainer(tmp_path, tokenizer, _data(chosen_score=scores, rejected_score=["0.0"] * 8), anchor_thresholds="auto")
    with pytest.raises(ValueError, match=r"`chosen_score`.*row 3 has 'n/a'"):
        _trainer(tmp_path, tokenizer, _data(chosen_score=scores, rejected_score=["0.0"] * 8), anchor_thresholds=[0.5])


def test_ragged_counts_name_the_row(tmp_path, tokenizer):
    counts = [[1, 2, 3]] * 5 + [[1, 2]] + [[1, 2, 3]] * 2
    data = _data(chosen_anchor_counts=counts, rejected_anchor_counts=[[3, 2, 1]] * 8)
    with pytest.raises(ValueError, match=r"`chosen_anchor_counts`.*3 counts per row.*row 5 has \[1, 2\]"):
        _trainer(tmp_path, tokenizer, data)


def test_missing_weight_with_auto_thresholds_names_the_row(tmp_path, tokenizer):
    data = _data(chosen_score=list(np.linspace(0, 1, 8)), rejected_score=list(np.linspace(-1, 0, 8)),
                 anchor_weight=[1.0, 1.0, None, 1.0, 1.0, 1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match=r"`anchor_weight` must be finite and ≥ 0; row 2 has nan"):
        _trainer(tmp_path, tokenizer, data, anchor_thresholds="auto")


def test_none_response_names_the_row(tmp_path, tokenizer):
    rejected = [f"no {i}" for i in range(8)]
    rejected[6] = None
    with pytest.raises(ValueError, match=r"`rejected`.*None\) at rows \[6\]"):
        _trainer(tmp_path, tokenizer, _data(rejected=rejected))


def test_resume_with_other_thresholds_is_refused(tmp_path, tokenizer):
    data = _data(chosen_anchor=[1, 2] * 4, rejected_anchor=[0, 1] * 4)
    trainer = _trainer(tmp_path, tokenizer, data, anchor_thresholds=[-1.0, 1.0], save_strategy="steps", save_steps=2)
    trainer.train()
    checkpoint = tmp_path / "checkpoint-2"
    assert checkpoint.is_dir()
    other = _trainer(tmp_path, tokenizer, data, anchor_thresholds=[-0.5, 0.5], max_steps=4)
    with pytest.raises(ValueError, match=r"anchor_thresholds: checkpoint \[-1.0, 1.0\], this run \[-0.5, 0.5\]"):
        other.train(resume_from_checkpoint=str(checkpoint))
    with pytest.raises(ValueError, match="other anchors"):
        other.train(resume_from_checkpoint=True)
    same = _trainer(tmp_path, tokenizer, data, anchor_thresholds=[-1.0, 1.0], max_steps=4)
    assert same.train(resume_from_checkpoint=str(checkpoint)).global_step == 4
