"""Reward normalisation statistics: computed from μ, recorded in the config, read back by `normalize` transforms."""

import numpy as np
import pytest
import torch

from trl_anchor.models.modeling_gaussian import GaussianRewardModel
from trl_anchor.rewards.normalization import NORMALIZATION_KEY, record_reward_statistics, reward_statistics
from trl_anchor.rewards.transforms import RewardTransform

MEAN = torch.tensor([-2.0, 0.0, 0.5, 3.0], dtype=torch.float64)
STD = torch.tensor([0.1, 1.0, 2.0, 0.7], dtype=torch.float64)


def test_reward_statistics_rejects_degenerate_scores():
    assert reward_statistics(np.array([1.0, 3.0])) == {"mean": 2.0, "std": 1.0, "num_samples": 2}
    with pytest.raises(ValueError, match="positive finite std"):
        reward_statistics([1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match=r"1 reward scores are not finite \(rows \[1\]\)"):
        reward_statistics([1.0, float("nan"), 2.0])
    with pytest.raises(ValueError, match="at least 2"):
        reward_statistics([1.0])


def test_normalisation_round_trips_through_saved_config(tiny_config, tmp_path):
    model = GaussianRewardModel.from_config(tiny_config)
    scores = torch.tensor([0.5, 1.5, 2.5, 4.0])
    stats = record_reward_statistics(model, scores)
    assert stats["mean"] == pytest.approx(2.125) and stats["std"] == pytest.approx(scores.std(unbiased=False).item())
    model.save_pretrained(tmp_path)
    reloaded = GaussianRewardModel.from_pretrained(tmp_path)
    assert reloaded.config.gaussian_reward[NORMALIZATION_KEY] == stats

    transform = RewardTransform.parse("lcb:1.0,normalize").bind(reloaded)
    expected = (MEAN - stats["mean"]) / stats["std"] - STD / stats["std"]
    torch.testing.assert_close(transform(MEAN, STD), expected)
    # Without `normalize` the statistics are ignored.
    assert RewardTransform.parse("lcb:1.0").bind(reloaded).normalization is None


def test_normalisation_needs_recorded_statistics(tiny_config):
    model = GaussianRewardModel.from_config(tiny_config)
    with pytest.raises(ValueError, match="no 'reward_normalization' record"):
        RewardTransform.parse("mean,normalize").bind(model)
    with pytest.raises(ValueError, match="holds no statistics"):
        RewardTransform.parse("mean,normalize")(MEAN, STD)
    tiny_config.gaussian_reward = None
    with pytest.raises(ValueError, match="GaussianRewardModel"):
        record_reward_statistics(type("Plain", (), {"config": tiny_config})(), [0.0, 1.0])
