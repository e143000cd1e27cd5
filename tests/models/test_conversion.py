"""`to_gaussian` turns an instantiated sequence-classification model into a `GaussianRewardModel` in place; the PEFT
helpers train the variance head and store it in the adapter file."""

import pytest
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file
from transformers import GPT2ForSequenceClassification

from trl_anchor import GaussianRewardModel
from trl_anchor.models.conversion import save_variance_head_with_adapter, to_gaussian, train_variance_head


def _inputs(tokenizer):
    tokenizer.padding_side = "right"
    return tokenizer(["the quick fox", "a helpful answer explains the reason"], return_tensors="pt", padding=True)


def test_to_gaussian_converts_in_place_and_keeps_the_mean(tokenizer, tiny_config):
    torch.manual_seed(0)
    model = GPT2ForSequenceClassification(tiny_config).eval()
    inputs = _inputs(tokenizer)
    with torch.no_grad():
        logits = model(**inputs).logits
    storage = {name: param.data_ptr() for name, param in model.named_parameters()}

    converted = to_gaussian(model, variance_floor=0.01)
    assert converted is model and isinstance(model, GaussianRewardModel)
    assert isinstance(model, GPT2ForSequenceClassification)
    assert {name: p.data_ptr() for name, p in model.named_parameters() if name in storage} == storage  # no copy
    with torch.no_grad():
        out = model(**inputs)
    torch.testing.assert_close(out.logits, logits)  # μ is the model's own reward
    torch.testing.assert_close(out.variance, torch.ones(2), atol=1e-6, rtol=0)  # a fresh head: σ² = 1
    assert model.variance_head.variance_floor == 0.01 and model.config.gaussian_reward["variance_floor"] == 0.01
    assert type(model).__name__ == "GaussianGPT2ForSequenceClassification"


def test_to_gaussian_on_a_gaussian_model_only_sets_the_floor(tiny_config):
    model = GaussianRewardModel.from_config(tiny_config)
    head = model.variance_head
    assert to_gaussian(model, variance_floor=0.2) is model and model.variance_head is head
    assert head.variance_floor == 0.2 and model.config.gaussian_reward["variance_floor"] == 0.2


def test_to_gaussian_needs_one_label(tiny_config):
    tiny_config.num_labels = 2
    model = GPT2ForSequenceClassification(tiny_config)
    with pytest.raises(ValueError, match="num_labels=1"):
        to_gaussian(model)
    assert type(model) is GPT2ForSequenceClassification


def test_peft_variance_head_is_trained_and_saved_in_the_adapter(tmp_path, tokenizer, tiny_config):
    torch.manual_seed(0)
    model = get_peft_model(GaussianRewardModel.from_config(tiny_config), LoraConfig(target_modules=["c_attn"]))
    head = model.get_base_model().variance_head
    assert not head.weight.requires_grad  # PEFT froze it with the base model
    train_variance_head(model)
    assert head.weight.requires_grad and head.bias.requires_grad
    with torch.no_grad():
        head.weight.normal_()
    model.save_pretrained(tmp_path)
    save_variance_head_with_adapter(model, str(tmp_path))
    saved = load_file(tmp_path / "adapter_model.safetensors")
    torch.testing.assert_close(saved["base_model.model.variance_head.weight"], head.weight.detach())

    torch.manual_seed(1)
    reloaded = PeftModel.from_pretrained(GaussianRewardModel.from_config(tiny_config), tmp_path)
    torch.testing.assert_close(reloaded.get_base_model().variance_head.weight, head.weight)
