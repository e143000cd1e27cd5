import math

import mpmath
import numpy as np
import pytest
import torch
from scipy.special import log_ndtr as scipy_log_ndtr
from scipy.stats import norm

from trl_anchor.losses import (
    bt_preference_log_probs,
    class_counts,
    gaussian_preference_log_probs,
    log_ndtr,
    log_ndtr_diff,
    ordinal_anchor_nll,
    ordinal_log_probs,
    soft_bt_loss,
    soft_probit_loss,
)

mpmath.mp.dps = 50


def _mp_log_ndtr_diff(a: float, b: float) -> float:
    if a + b > 0:  # Φ(a) − Φ(b) = Φ(−b) − Φ(−a): keeps 50 digits for upper-tail intervals
        a, b = -b, -a
    return float(mpmath.log(mpmath.ncdf(a) - mpmath.ncdf(b)))


def _mp_mills(x: float) -> float:
    """d/dx log Φ(x) = φ(x)/Φ(x), in 50-digit arithmetic."""
    return float(mpmath.npdf(x) / mpmath.ncdf(x))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_log_ndtr_matches_scipy_and_has_exact_gradient(dtype):
    x = torch.tensor([-7e7, -1e4, -40.0, -10.5, -9.5, -3.0, 0.0, 2.0, 40.0], dtype=dtype, requires_grad=True)
    value = log_ndtr(x)
    np.testing.assert_allclose(value.detach().double().numpy(), scipy_log_ndtr(x.detach().double().numpy()), rtol=1e-6)
    value.sum().backward()
    expected = np.array([_mp_mills(v) for v in x.detach().double().tolist()])
    np.testing.assert_allclose(x.grad.double().numpy(), expected, rtol=1e-5, atol=1e-30)


@pytest.mark.parametrize(
    "upper, lower",
    [
        (0.5, -0.5),
        (-3.0, -4.0),
        (40.0, 39.0),  # upper tail: both Φ round to 1
        (-39.0, -40.0),  # lower tail
        (0.3, 0.3 - 1e-9),  # tiny interval: huge σ
        (1e4, 1e4 - 1e-9),
        (1e3, 1e3 - 1e-6),
        (-1e4, -1e4 - 1.0),
        (-300.0, -300.0 - 1e-5),
        # just inside the midpoint rule, w·(1 + |m|) = 0.0099, at several positions
        (0.00495, -0.00495),
        (3.0 + 0.0099 / 8, 3.0 - 0.0099 / 8),
        (-30.0 + 0.0099 / 62, -30.0 - 0.0099 / 62),
        (5.0, -5.0),
        (2.0, 1.999),
    ],
)
def test_log_ndtr_diff_matches_high_precision(upper, lower):
    got = log_ndtr_diff(torch.tensor([upper], dtype=torch.float64), torch.tensor([lower], dtype=torch.float64))
    # An absolute tolerance in nats: a relative one would allow errors of several nats at log-probabilities ≈ −5e7.
    assert got.item() == pytest.approx(_mp_log_ndtr_diff(upper, lower), rel=0, abs=1e-6)


def test_log_ndtr_diff_gradient_by_finite_differences():
    upper = torch.tensor([0.7, -2.0, 6.0, 30.0, 0.1], dtype=torch.float64, requires_grad=True)
    lower = torch.tensor([-0.2, -2.5, 5.5, 29.0, 0.1 - 1e-7], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(log_ndtr_diff, (upper, lower), eps=1e-9, atol=1e-4, rtol=1e-4)


def test_soft_probit_loss_closed_form():
    mc, vc = torch.tensor([1.0, -0.3]), torch.tensor([0.5, 2.0])
    mr, vr = torch.tensor([0.2, 0.4]), torch.tensor([1.5, 0.1])
    p = torch.tensor([0.8, 0.35])
    z = ((mc - mr) / torch.sqrt(vc + vr)).numpy()
    expected = -(p.numpy() * norm.logcdf(z) + (1 - p.numpy()) * norm.logcdf(-z))
    np.testing.assert_allclose(soft_probit_loss(mc, vc, mr, vr, p).numpy(), expected, rtol=1e-6)
    # with a margin, the gap shrinks by it
    margin = torch.tensor([0.5, -1.0])
    z_m = ((mc - mr - margin) / torch.sqrt(vc + vr)).numpy()
    expected_m = -(p.numpy() * norm.logcdf(z_m) + (1 - p.numpy()) * norm.logcdf(-z_m))
    np.testing.assert_allclose(soft_probit_loss(mc, vc, mr, vr, p, margin).numpy(), expected_m, rtol=1e-6)


def test_soft_bt_loss_reduces_to_trl_loss_for_hard_labels():
    rc, rr = torch.tensor([2.0, -1.0, 0.3]), torch.tensor([1.0, 0.5, 0.3])
    trl_loss = -torch.nn.functional.logsigmoid(rc - rr)
    torch.testing.assert_close(soft_bt_loss(rc, rr, torch.ones(3)).float(), trl_loss)
    # soft label p: p·BT(c≻r) + (1−p)·BT(r≻c)
    p = torch.tensor([0.7, 0.2, 0.5])
    expected = -(p * torch.nn.functional.logsigmoid(rc - rr) + (1 - p) * torch.nn.functional.logsigmoid(rr - rc))
    torch.testing.assert_close(soft_bt_loss(rc, rr, p).float(), expected)


def test_preference_probabilities_sum_to_one():
    mc, mr = torch.randn(20), torch.randn(20)
    vc, vr = torch.rand(20) + 0.1, torch.rand(20) + 0.1
    lp, lq = gaussian_preference_log_probs(mc, vc, mr, vr)
    torch.testing.assert_close(lp.exp() + lq.exp(), torch.ones(20, dtype=lp.dtype))
    lp, lq = bt_preference_log_probs(mc, mr)
    torch.testing.assert_close(lp.exp() + lq.exp(), torch.ones(20, dtype=lp.dtype))


@pytest.mark.parametrize("thresholds", [[0.0], [-0.5, 0.75], [-1.0, 0.0, 0.4, 2.0]])
def test_ordinal_probabilities_match_scipy(thresholds):
    mean = torch.tensor([-2.0, 0.1, 0.9, 3.0])
    std = torch.tensor([0.3, 1.0, 2.0, 0.5])
    log_probs = ordinal_log_probs(mean, std, torch.tensor(thresholds))
    cdf = norm.cdf((np.array(thresholds)[None, :] - mean.numpy()[:, None]) / std.numpy()[:, None])
    edges = np.concatenate([np.zeros((4, 1)), cdf, np.ones((4, 1))], axis=1)
    expected = np.diff(edges, axis=1)  # P(τ_j < r ≤ τ_{j+1}), class j = thresholds exceeded
    np.testing.assert_allclose(log_probs.exp().numpy(), expected, atol=1e-10)
    np.testing.assert_allclose(log_probs.exp().sum(-1).numpy(), 1.0, atol=1e-12)


def test_ordinal_nll_classes_and_counts():
    mean, std = torch.tensor([0.2, -0.4]), torch.tensor([0.8, 1.3])
    tau = torch.tensor([-0.5, 0.5])
    log_probs = ordinal_log_probs(mean, std, tau)
    classes = torch.tensor([2, 0])
    one_hot = ordinal_anchor_nll(mean, std, tau, class_counts(classes, 2))
    torch.testing.assert_close(one_hot, -log_probs[torch.arange(2), classes])
    votes = torch.tensor([[3.0, 5.0, 2.0], [0.0, 1.0, 9.0]])
    multinomial = ordinal_anchor_nll(mean, std, tau, votes, normalize=False)
    torch.testing.assert_close(multinomial, -(votes.double() * log_probs).sum(-1))
    normalized = ordinal_anchor_nll(mean, std, tau, votes, normalize=True)
    torch.testing.assert_close(normalized, multinomial / votes.sum(-1).double())
    assert ordinal_anchor_nll(mean, std, tau, torch.zeros(2, 3)).eq(0).all()


def test_ordinal_nll_gradcheck():
    mean = torch.tensor([0.3, -1.2, 2.5], dtype=torch.float64, requires_grad=True)
    std = torch.tensor([0.7, 1.5, 0.2], dtype=torch.float64, requires_grad=True)
    counts = torch.tensor([[1.0, 2.0, 0.0], [0.0, 0.0, 4.0], [2.0, 1.0, 1.0]], dtype=torch.float64)
    tau = torch.tensor([-0.5, 1.0], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda m, s: ordinal_anchor_nll(m, s, tau, counts), (mean, std))


def test_identifiability_of_two_anchors():
    # With K = 2, the class probabilities pin σ = (τ2 − τ1)/(z1 − z2): recover (μ, σ) from exact probabilities.
    mu, sigma, tau = 0.3, 0.8, torch.tensor([-0.5, 0.7], dtype=torch.float64)
    as64 = lambda v: torch.tensor([v], dtype=torch.float64)  # noqa: E731
    probs = ordinal_log_probs(as64(mu), as64(sigma), tau).exp()[0].numpy()
    z1 = norm.ppf(1 - probs[0])  # P(r > τ1) = Φ(z1)
    z2 = norm.ppf(probs[2])  # P(r > τ2) = Φ(z2)
    assert (tau[1] - tau[0]).item() / (z1 - z2) == pytest.approx(sigma, rel=1e-9)
    assert tau[0].item() + sigma * z1 == pytest.approx(mu, rel=1e-9)


DELTAS = [0.0, 1e-3, 1.0, 1e2, 1e4, -1e4]
VARIANCES = [1e-8, 1e-4, 1.0, 1e4, 1e8]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_extremes_give_finite_losses_and_gradients(dtype):
    deltas = torch.tensor([d for d in DELTAS for _ in VARIANCES for _ in VARIANCES])
    var_c = torch.tensor([v for _ in DELTAS for v in VARIANCES for _ in VARIANCES])
    var_r = torch.tensor([v for _ in DELTAS for _ in VARIANCES for v in VARIANCES])
    mean_c = deltas.clone().to(dtype).requires_grad_()
    mean_r = torch.zeros_like(mean_c).requires_grad_()
    vc, vr = var_c.clone().requires_grad_(), var_r.clone().requires_grad_()
    for label in (0.0, 0.3, 1.0):
        loss = soft_probit_loss(mean_c, vc, mean_r, vr, torch.full_like(deltas, label))
        assert torch.isfinite(loss).all()
        loss.sum().backward()
    for tensor in (mean_c, mean_r, vc, vr):
        assert torch.isfinite(tensor.grad).all()
    # the gradient never vanishes on a wrongly ordered pair (no clamp): chosen far below rejected, label 1
    wrong = torch.tensor([-1e4], requires_grad=True)
    soft_probit_loss(wrong, torch.tensor([1e-8]), torch.tensor([0.0]), torch.tensor([1e-8]), torch.ones(1)).backward()
    assert wrong.grad.item() < -1e4


def test_ordinal_extremes_finite():
    means = torch.tensor([m for m in (-1e4, -30.0, 0.0, 30.0, 1e4) for _ in VARIANCES], requires_grad=True)
    std = torch.tensor([math.sqrt(v) for _ in range(5) for v in VARIANCES], requires_grad=True)
    tau = torch.tensor([-0.5, 0.5])
    counts = torch.tensor([[1.0, 1.0, 1.0]]).expand(len(means), 3)
    nll = ordinal_anchor_nll(means, std, tau, counts)
    assert torch.isfinite(nll).all()
    nll.sum().backward()
    assert torch.isfinite(means.grad).all() and torch.isfinite(std.grad).all()


def test_probability_math_runs_in_float64_under_bf16():
    mc = torch.tensor([0.5], dtype=torch.bfloat16)
    lp, _ = gaussian_preference_log_probs(mc, torch.ones(1), torch.zeros(1, dtype=torch.bfloat16), torch.ones(1))
    assert lp.dtype == torch.float64


def _tangent_tail(z, tail):
    """−log Φ(z) continued by its tangent at −tail, written out with scipy."""
    slope = norm.pdf(tail) / norm.cdf(-tail)
    return np.where(z < -tail, -norm.logcdf(-tail) + slope * (-tail - z), -norm.logcdf(z))


@pytest.mark.parametrize("tail", [3.0, 5.0])
def test_linear_tail_bounds_a_mislabelled_pairs_loss_and_gradient(tail):
    floor = torch.full((1,), 1e-4, dtype=torch.float64)
    gap = torch.tensor([-50.0], dtype=torch.float64, requires_grad=True)
    exact = soft_probit_loss(gap, floor, torch.zeros(1, dtype=torch.float64), floor, torch.ones(1))
    assert exact.item() == pytest.approx(-norm.logcdf(-50 / math.sqrt(2e-4)), rel=1e-9)  # ≈ 6.25e6
    robust = soft_probit_loss(gap, floor, torch.zeros(1, dtype=torch.float64), floor, torch.ones(1), tail=tail)
    z = -50 / math.sqrt(2e-4)
    assert robust.item() == pytest.approx(_tangent_tail(np.array([z]), tail)[0], rel=1e-9)
    robust.backward()
    slope = norm.pdf(tail) / norm.cdf(-tail)
    assert gap.grad.item() == pytest.approx(-slope / math.sqrt(2e-4), rel=1e-9)  # |grad| ≤ slope/σ_Δ, not |z|/σ_Δ


def test_linear_tail_keeps_soft_label_optima_and_nonzero_gradients():
    z = torch.tensor(np.linspace(-40, 40, 161), dtype=torch.float64, requires_grad=True)
    for label in (0.0, 0.3, 0.7, 1.0):
        soft = torch.full_like(z, label)
        half = torch.full_like(z, 0.5)
        loss = soft_probit_loss(z, half, torch.zeros_like(z), half, soft, tail=3.0)
        values = z.detach().numpy()
        expected = label * _tangent_tail(values, 3.0) + (1 - label) * _tangent_tail(-values, 3.0)
        np.testing.assert_allclose(loss.detach().numpy(), expected, rtol=1e-9, atol=1e-12)
        (grad,) = torch.autograd.grad(loss.sum(), z)
        if 0 < label < 1:  # far on the wrong side of a soft label the pull stays finite and non-zero
            assert (grad[z < -3] < -label * 3.0).all() and (grad[z > 3] > (1 - label) * 3.0).all()
            optimum = torch.tensor([norm.ppf(label)], dtype=torch.float64, requires_grad=True)
            half, zero = torch.tensor([0.5], dtype=torch.float64), torch.zeros(1, dtype=torch.float64)
            at_optimum = soft_probit_loss(optimum, half, zero, half, torch.tensor([label], dtype=torch.float64),
                                          tail=3.0)
            (slope,) = torch.autograd.grad(at_optimum, optimum)
            assert abs(slope.item()) < 1e-9  # Φ(z) = p is still the minimum
