"""Tests of the identifiability simulation: the data generator against its closed forms, the error measures, the
qualitative claim (two anchors identify σ; pairs and one anchor cannot) on a reduced study, and the CLI report."""

import json

import pytest
import torch

from trl_anchor.cli import main as cli_main
from trl_anchor.losses import ordinal_log_probs, preference_z
from trl_anchor.scripts.simulate import make_parser
from trl_anchor.studies.simulation import (
    ARMS,
    EQUIVALENCE_FIGURE,
    ERROR_FIGURE,
    SimulationConfig,
    SimulationWorld,
    anchor_classes,
    draw_latent_rewards,
    draw_soft_labels,
    fit_arm,
    fit_errors,
    regenerating_command,
    simulate_pairs,
)

THRESHOLDS = [-0.5, 0.5]


@pytest.fixture(autouse=True)
def one_thread():
    # What the study itself does: tiny full-batch fits are fastest on one thread of a shared CPU.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ------------------------------------------------------------------------------------------------------ data generator
def test_world_mean_and_std_closed_form():
    world = SimulationWorld(dim=3)
    x = torch.tensor([[0.5, 1.0, -1.0]], dtype=torch.float64)
    expected_mean = 1.0 + 2.0 - 2.0 / 3.0 + (0.5 + 1.0 - 1.0) / 3.0
    expected_std = 0.2 + 0.6 * torch.sigmoid(torch.tensor(2.0 * 0.5 - 3.0 * 1.0 * -1.0))
    torch.testing.assert_close(world.mean(x), torch.tensor([expected_mean], dtype=torch.float64))
    torch.testing.assert_close(world.std(x), expected_std.double().reshape(1))
    x_all = world.sample_x(10_000, generator())
    assert x_all.min() >= -1 and x_all.max() <= 1
    assert world.std(x_all).min() > 0.2 and world.std(x_all).max() < 0.8


def test_soft_labels_converge_to_exact_probit_probability():
    world = SimulationWorld(dim=4)
    x_a, x_b = world.sample_x(40, generator(1)), world.sample_x(40, generator(2))
    m = 40_000
    empirical = draw_soft_labels(world, x_a, x_b, m, generator(3))
    exact = draw_soft_labels(world, x_a, x_b, None, generator(3))
    reference = torch.special.ndtr(
        preference_z(world.mean(x_a), world.std(x_a) ** 2, world.mean(x_b), world.std(x_b) ** 2)
    )
    torch.testing.assert_close(exact, reference)
    # The labels span a real range, so the check below is not about labels stuck at 0 or 1: both sides of ½, and a
    # dozen in the middle where the binomial noise is largest.
    assert (exact < 0.5).sum() >= 10 and (exact > 0.5).sum() >= 10
    assert ((exact > 0.1) & (exact < 0.9)).sum() >= 12
    # Binomial standard error is at most 0.5/sqrt(m) = 0.0025; allow 5 of them.
    assert (empirical - exact).abs().max() < 5 * 0.5 / m**0.5
    coarse = draw_soft_labels(world, x_a, x_b, 7, generator(3))
    assert torch.all(coarse * 7 == torch.round(coarse * 7))  # k/m votes


def test_anchor_class_frequencies_match_normal_cdf():
    world = SimulationWorld(dim=2)
    x = torch.tensor([[0.3, -0.4]], dtype=torch.float64).expand(200_000, -1)
    rewards = draw_latent_rewards(world, x, generator(4))
    mean, std = world.mean(x[:1]), world.std(x[:1])
    for thresholds in (THRESHOLDS, [0.0]):
        classes = anchor_classes(rewards, thresholds)
        frequencies = torch.bincount(classes, minlength=len(thresholds) + 1).double() / len(classes)
        expected = ordinal_log_probs(mean, std, torch.tensor(thresholds)).exp()[0]
        z = (torch.tensor(thresholds, dtype=torch.float64) - mean) / std
        by_hand = torch.diff(torch.cat([torch.zeros(1), torch.special.ndtr(z), torch.ones(1)]).double())
        torch.testing.assert_close(expected, by_hand)
        assert (frequencies - expected).abs().max() < 0.005  # standard error ≤ 0.0011


def test_pairs_are_oriented_and_anchors_come_from_one_draw():
    world = SimulationWorld(dim=4)
    data = simulate_pairs(world, 3000, generator(5), THRESHOLDS, 0.0, annotators=None)
    assert torch.all(data.soft_label >= 0.5)
    # Exact labels: the stored label must be the probit probability of the stored (chosen, rejected) covariates.
    recomputed = torch.special.ndtr(
        preference_z(
            world.mean(data.x_chosen),
            world.std(data.x_chosen) ** 2,
            world.mean(data.x_rejected),
            world.std(data.x_rejected) ** 2,
        )
    )
    torch.testing.assert_close(data.soft_label, recomputed)
    # τ₀ = 0 lies between τ₁ = -0.5 and τ₂ = 0.5: class 0 implies below τ₀, class 2 above, for the same draw.
    for two, one in (
        (data.anchor_chosen, data.single_anchor_chosen),
        (data.anchor_rejected, data.single_anchor_rejected),
    ):
        assert torch.all(one[two == 0] == 0) and torch.all(one[two == 2] == 1)
        assert set(two.unique().tolist()) == {0, 1, 2}
    assert data.anchor_chosen.float().mean() > data.anchor_rejected.float().mean()


def test_equivalent_worlds_share_pairs_and_single_anchor_labels():
    base = simulate_pairs(SimulationWorld(4), 2000, generator(6), THRESHOLDS, 0.0, annotators=10)
    for scale in (0.5, 2.0):
        other = simulate_pairs(SimulationWorld(4, scale=scale), 2000, generator(6), THRESHOLDS, 0.0, annotators=10)
        assert torch.equal(other.x_chosen, base.x_chosen) and torch.equal(other.soft_label, base.soft_label)
        assert torch.equal(other.single_anchor_chosen, base.single_anchor_chosen)
        assert torch.equal(other.single_anchor_rejected, base.single_anchor_rejected)
        # Only the two-threshold labels see the change of units.
        assert (other.anchor_chosen != base.anchor_chosen).float().mean() > 0.1


# --------------------------------------------------------------------------------------------------------- errors
def test_fit_errors_without_and_with_rescaling():
    mean_true = torch.linspace(-2, 2, 101, dtype=torch.float64)
    std_true = torch.linspace(0.2, 0.8, 101, dtype=torch.float64)
    errors = fit_errors(3.0 * mean_true + 1.0, 2.0 * std_true, mean_true, std_true)
    assert errors["sigma_rel_rmse"] == pytest.approx(1.0)
    assert errors["sigma_scale"] == pytest.approx(2.0)
    assert errors["sigma_rel_rmse_rescaled"] == pytest.approx(0.0, abs=1e-9)
    assert errors["mu_rmse"] == pytest.approx(((2.0 * mean_true + 1.0) ** 2).mean().sqrt().item())
    assert errors["mu_rmse_rescaled"] == pytest.approx(0.0, abs=1e-9)
    bt = fit_errors(mean_true, None, mean_true, std_true)
    assert bt["mu_rmse"] == 0.0 and bt["sigma_rel_rmse"] is None


# ------------------------------------------------------------------------------------------------ qualitative claim
def _sigma_errors(arm, world, n, config, x_test):
    datasets = [
        simulate_pairs(world, n, generator(100 + seed), config.thresholds, config.single_threshold, None)
        for seed in config.seeds
    ]
    ensemble = fit_arm(arm, datasets, config.seeds, config)
    with torch.no_grad():
        _, variance = ensemble(x_test.float().expand(len(config.seeds), -1, -1))
    return [
        fit_errors(torch.zeros(len(x_test)), variance[i].sqrt(), world.mean(x_test), world.std(x_test))
        for i in range(len(config.seeds))
    ]


def test_two_anchors_identify_sigma_and_fewer_do_not():
    """Reduced study (exact soft labels, d = 2). Worlds a = 1 and a = 0.5 give pairs and 1-anchor labels that are
    identical, so the no-anchor and 1-anchor fits are one fit each, which cannot be within 1/3 of both truths; the
    2-anchor arm is fitted in both worlds and must be accurate in each, and better with more data."""
    config = SimulationConfig(
        output_dir=None, dim=2, seeds=[0, 1], epochs=300, hidden_size=16, learning_rate=3e-2, soft_labels="exact"
    )
    x_test = SimulationWorld(2).sample_x(1024, generator(7))
    worlds = [SimulationWorld(2), SimulationWorld(2, scale=0.5)]

    def mean_error(errors):
        return sum(e["sigma_rel_rmse"] for e in errors) / len(errors)

    two_anchor = {w.scale: mean_error(_sigma_errors("gaussian_2_anchor", w, 1000, config, x_test)) for w in worlds}
    assert max(two_anchor.values()) < 0.3, two_anchor
    small_n = mean_error(_sigma_errors("gaussian_2_anchor", worlds[0], 200, config, x_test))
    assert two_anchor[1.0] < small_n, (two_anchor, small_n)

    for arm in ("gaussian", "gaussian_1_anchor"):
        # One fit serves both worlds; score its σ̂ against each world's truth.
        datasets = [simulate_pairs(worlds[0], 1000, generator(100 + s), THRESHOLDS, 0.0, None) for s in config.seeds]
        ensemble = fit_arm(arm, datasets, config.seeds, config)
        with torch.no_grad():
            _, variance = ensemble(x_test.float().expand(2, -1, -1))
        worst = max(
            mean_error(
                [fit_errors(torch.zeros(len(x_test)), v.sqrt(), w.mean(x_test), w.std(x_test)) for v in variance]
            )
            for w in worlds
        )
        assert worst > 0.3 and worst > 1.5 * max(two_anchor.values()), (arm, worst, two_anchor)


# ---------------------------------------------------------------------------------------------------------- CLI
def test_cli_writes_json_markdown_and_figures(tmp_path):
    out = tmp_path / "sim"
    assert cli_main(["simulate", "--quick", "--output_dir", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["summary"]) == set(ARMS)
    quick = SimulationConfig(quick=True)
    assert len(results["records"]) == len(ARMS) * len(quick.seeds) * (len(quick.n_pairs) + 2)
    for arm in ARMS:
        for n in quick.n_pairs:
            assert results["summary"][arm][str(n)]["mu_rmse"]["mean"] > 0
    assert results["summary"]["bt"]["100"]["sigma_rel_rmse"] is None
    report = (out / "README.md").read_text()
    assert "trl-anchor simulate --quick" in report and ERROR_FIGURE in report and EQUIVALENCE_FIGURE in report
    assert "| 300 |" in report
    for name in (ERROR_FIGURE, EQUIVALENCE_FIGURE):
        png = (out / name).read_bytes()
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and 10_000 < len(png) < 300_000


def test_regenerating_command_round_trips():
    config = SimulationConfig(
        output_dir=None, n_pairs=[50, 500], seeds=[3], soft_labels="exact", anchor_lambda=0.1, thresholds=[-1.0, 1.0]
    )
    command = regenerating_command(config)
    assert command.startswith("trl-anchor simulate ") and "--anchor_lambda 0.1" in command
    (parsed,) = make_parser().parse_args_and_config(args=command.split()[2:])
    parsed.output_dir = None
    assert parsed == config


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"thresholds": [0.5, -0.5]}, "strictly increasing"),
        ({"thresholds": [0.0]}, "two thresholds"),
        ({"dim": 1}, "dim"),
        ({"soft_labels": "votes"}, "soft_labels"),
        ({"anchor_lambda": 0.0}, "anchor_lambda"),
        ({"n_pairs": [1]}, "n_pairs"),
    ],
)
def test_config_rejects_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SimulationConfig(**kwargs)
