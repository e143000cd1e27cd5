"""`anchor_thresholds` and `anchor_percentiles` errors name the field and the bad value (issue 12)."""

import pytest
import torch

from trl_anchor import AnchorGaussianRewardConfig
from trl_anchor.anchors import parse_numbers, parse_thresholds, thresholds_from_scores
from trl_anchor.rewards.transforms import RewardTransform


def _config(tmp_path, **kwargs):
    return AnchorGaussianRewardConfig(str(tmp_path), bf16=False, use_cpu=True, report_to="none", **kwargs)


@pytest.mark.parametrize("text, bad", [("a,b", "'a'"), ("AUTO", "'AUTO'"), ("1,,2", "''"), ("1;2", "'1;2'")])
def test_string_thresholds_name_the_field_and_value(tmp_path, text, bad):
    with pytest.raises(ValueError, match=rf"`anchor_thresholds` must be 'auto' or numbers.*{bad}"):
        _config(tmp_path, anchor_thresholds=text)


@pytest.mark.parametrize(
    "value, expected",
    [("-1,1", [-1.0, 1.0]), (["-1", "1"], [-1.0, 1.0]), (["-1,0", "2"], [-1.0, 0.0, 2.0]), ([0.5], [0.5]),
     (["auto"], "auto"), ("auto", "auto"), (None, None)],
)
def test_threshold_forms(value, expected):
    assert parse_thresholds(value) == expected


def test_number_lists_in_command_line_forms():
    # Negative numbers, comma-separated words and plain numbers; order kept, no validation beyond "is a number".
    assert parse_numbers(["0.65,-0.4", "1", 2.5], "`w` takes numbers") == [0.65, -0.4, 1.0, 2.5]
    with pytest.raises(ValueError, match=r"`w` takes numbers; 'x' in \['1,x'\] is not a number"):
        parse_numbers(["1,x"], "`w` takes numbers")


def test_decreasing_thresholds_say_strictly_increasing(tmp_path):
    with pytest.raises(ValueError, match="strictly increasing"):
        _config(tmp_path, anchor_thresholds=["1.0", "0.5"])


def test_head_learning_rate_must_not_be_negative(tmp_path):
    with pytest.raises(ValueError, match="head_learning_rate"):
        _config(tmp_path, head_learning_rate=-1.0)
    assert _config(tmp_path, head_learning_rate=0.0).head_learning_rate == 0.0


def test_reversed_percentiles_are_not_blamed_on_ties():
    scores = [1.0, 2.0, 3.0, 4.0, 5.0]  # no ties at all
    with pytest.raises(ValueError, match="`anchor_percentiles` must be strictly increasing") as error:
        thresholds_from_scores(scores, [75.0, 25.0])
    assert "tied" not in str(error.value)


@pytest.mark.parametrize("spec", ["lcb:1.0", "quantile:0.1", "variance_penalty:0.5"])
@pytest.mark.parametrize("bad", [-1.0, float("nan")])
def test_sigma_based_transforms_refuse_negative_or_nan_sigma(spec, bad):
    with pytest.raises(ValueError, match="σ must be finite and ≥ 0"):
        RewardTransform.parse(spec)(torch.tensor([0.0, 1.0]), torch.tensor([1.0, bad]))
