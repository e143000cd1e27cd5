"""`load_reward_model`: the one loader that evaluation, best-of-N, anchor labelling and the studies share."""

import json

import pytest
import torch
from conftest import tiny_gpt2_config
from transformers import AutoModelForSequenceClassification, GPT2ForSequenceClassification

from trl_anchor.models.loading import load_reward_model
from trl_anchor.models.modeling_gaussian import GaussianRewardModel
from trl_anchor.rewards.scoring import score_responses

RESPONSES = ["a helpful answer", "the quick brown fox jumps over the lazy dog", "rude", "step by step it is four"]


@pytest.fixture
def bt_dir(tmp_path, tokenizer):
    torch.manual_seed(0)
    AutoModelForSequenceClassification.from_config(tiny_gpt2_config(tokenizer)).save_pretrained(tmp_path / "bt")
    tokenizer.save_pretrained(tmp_path / "bt")
    return tmp_path / "bt"


def test_gaussian_and_bt_checkpoints(tmp_path, tokenizer, bt_dir):
    torch.manual_seed(0)
    GaussianRewardModel.from_config(tiny_gpt2_config(tokenizer)).save_pretrained(tmp_path / "gauss")
    tokenizer.save_pretrained(tmp_path / "gauss")

    gaussian, gaussian_tokenizer = load_reward_model(str(tmp_path / "gauss"))
    assert isinstance(gaussian, GaussianRewardModel) and not gaussian.training
    assert gaussian_tokenizer.pad_token == tokenizer.pad_token
    bt, _ = load_reward_model(str(bt_dir), device="cpu")
    assert not isinstance(bt, GaussianRewardModel) and not bt.training
    assert next(bt.parameters()).device == torch.device("cpu")


def test_refuses_what_is_not_a_reward_model(tmp_path, tokenizer):
    GPT2ForSequenceClassification(tiny_gpt2_config(tokenizer, num_labels=2)).save_pretrained(tmp_path / "two")
    tokenizer.save_pretrained(tmp_path / "two")
    with pytest.raises(ValueError, match="2 output labels"):
        load_reward_model(str(tmp_path / "two"))

    (tmp_path / "adapter").mkdir()
    (tmp_path / "adapter" / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA"}))
    with pytest.raises(ValueError, match="PEFT adapter.*merge_and_unload"):
        load_reward_model(str(tmp_path / "adapter"))


def test_dtype(bt_dir):
    model, _ = load_reward_model(str(bt_dir), dtype="bfloat16")
    assert next(model.parameters()).dtype == torch.bfloat16
    model, _ = load_reward_model(str(bt_dir), dtype=torch.float32)
    assert next(model.parameters()).dtype == torch.float32
    with pytest.raises(ValueError, match="Unknown dtype 'float33'"):
        load_reward_model(str(bt_dir), dtype="float33")


def test_missing_pad_token_id_comes_from_the_tokenizer(tmp_path, tokenizer):
    # A decoder checkpoint saved without a pad id whose tokenizer pads with its EOS token, as most causal LMs do.
    tokenizer.pad_token = tokenizer.eos_token
    torch.manual_seed(0)
    GPT2ForSequenceClassification(tiny_gpt2_config(tokenizer, pad_token_id=None)).save_pretrained(tmp_path / "rm")
    tokenizer.save_pretrained(tmp_path / "rm")

    model, loaded_tokenizer = load_reward_model(str(tmp_path / "rm"))
    assert model.config.pad_token_id == tokenizer.eos_token_id
    # Without a pad id GPT-2 cannot find the last token of a padded row and refuses batches; now batches score
    # exactly as one sequence at a time.
    batched = score_responses(model, loaded_tokenizer, RESPONSES, batch_size=4).mean
    one_by_one = score_responses(model, loaded_tokenizer, RESPONSES, batch_size=1).mean
    assert batched.tolist() == pytest.approx(one_by_one.tolist(), abs=1e-5)
