"""Drop-in conformance, PEFT: a `peft_config` on a dense model id, on a MoE model id and with gradient checkpointing
(reentrant and not), a `PeftModel` instance, and the tags; both modes.

As in TRL, the user's `LoraConfig` decides what trains: base parameters (the mean head `score` included, unless the
config asks for it) stay frozen, adapter parameters move. In Gaussian mode the new variance head trains too, without
PEFT wrapping it, and is saved in the adapter file, from which `PeftModel.from_pretrained` restores it."""

import pytest
import torch
from conformance import MODES, assert_trained, preference_dataset, reward_config, snapshot, tiny_model_ids
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification

from trl_anchor import AnchorGaussianRewardTrainer, GaussianRewardModel


@pytest.fixture(scope="session")
def model_ids(tmp_path_factory, tokenizer_dir) -> dict[str, str]:
    return tiny_model_ids(tmp_path_factory, tokenizer_dir)

VARIANCE_HEAD = ["base_model.model.variance_head.weight", "base_model.model.variance_head.bias"]


def _base_parameter_names(model_id: str) -> set[str]:
    """Names the plain sequence-classification model's parameters get inside a `PeftModel`."""
    model = AutoModelForSequenceClassification.from_pretrained(model_id, num_labels=1)
    return {f"base_model.model.{name}" for name, _ in model.named_parameters()}


def _assert_peft_trained(trainer, before, base_names, reward_type) -> None:
    """TRL's PEFT check: base parameters unchanged, every other parameter (not a LoRA `base_layer`) changed; in
    Gaussian mode the variance head is among the trained parameters."""
    assert_trained(trainer)
    for name, old in before.items():
        new = trainer.model.get_parameter(name)
        if name in base_names:
            torch.testing.assert_close(old, new, msg=f"base parameter {name} changed")
        elif "base_layer" not in name:
            assert not torch.equal(old, new), f"parameter {name} did not change"
    trained = {name for name, param in trainer.model.named_parameters() if param.requires_grad}
    assert trained and trained.isdisjoint(base_names)
    if reward_type == "gaussian":
        assert set(VARIANCE_HEAD) <= trained


@pytest.mark.parametrize("reward_type", MODES)
def test_train_dense_with_peft_config(tmp_path, model_ids, reward_type):
    trainer = AnchorGaussianRewardTrainer(
        model=model_ids["qwen2"],
        args=reward_config(tmp_path, reward_type, max_steps=3),
        train_dataset=preference_dataset(),
        peft_config=LoraConfig(),
    )
    assert isinstance(trainer.model, PeftModel)
    before = snapshot(trainer)
    trainer.train()
    _assert_peft_trained(trainer, before, _base_parameter_names(model_ids["qwen2"]), reward_type)
    # Nothing the config did not ask for is wrapped: the mean head keeps its name and stays frozen.
    assert not trainer.model.get_parameter("base_model.model.score.weight").requires_grad


@pytest.mark.parametrize("reward_type", MODES)
def test_train_moe_with_peft_config(tmp_path, model_ids, reward_type):
    # LoRA on the attention, on the fused expert weights of the MoE blocks, and on the mean head.
    config = LoraConfig(
        target_modules=["q_proj", "v_proj", "score"], target_parameters=["experts.gate_up_proj", "experts.down_proj"]
    )
    trainer = AnchorGaussianRewardTrainer(
        model=model_ids["qwen3_moe"],
        args=reward_config(tmp_path, reward_type, max_steps=3),
        train_dataset=preference_dataset(),
        peft_config=config,
    )
    before = snapshot(trainer)
    trainer.train()
    _assert_peft_trained(trainer, before, _base_parameter_names(model_ids["qwen3_moe"]), reward_type)
    assert any("experts" in name and "lora_A" in name for name in before)


@pytest.mark.parametrize("reward_type", MODES)
def test_train_peft_model(tmp_path, model_ids, reward_type):
    base = AutoModelForSequenceClassification.from_pretrained(model_ids["qwen2"], num_labels=1)
    model = get_peft_model(base, LoraConfig())
    trainer = AnchorGaussianRewardTrainer(
        model=model, args=reward_config(tmp_path, reward_type, max_steps=3), train_dataset=preference_dataset()
    )
    assert trainer.model is model and model.get_base_model() is base  # converted in place, not copied
    assert isinstance(base, GaussianRewardModel) == (reward_type == "gaussian")
    before = snapshot(trainer)
    trainer.train()
    _assert_peft_trained(trainer, before, _base_parameter_names(model_ids["qwen2"]), reward_type)


@pytest.mark.parametrize("reward_type", MODES)
@pytest.mark.parametrize("use_reentrant", [True, False])
def test_train_with_peft_config_and_gradient_checkpointing(tmp_path, model_ids, reward_type, use_reentrant):
    args = reward_config(
        tmp_path, reward_type, max_steps=3, gradient_checkpointing=True,
        gradient_checkpointing_kwargs={"use_reentrant": use_reentrant},
    )
    trainer = AnchorGaussianRewardTrainer(
        model=model_ids["qwen2_seq_cls"], args=args, train_dataset=preference_dataset(), peft_config=LoraConfig()
    )
    before = snapshot(trainer)
    trainer.train()
    assert trainer.model.base_model.model.is_gradient_checkpointing
    _assert_peft_trained(trainer, before, _base_parameter_names(model_ids["qwen2_seq_cls"]), reward_type)


@pytest.mark.parametrize("reward_type", MODES)
def test_tags_added_with_peft(tmp_path, model_ids, reward_type):
    trainer = AnchorGaussianRewardTrainer(
        model=model_ids["qwen2"], args=reward_config(tmp_path, reward_type), train_dataset=preference_dataset(),
        peft_config=LoraConfig(),
    )
    assert {"trl", "reward-trainer"} <= set(trainer.model.model_tags)


@pytest.mark.parametrize("task_type", [None, "SEQ_CLS"])
def test_gaussian_adapter_holds_the_variance_head(tmp_path, model_ids, task_type):
    trainer = AnchorGaussianRewardTrainer(
        model=model_ids["qwen2"],
        args=reward_config(tmp_path, "gaussian", max_steps=3),
        train_dataset=preference_dataset(),
        peft_config=LoraConfig(task_type=task_type),
    )
    trainer.train()
    trainer.save_model(tmp_path / "adapter")
    saved = load_file(tmp_path / "adapter" / "adapter_model.safetensors")
    head = trainer.model.get_base_model().variance_head
    torch.testing.assert_close(saved[VARIANCE_HEAD[0]], head.weight.detach())
    torch.testing.assert_close(saved[VARIANCE_HEAD[1]], head.bias.detach())
    assert any("lora_A" in key for key in saved)
    # The mean head is in the adapter only when the config asks for it (PEFT's SEQ_CLS task saves `score`).
    assert any(".score." in key for key in saved) == (task_type == "SEQ_CLS")

    batch = trainer.data_collator([trainer.train_dataset[i] for i in range(4)])
    inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
    base = GaussianRewardModel.from_pretrained(model_ids["qwen2"], pad_token_id=trainer.processing_class.pad_token_id)
    reloaded = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()
    with torch.no_grad():
        expected, actual = trainer.model.eval()(**inputs), reloaded(**inputs)
    assert not torch.allclose(expected.variance, torch.ones_like(expected.variance))  # the head did train
    # σ² needs the adapter and the variance head only; μ also needs the mean head, which a causal-LM base model
    # initialises at random on every load unless the adapter saved it (as with TRL's RewardTrainer).
    torch.testing.assert_close(actual.variance, expected.variance)
    assert torch.allclose(actual.mean, expected.mean) == (task_type == "SEQ_CLS")
