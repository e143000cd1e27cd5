import numpy as np
import pytest
import torch
from scipy.stats import norm

from trl_anchor.models.modeling_gaussian import GaussianRewardModel
from trl_anchor.rewards.transforms import RewardTransform

MEAN = torch.tensor([-2.0, 0.0, 0.5, 3.0], dtype=torch.float64)
STD = torch.tensor([0.1, 1.0, 2.0, 0.7], dtype=torch.float64)


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("mean", lambda m, s: m),
        ("quantile:0.1", lambda m, s: m + norm.ppf(0.1) * s),
        ("quantile:0.975", lambda m, s: m + norm.ppf(0.975) * s),
        ("lcb:1.5", lambda m, s: m - 1.5 * s),
        ("variance_penalty:0.5", lambda m, s: m - 0.5 * s**2),
    ],
)
def test_transforms_match_closed_forms(spec, expected):
    reward = RewardTransform.parse(spec)(MEAN, STD)
    np.testing.assert_allclose(reward.numpy(), expected(MEAN.numpy(), STD.numpy()), rtol=1e-12, atol=1e-12)


def test_quantiles_are_ordered_around_the_mean():
    mean, std = torch.randn(64), torch.rand(64) + 0.05
    q10, q50, q90 = (RewardTransform(kind="quantile", q=q)(mean, std) for q in (0.1, 0.5, 0.9))
    assert torch.all(q10 < q50) and torch.all(q50 < q90)
    assert torch.equal(q50, mean)
    # Without uncertainty every quantile is the mean.
    assert torch.equal(RewardTransform(kind="quantile", q=0.1)(mean, torch.zeros(64)), mean)


def test_numpy_inputs_give_numpy_outputs_equal_to_torch():
    transform = RewardTransform.parse("lcb:1.0,clip:2.5")
    out = transform(MEAN.numpy(), STD.numpy())
    assert isinstance(out, np.ndarray)
    np.testing.assert_array_equal(out, transform(MEAN, STD).numpy())


def test_low_precision_inputs_are_computed_in_float32():
    reward = RewardTransform.parse("quantile:0.1")(MEAN.bfloat16(), STD.bfloat16())
    assert reward.dtype == torch.float32
    expected = MEAN.bfloat16().float() + norm.ppf(0.1) * STD.bfloat16().float()
    torch.testing.assert_close(reward, expected.float())


def test_clip_bounds_final_reward():
    reward = RewardTransform.parse("mean,clip:-1:2")(MEAN, STD)
    assert reward.tolist() == [-1.0, 0.0, 0.5, 2.0]
    symmetric = RewardTransform(kind="mean", clip=1.0)(MEAN, STD)
    assert symmetric.tolist() == [-1.0, 0.0, 0.5, 1.0]


def test_random_quantile_is_reproducible_by_seed_and_within_bounds():
    spec = "random_quantile:0.05:0.5,seed:123"
    first, second = RewardTransform.parse(spec), RewardTransform.parse(spec)
    mean, std = torch.zeros(1000), torch.ones(1000)
    draws = first(mean, std)
    assert torch.equal(draws, second(mean, std))
    # A later call continues the stream rather than repeating it.
    assert not torch.equal(draws, first(mean, std))
    assert not torch.equal(draws, RewardTransform.parse("random_quantile:0.05:0.5,seed:124")(mean, std))
    assert draws.min() >= norm.ppf(0.05) - 1e-6 and draws.max() <= norm.ppf(0.5) + 1e-6
    # Levels are spread over the whole interval, not stuck at one value.
    levels = RewardTransform.parse(spec).quantile_levels(1000)
    assert levels.min() >= 0.05 and levels.max() <= 0.5 and levels.std() > 0.1


def test_random_quantile_uses_one_level_per_sequence_and_explicit_levels():
    transform = RewardTransform.parse("random_quantile:0.1:0.9,seed:0")
    per_position = transform(torch.zeros(3, 5), torch.ones(3, 5))
    assert torch.all(per_position == per_position[:, :1])
    assert per_position[:, 0].unique().numel() == 3
    levels = torch.tensor([0.2, 0.5, 0.8], dtype=torch.float64)
    explicit = transform(torch.ones(3), torch.full((3,), 2.0), quantile_levels=levels)
    np.testing.assert_allclose(explicit.numpy(), 1.0 + 2.0 * norm.ppf(levels.numpy()), rtol=1e-6)
    with pytest.raises(ValueError, match="2 quantile levels for 3 samples"):
        transform(torch.ones(3), torch.ones(3), quantile_levels=levels[:2])
    with pytest.raises(ValueError, match="only apply to 'random_quantile'"):
        RewardTransform.parse("quantile:0.3")(torch.ones(3), torch.ones(3), quantile_levels=levels)


def test_process_offset_gives_independent_streams():
    transform = RewardTransform.parse("random_quantile:0.1:0.9,seed:7")
    assert transform.for_process(0) is transform
    rank1 = transform.for_process(1)
    assert rank1.seed != transform.seed
    rank0_levels = RewardTransform.parse("random_quantile:0.1:0.9,seed:7").quantile_levels(8)
    assert not torch.equal(rank1.quantile_levels(8), rank0_levels)
    assert RewardTransform.parse("quantile:0.2").for_process(3).seed is None


@pytest.mark.parametrize(
    "spec",
    ["mean", "quantile:0.1", "random_quantile:0.05:0.5,seed:3", "lcb:1.0,normalize,clip:-2.0:4.0",
     "variance_penalty:0.25,clip:3"],
)
def test_spec_string_round_trip(spec):
    transform = RewardTransform.parse(spec)
    assert RewardTransform.parse(str(transform)) == transform


@pytest.mark.parametrize(
    "spec, message",
    [
        ("quantile:0", "strictly between 0 and 1"),
        ("quantile:1.0", "strictly between 0 and 1"),
        ("quantile:nan", "must be finite"),
        ("quantile", r"takes 1 parameter\(s\) \(q\), got 0"),
        ("mean:0.3", "takes 0 parameter"),
        ("median", "unknown kind 'median'"),
        ("random_quantile:0.6:0.2", "0 < q_low < q_high < 1"),
        ("random_quantile:0.2", "takes 2 parameter"),
        ("lcb:-1", "must be ≥ 0"),
        ("variance_penalty:-0.1", "must be ≥ 0"),
        ("quantile:abc", "`q` must be a number, got 'abc'"),
        ("quantile:0.1,seed:1", "`seed` only applies to kind 'random_quantile'"),
        ("random_quantile:0.1:0.2,seed:1.5", "`seed` must be a number"),
        ("mean,clip:0", "symmetric `clip` must be positive"),
        ("mean,clip:3:1", "low < high"),
        ("mean,normalise", "unknown option 'normalise'"),
        ("", "non-empty string"),
    ],
)
def test_invalid_specs_raise_clear_errors(spec, message):
    with pytest.raises(ValueError, match=message):
        RewardTransform.parse(spec)


def test_invalid_constructor_arguments():
    with pytest.raises(ValueError, match="needs `q`"):
        RewardTransform(kind="quantile")
    with pytest.raises(ValueError, match="`kappa` does not apply"):
        RewardTransform(kind="quantile", q=0.2, kappa=1.0)
    with pytest.raises(ValueError, match="needs the standard deviation"):
        RewardTransform(kind="lcb", kappa=1.0)(MEAN)
    assert torch.equal(RewardTransform()(MEAN), MEAN)


# ------------------------------------------------------------------------------------------ anchor-class rewards
def _scipy_class_probs(mean, std, thresholds):
    cdf = norm.cdf((np.asarray(thresholds)[None, :] - np.asarray(mean)[:, None]) / np.asarray(std)[:, None])
    return np.diff(np.c_[np.zeros(len(mean)), cdf, np.ones(len(mean))], axis=1)


def _anchored_model(thresholds):
    from transformers import GPT2Config

    model = GaussianRewardModel.from_config(GPT2Config(n_layer=1, n_head=2, n_embd=8, vocab_size=50, num_labels=1))
    model.record_training_settings(anchor_thresholds=thresholds)
    return model


def test_expected_class_and_p_top_use_sigma():
    thresholds = [-1.0, 1.0]
    mean, std = np.array([2.0, 2.0, -0.5, 0.0]), np.array([0.1, 3.0, 1.0, 1e-3])
    probs = _scipy_class_probs(mean, std, thresholds)
    model = _anchored_model(thresholds)
    expected = RewardTransform.parse("expected_class").bind(model)(mean, std)
    np.testing.assert_allclose(expected, probs @ np.arange(3), rtol=1e-10)
    p_top = RewardTransform.parse("p_top").bind(model)(torch.tensor(mean), torch.tensor(std))
    np.testing.assert_allclose(p_top.numpy(), probs[:, 2], rtol=1e-10)
    assert expected[1] < expected[0]  # the same μ above the top threshold: more uncertainty, lower expected class


def test_anchor_rewards_need_recorded_thresholds():
    transform = RewardTransform.parse("p_top")
    assert transform.needs_std and transform.needs_thresholds
    with pytest.raises(ValueError, match="bind"):
        transform(np.zeros(2), np.ones(2))
    plain = _anchored_model(None)
    with pytest.raises(ValueError, match="trained without anchors"):
        transform.bind(plain)
    with pytest.raises(ValueError, match="`normalize` does not apply"):
        RewardTransform.parse("expected_class,normalize")
    assert str(RewardTransform.parse("expected_class,clip:1.5")) == "expected_class,clip:-1.5:1.5"


def test_a_model_trained_with_anchor_groups_reads_classes_of_a_new_group():
    # σ² + s²: the normal predictive of a response whose group's base-rate offset is unknown (drawn with variance s²).
    thresholds, group_variance = [-1.0, 1.0], 0.64
    mean, std = np.array([2.0, -0.5, 0.0]), np.array([0.1, 1.0, 2.0])
    model = _anchored_model(thresholds)
    model.record_training_settings(anchor_group_variance=group_variance)
    transform = RewardTransform.parse("expected_class").bind(model)
    assert transform.group_variance == group_variance
    probs = _scipy_class_probs(mean, np.sqrt(std**2 + group_variance), thresholds)
    np.testing.assert_allclose(transform(mean, std), probs @ np.arange(3), rtol=1e-10)
    assert not np.allclose(probs, _scipy_class_probs(mean, std, thresholds), atol=1e-3)
    with pytest.raises(ValueError, match="`group_variance`"):
        RewardTransform(kind="mean", group_variance=0.5)
    with pytest.raises(ValueError, match="`group_variance`"):
        RewardTransform(kind="p_top", group_variance=-1.0)


def test_a_model_without_a_mean_bias_reads_classes_at_its_offset():
    # `anchor_mean_offset` μ₀: the anchors of a model whose mean head has no bias read N(μ + μ₀, σ²).
    thresholds, offset = [-1.0, 1.0], -1.3
    mean, std = np.array([2.0, -0.5, 0.0]), np.array([0.1, 1.0, 2.0])
    model = _anchored_model(thresholds)
    model.record_training_settings(anchor_mean_offset=offset)
    transform = RewardTransform.parse("p_top").bind(model)
    assert transform.mean_offset == offset
    probs = _scipy_class_probs(mean + offset, std, thresholds)
    np.testing.assert_allclose(transform(mean, std), probs[:, -1], rtol=1e-10)
    bf16 = transform(torch.tensor(mean, dtype=torch.bfloat16), torch.tensor(std, dtype=torch.bfloat16))
    np.testing.assert_allclose(bf16.float().numpy(), probs[:, -1], rtol=2e-2)
    with pytest.raises(ValueError, match="`mean_offset`"):
        RewardTransform(kind="lcb", kappa=1.0, mean_offset=0.5)
    with pytest.raises(ValueError, match="`mean_offset`"):
        RewardTransform(kind="expected_class", mean_offset=float("nan"))
