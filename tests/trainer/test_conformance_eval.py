"""Drop-in conformance, evaluation: every eval dataset form TRL's `RewardTrainer` accepts (at init and in
`evaluate`), evaluation during training with one or several eval datasets, and `compute_metrics`; both modes."""

import pytest
from conformance import MODES, preference_dataset, reward_config, tiny_model_ids
from datasets import DatasetDict, IterableDatasetDict

from trl_anchor import AnchorGaussianRewardTrainer


@pytest.fixture(scope="session")
def model_ids(tmp_path_factory, tokenizer_dir) -> dict[str, str]:
    return tiny_model_ids(tmp_path_factory, tokenizer_dir)

EVAL_FORMS = [
    "dataset", "iterable_dataset", "dataset_dict", "iterable_dataset_dict", "dict_of_dataset",
    "dict_of_iterable_dataset",
]


def _eval_dataset(form: str):
    split = preference_dataset(n=4)
    if "iterable" in form:
        split = split.to_iterable_dataset()
    if form in ("dataset", "iterable_dataset"):
        return split
    if form in ("dataset_dict", "iterable_dataset_dict"):
        return (IterableDatasetDict if "iterable" in form else DatasetDict)({"data1": split, "data2": split})
    return {"data1": split, "data2": split}


def _trainer(tmp_path, model_ids, reward_type, eval_dataset=None, **kwargs):
    return AnchorGaussianRewardTrainer(
        model=model_ids["qwen2"],
        args=reward_config(tmp_path, reward_type, **kwargs),
        train_dataset=preference_dataset(),
        eval_dataset=eval_dataset,
    )


@pytest.mark.parametrize("reward_type", MODES)
@pytest.mark.parametrize("form", EVAL_FORMS + ["none"])
def test_init_with_eval_dataset(tmp_path, model_ids, reward_type, form):
    trainer = _trainer(tmp_path, model_ids, reward_type, None if form == "none" else _eval_dataset(form))
    if form == "none":
        assert trainer.eval_dataset is None
    elif isinstance(trainer.eval_dataset, dict):
        assert set(trainer.eval_dataset) == {"data1", "data2"}
        for split in trainer.eval_dataset.values():  # each split tokenized on its own
            assert "chosen_ids" in next(iter(split))
    else:
        assert "chosen_ids" in next(iter(trainer.eval_dataset))


@pytest.mark.parametrize("reward_type", MODES)
@pytest.mark.parametrize("form", EVAL_FORMS)
def test_evaluate_with_raw_eval_dataset(tmp_path, model_ids, reward_type, form):
    # `evaluate` prepares a raw dataset passed to it as `__init__` prepares `eval_dataset`.
    metrics = _trainer(tmp_path, model_ids, reward_type).evaluate(eval_dataset=_eval_dataset(form))
    names = ["eval_loss"] if form in ("dataset", "iterable_dataset") else ["eval_data1_loss", "eval_data2_loss"]
    for name in names:
        assert metrics[name] > 0


@pytest.mark.parametrize("reward_type", MODES)
def test_train_with_eval(tmp_path, model_ids, reward_type):
    trainer = _trainer(tmp_path, model_ids, reward_type, preference_dataset(n=4), eval_strategy="steps", eval_steps=1)
    trainer.train()
    evals = [entry for entry in trainer.state.log_history if "eval_loss" in entry]
    assert [entry["step"] for entry in evals] == [1, 2]
    assert all(entry["eval_loss"] > 0 for entry in evals)


@pytest.mark.parametrize("reward_type", MODES)
def test_train_with_multiple_eval_datasets(tmp_path, model_ids, reward_type):
    trainer = _trainer(
        tmp_path, model_ids, reward_type, _eval_dataset("dict_of_dataset"), eval_strategy="steps", eval_steps=2
    )
    trainer.train()
    for name in ("eval_data1_loss", "eval_data2_loss"):
        assert [entry["step"] for entry in trainer.state.log_history if name in entry] == [2]


@pytest.mark.parametrize("reward_type", MODES)
def test_train_with_compute_metrics(tmp_path, model_ids, reward_type):
    trainer = AnchorGaussianRewardTrainer(
        model=model_ids["qwen2"],
        args=reward_config(tmp_path, reward_type, eval_strategy="steps", eval_steps=2),
        train_dataset=preference_dataset(),
        eval_dataset=preference_dataset(n=4),
        compute_metrics=lambda eval_prediction: {"my_metric": 0.123},
    )
    trainer.train()
    evals = [entry for entry in trainer.state.log_history if "eval_loss" in entry]
    assert evals and evals[-1]["eval_my_metric"] == 0.123
