"""σ is never invented: a Gaussian checkpoint without its variance head and a plain (BT) checkpoint loaded by path
for a σ-based transform are refused instead of reporting the σ² = 1 of a fresh head (issue 12)."""

import pytest
import torch
from conftest import tiny_gpt2_config
from safetensors.torch import load_file, save_file
from transformers import GPT2ForSequenceClassification

from trl_anchor import GaussianRewardFunction, GaussianRewardModel


@pytest.fixture
def bt_dir(tokenizer, tmp_path):
    torch.manual_seed(0)
    GPT2ForSequenceClassification(tiny_gpt2_config(tokenizer)).save_pretrained(tmp_path / "bt")
    tokenizer.save_pretrained(tmp_path / "bt")
    return tmp_path / "bt"


def test_gaussian_checkpoint_without_variance_head_is_refused(tokenizer, tmp_path):
    GaussianRewardModel.from_config(tiny_gpt2_config(tokenizer)).save_pretrained(tmp_path)
    weights = tmp_path / "model.safetensors"
    tensors = {k: v for k, v in load_file(weights).items() if not k.startswith("variance_head.")}
    save_file(tensors, weights, metadata={"format": "pt"})
    with pytest.raises(ValueError, match=r"no `variance_head\.\*` tensors"):
        GaussianRewardModel.from_pretrained(tmp_path)


def test_plain_checkpoint_still_gets_a_fresh_head_for_training(bt_dir):
    model = GaussianRewardModel.from_pretrained(bt_dir)  # the trainer's path: a BT or base checkpoint to fine-tune
    assert torch.allclose(model(input_ids=torch.tensor([[5, 6]])).variance, torch.ones(1))


@pytest.mark.parametrize("transform", ["quantile:0.1", "lcb:1.0", "random_quantile:0.1:0.9"])
def test_reward_function_refuses_sigma_transform_on_bt_path(bt_dir, transform):
    with pytest.raises(ValueError, match="needs σ"):
        GaussianRewardFunction(str(bt_dir), transform=transform)


def test_reward_function_scores_bt_path_with_its_mean(bt_dir, tokenizer):
    reward = GaussianRewardFunction(str(bt_dir), transform="mean")
    rewards = reward(prompts=["Hi "], completions=["there"])
    expected = GPT2ForSequenceClassification.from_pretrained(bt_dir)(
        input_ids=torch.tensor([tokenizer("Hi there" + tokenizer.eos_token)["input_ids"]])
    ).logits.item()
    assert rewards == pytest.approx([expected], abs=1e-5)
    assert reward.last_std is None


@pytest.mark.parametrize("path", ["/no/such/checkpoint", "./outputs/no-such-run", "outputs/runs/no-such-run"])
def test_missing_checkpoint_dir_says_so(path):
    from trl_anchor.models.loading import load_reward_model

    with pytest.raises(FileNotFoundError, match=f"The model directory {path} does not exist"):
        load_reward_model(path)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        GaussianRewardFunction(path)


def test_missing_path_that_could_be_a_hub_id_says_both(monkeypatch):
    from trl_anchor.models.loading import load_reward_model

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(OSError, match="outputs/no-such-run is not a local directory"):
        load_reward_model("outputs/no-such-run")
