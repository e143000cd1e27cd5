"""Drop-in conformance, models and datasets: what TRL's `test_reward_trainer.py` checks of `trl.RewardTrainer`, run
against `AnchorGaussianRewardTrainer` in both modes (`reward_type="gaussian"` and `"bt"`).

Covered here: the collator (padding, `pad_to_multiple_of`, a single example, the pad id, margins), model ids of
several architectures and every dataset type, model instances (num_labels check, no weight copy), a
sequence-classification checkpoint, `dtype` in `model_init_kwargs`, pre-tokenized data (current and legacy column
names), iterable datasets, `train_dataset` required, gradient checkpointing (reentrant and not), margin,
`center_rewards_coefficient` and the model-card tags."""

import pytest
import torch
from conformance import (
    DATASET_TYPES,
    MODES,
    assert_all_changed,
    assert_trained,
    preference_dataset,
    reward_config,
    snapshot,
    tiny_model_ids,
    train_and_assert_all_changed,
)
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from trl_anchor import AnchorGaussianRewardTrainer, DataCollatorForAnchoredPreference, GaussianRewardModel


@pytest.fixture(scope="session")
def model_ids(tmp_path_factory, tokenizer_dir) -> dict[str, str]:
    return tiny_model_ids(tmp_path_factory, tokenizer_dir)


# -------------------------------------------------------------------------------------------------------- collator
@pytest.mark.parametrize("pad, multiple", [(0, None), (42, None), (0, 4)])
def test_collator_pads_chosen_then_rejected(pad, multiple):
    collator = DataCollatorForAnchoredPreference(pad_token_id=pad, pad_to_multiple_of=multiple)
    batch = collator([
        {"chosen_ids": [5, 6], "rejected_ids": [7, 8, 9], "margin": 0.5},
        {"chosen_ids": [1], "rejected_ids": [2, 3], "margin": -1.0},
    ])
    ids = [[5, 6, pad], [1, pad, pad], [7, 8, 9], [2, 3, pad]]  # chosen rows first, right padding
    mask = [[1, 1, 0], [1, 0, 0], [1, 1, 1], [1, 1, 0]]
    if multiple == 4:
        ids, mask = [row + [pad] for row in ids], [row + [0] for row in mask]
    torch.testing.assert_close(batch["input_ids"], torch.tensor(ids))
    torch.testing.assert_close(batch["attention_mask"], torch.tensor(mask))
    torch.testing.assert_close(batch["margin"], torch.tensor([0.5, -1.0]))
    torch.testing.assert_close(batch["soft_label"], torch.tensor([1.0, 1.0]))  # a hard preference by default


def test_collator_single_example():
    batch = DataCollatorForAnchoredPreference(pad_token_id=0)([{"chosen_ids": [5, 6], "rejected_ids": [7, 8, 9]}])
    torch.testing.assert_close(batch["input_ids"], torch.tensor([[5, 6, 0], [7, 8, 9]]))
    torch.testing.assert_close(batch["attention_mask"], torch.tensor([[1, 1, 0], [1, 1, 1]]))
    assert "margin" not in batch


# ---------------------------------------------------------------------------------------------------------- models
@pytest.mark.parametrize("reward_type", MODES)
@pytest.mark.parametrize(
    # Three architectures (dense, MoE, Llama with pad == EOS) and the four dataset types in four runs.
    "model_name, dataset_type", list(zip(["qwen2", "qwen3_moe", "llama", "qwen2"], DATASET_TYPES, strict=True))
)
def test_train_model_id(tmp_path, model_ids, reward_type, model_name, dataset_type):
    trainer = AnchorGaussianRewardTrainer(
        model=model_ids[model_name],
        args=reward_config(tmp_path, reward_type),
        train_dataset=preference_dataset(dataset_type),
    )
    assert isinstance(trainer.model, GaussianRewardModel) == (reward_type == "gaussian")
    train_and_assert_all_changed(trainer)


@pytest.mark.parametrize("reward_type", MODES)
def test_model_instance_is_trained_in_place(tmp_path, model_ids, reward_type):
    model = AutoModelForSequenceClassification.from_pretrained(model_ids["qwen2"], num_labels=1)
    storage = {name: param.data_ptr() for name, param in model.named_parameters()}
    trainer = AnchorGaussianRewardTrainer(
        model=model, args=reward_config(tmp_path, reward_type), train_dataset=preference_dataset()
    )
    # The user's model is trained, not a copy of it: same object, same parameter storage.
    assert trainer.model is model
    assert {name: p.data_ptr() for name, p in model.named_parameters() if name in storage} == storage
    if reward_type == "gaussian":
        assert isinstance(model, GaussianRewardModel) and model.config.gaussian_reward["reward_type"] == "gaussian"
        assert set(dict(model.named_parameters())) - set(storage) == {"variance_head.weight", "variance_head.bias"}
    else:
        assert set(dict(model.named_parameters())) == set(storage)
    train_and_assert_all_changed(trainer)


@pytest.mark.parametrize("reward_type", MODES)
def test_model_with_num_labels_not_one_is_refused(tmp_path, model_ids, reward_type):
    model = AutoModelForSequenceClassification.from_pretrained(model_ids["qwen2"])  # a causal LM: 2 labels
    model_class = type(model)
    with pytest.raises(ValueError, match=r"reward models require `num_labels=1`"):
        AnchorGaussianRewardTrainer(
            model=model, args=reward_config(tmp_path, reward_type), train_dataset=preference_dataset()
        )
    assert type(model) is model_class and not hasattr(model, "variance_head")  # refused untouched


@pytest.mark.parametrize("reward_type", MODES)
def test_train_from_sequence_classification_checkpoint(tmp_path, model_ids, reward_type):
    saved = AutoModelForSequenceClassification.from_pretrained(model_ids["qwen2_seq_cls"])
    trainer = AnchorGaussianRewardTrainer(
        model=model_ids["qwen2_seq_cls"],
        args=reward_config(tmp_path, reward_type),
        train_dataset=preference_dataset(),
    )
    torch.testing.assert_close(trainer.model.score.weight, saved.score.weight)  # the checkpoint's head is kept
    train_and_assert_all_changed(trainer)


@pytest.mark.parametrize("reward_type", MODES)
def test_model_init_kwargs_dtype(tmp_path, model_ids, reward_type):
    args = reward_config(tmp_path, reward_type, model_init_kwargs={"dtype": torch.bfloat16}, learning_rate=0.1)
    trainer = AnchorGaussianRewardTrainer(model=model_ids["qwen2"], args=args, train_dataset=preference_dataset())
    before = snapshot(trainer)
    trainer.train()
    assert_trained(trainer)
    heads = ("score.", "variance_head.")  # reward heads may be kept in fp32 for the probabilities
    for name, old in before.items():
        new = trainer.model.get_parameter(name)
        if not name.startswith(heads):
            assert new.dtype == torch.bfloat16, name
        if "layernorm" not in name:  # as in TRL: tiny bf16 updates of a norm scale may round away
            assert not torch.equal(old, new), f"{name} did not change"


def test_train_dataset_is_required(tmp_path, model_ids):
    for reward_type in MODES:
        with pytest.raises(ValueError, match="`train_dataset` is required"):
            AnchorGaussianRewardTrainer(model=model_ids["qwen2"], args=reward_config(tmp_path, reward_type))


# --------------------------------------------------------------------------------------------------------- datasets
@pytest.mark.parametrize("reward_type", MODES)
@pytest.mark.parametrize("columns", [("chosen_ids", "rejected_ids"), ("chosen_input_ids", "rejected_input_ids")])
def test_train_with_pretokenized_data(tmp_path, model_ids, reward_type, columns):
    tokenizer = AutoTokenizer.from_pretrained(model_ids["qwen2"])
    text = preference_dataset()
    dataset = text.map(
        lambda row: {columns[0]: tokenizer(row["chosen"]).input_ids, columns[1]: tokenizer(row["rejected"]).input_ids},
        remove_columns=["chosen", "rejected"],
    )
    args = reward_config(tmp_path, reward_type)
    if columns[0] == "chosen_input_ids":  # legacy names: accepted with TRL's deprecation warning
        with pytest.warns(FutureWarning, match="will not be supported in v1"):
            trainer = AnchorGaussianRewardTrainer(model=model_ids["qwen2"], args=args, train_dataset=dataset)
    else:
        trainer = AnchorGaussianRewardTrainer(model=model_ids["qwen2"], args=args, train_dataset=dataset)
    columns_now = trainer.train_dataset.column_names
    assert {"chosen_ids", "rejected_ids"} <= set(columns_now)
    assert not {"chosen_input_ids", "rejected_input_ids"} & set(columns_now)
    assert trainer.train_dataset["chosen_ids"] == [tokenizer(c).input_ids for c in text["chosen"]]  # used as given
    train_and_assert_all_changed(trainer)


@pytest.mark.parametrize("reward_type", MODES)
def test_train_with_iterable_dataset(tmp_path, model_ids, reward_type):
    trainer = AnchorGaussianRewardTrainer(
        model=model_ids["qwen2"],
        args=reward_config(tmp_path, reward_type, max_steps=3),
        train_dataset=preference_dataset().to_iterable_dataset(),
    )
    before = snapshot(trainer)
    trainer.train()
    assert_trained(trainer)
    assert trainer.state.global_step == 3
    assert_all_changed(trainer, before)


# ------------------------------------------------------------------------------------------------ training options
@pytest.mark.parametrize("reward_type", MODES)
@pytest.mark.parametrize("use_reentrant", [True, False])
def test_train_with_gradient_checkpointing(tmp_path, model_ids, reward_type, use_reentrant):
    args = reward_config(
        tmp_path, reward_type, gradient_checkpointing=True,
        gradient_checkpointing_kwargs={"use_reentrant": use_reentrant},
    )
    trainer = AnchorGaussianRewardTrainer(
        model=model_ids["qwen2_seq_cls"], args=args, train_dataset=preference_dataset()
    )
    before = snapshot(trainer)
    trainer.train()
    assert trainer.model.is_gradient_checkpointing
    assert_trained(trainer)
    assert_all_changed(trainer, before)


def _first_batch(trainer):
    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    return {key: value.to(trainer.model.device) for key, value in batch.items()}


def _rewards(trainer, batch) -> tuple[torch.Tensor, torch.Tensor]:
    logits = trainer.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    return torch.chunk(logits.squeeze(-1), 2)


@pytest.mark.parametrize("reward_type", MODES)
def test_train_with_margin(tmp_path, model_ids, reward_type):
    dataset = preference_dataset()
    dataset = dataset.add_column("margin", [float(len(c)) / 10 for c in dataset["chosen"]])
    trainer = AnchorGaussianRewardTrainer(
        model=model_ids["qwen2"], args=reward_config(tmp_path, reward_type), train_dataset=dataset
    )
    batch = _first_batch(trainer)
    assert batch["margin"].tolist() == pytest.approx(dataset["margin"][:4])
    with torch.no_grad():
        with_margin = trainer.compute_loss(trainer.model.eval(), dict(batch))
        without = trainer.compute_loss(trainer.model, {**batch, "margin": torch.zeros_like(batch["margin"])})
    # Both likelihoods (logistic and probit) of "chosen beats rejected by at least the margin" fall as it grows.
    assert with_margin > without
    train_and_assert_all_changed(trainer)


@pytest.mark.parametrize("reward_type", MODES)
def test_train_with_center_rewards_coefficient(tmp_path, model_ids, reward_type):
    trainer = AnchorGaussianRewardTrainer(
        model=model_ids["qwen2"],
        args=reward_config(tmp_path, reward_type, center_rewards_coefficient=0.01),
        train_dataset=preference_dataset(),
    )
    batch = _first_batch(trainer)
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model.eval(), dict(batch))
        trainer.args.center_rewards_coefficient = None
        uncentered = trainer.compute_loss(trainer.model, dict(batch))
        trainer.args.center_rewards_coefficient = 0.01
        chosen, rejected = _rewards(trainer, batch)
    # The penalty is TRL's: coefficient · mean((r_chosen + r_rejected)²), on the mean reward μ in Gaussian mode.
    expected = 0.01 * torch.mean((chosen + rejected) ** 2)
    torch.testing.assert_close(loss - uncentered, expected, rtol=1e-4, atol=1e-7)
    train_and_assert_all_changed(trainer)


# ------------------------------------------------------------------------------------------------------ model card
@pytest.mark.parametrize("reward_type", MODES)
def test_tags_added(tmp_path, model_ids, reward_type):
    trainer = AnchorGaussianRewardTrainer(
        model=model_ids["qwen2"], args=reward_config(tmp_path, reward_type), train_dataset=preference_dataset()
    )
    assert {"trl", "reward-trainer"} <= set(trainer.model.model_tags)
