"""A variance floor ≤ 0 (or not a number) is refused on every path: the variance head itself, a config given to
`from_config`, a stored `config.json` loaded with `from_pretrained`, and the trainer's config (issue 12)."""

import json

import pytest
import torch
from conftest import tiny_gpt2_config

from trl_anchor import AnchorGaussianRewardConfig, GaussianRewardModel
from trl_anchor.models.modeling_gaussian import VarianceHead


@pytest.mark.parametrize("floor", [0.0, -1.0, float("nan"), float("inf")])
def test_variance_head_refuses_non_positive_floor(floor):
    with pytest.raises(ValueError, match="variance_floor"):
        VarianceHead(8, floor)


@pytest.mark.parametrize("floor", [-5, 0, "0.1", None, True])
def test_config_floor_is_validated_when_building(tokenizer, floor):
    config = tiny_gpt2_config(tokenizer)
    config.gaussian_reward = {"variance_floor": floor}
    with pytest.raises(ValueError, match=r"gaussian_reward\.variance_floor"):
        GaussianRewardModel.from_config(config)


@pytest.mark.parametrize("floor", [-5, "x"])
def test_stored_floor_is_validated_when_loading(tokenizer, tmp_path, floor):
    GaussianRewardModel.from_config(tiny_gpt2_config(tokenizer)).save_pretrained(tmp_path)
    path = tmp_path / "config.json"
    stored = json.loads(path.read_text())
    stored["gaussian_reward"]["variance_floor"] = floor
    path.write_text(json.dumps(stored))
    with pytest.raises(ValueError, match=r"gaussian_reward\.variance_floor.*" + repr(floor)):
        GaussianRewardModel.from_pretrained(tmp_path)


def test_valid_stored_floor_still_loads(tokenizer, tmp_path):
    GaussianRewardModel.from_config(tiny_gpt2_config(tokenizer), variance_floor=0.25).save_pretrained(tmp_path)
    model = GaussianRewardModel.from_pretrained(tmp_path)
    assert model.variance_head.variance_floor == 0.25
    assert bool((model(input_ids=torch.tensor([[5, 6, 7]])).variance >= 0.25).all())


@pytest.mark.parametrize("floor", [0.0, -1e-3])
def test_trainer_config_refuses_floor(tmp_path, floor):
    with pytest.raises(ValueError, match="variance_floor"):
        AnchorGaussianRewardConfig(str(tmp_path), variance_floor=floor, bf16=False, use_cpu=True, report_to="none")


def test_floor_set_on_a_model_instance_is_validated(tokenizer):
    model = GaussianRewardModel.from_config(tiny_gpt2_config(tokenizer))
    with pytest.raises(ValueError, match="variance_floor"):
        model.variance_head.variance_floor = -0.5
    model.variance_head.variance_floor = 0.5
    assert bool((model(input_ids=torch.tensor([[5, 6]])).variance >= 0.5).all())
