"""Likelihoods of the anchor-guided Gaussian reward model, as pure functions.

Every consumer (the trainer, evaluation, reward transforms for RL and best-of-N) calls these functions, so the
probability a model assigns to a preference or to an anchor class is defined exactly once.

Conventions:

- A response has latent reward ``r ~ N(mean, variance)``.
- ``P(chosen ≻ rejected) = Φ((μ_c − μ_r − margin) / sqrt(σ_c² + σ_r²))`` (Thurstone / probit).
- Anchors are ``K`` strictly increasing thresholds ``τ_1 < … < τ_K``. The anchor class of a response is the number of
  thresholds its latent reward exceeds, ``0 … K``; with ``z_k = (μ − τ_k)/σ`` the class probabilities are
  ``π_0 = 1 − Φ(z_1)``, ``π_j = Φ(z_j) − Φ(z_{j+1})``, ``π_K = Φ(z_K)``.

Probabilities are computed in float64 (float32 where the device has no float64, e.g. MPS) whatever the model dtype,
so bf16 training never evaluates a normal CDF in bf16. All functions return per-example values; callers reduce.
"""

import math

import torch
import torch.nn.functional as F

_LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)
# Below this argument the Mills-ratio series is used for the gradient of log Φ (see `_LogNdtr.backward`).
_ASYMPTOTIC_BELOW = -10.0
# Φ(a) − Φ(b) is computed by the midpoint rule when w·(1 + |m|) is below this (w the width, m the midpoint): its
# truncation error is ≈ (w·m)⁴/1920 ≤ 5e-12 relative, while subtracting two log Φ of size m²/2 there would lose up to
# m²·1e-16/(w·m) of the gap (1.7e-4 nats at m = 1e4, w = 1e-9).
_MIDPOINT_BELOW = 1e-2


def math_dtype(device: torch.device) -> torch.dtype:
    """The dtype probability math runs in on `device`: float64, or float32 where float64 is unsupported."""
    return torch.float32 if device.type == "mps" else torch.float64


def _upcast(*tensors: torch.Tensor) -> list[torch.Tensor]:
    dtype = math_dtype(tensors[0].device)
    return [t.to(dtype) for t in tensors]


class _LogNdtr(torch.autograd.Function):
    # torch.special.log_ndtr's own backward computes exp(-x²/2 - log Φ(x)), which cancels catastrophically for very
    # negative x (it returns 0 at x = -7e7 in float32 instead of ≈ 7e7). The derivative is the inverse Mills ratio,
    # whose asymptotic series is exact to ~1e-6 relative below x = -10.
    @staticmethod
    def forward(ctx, x):
        out = torch.special.log_ndtr(x)
        ctx.save_for_backward(x, out)
        return out

    @staticmethod
    def backward(ctx, grad_output):
        x, log_cdf = ctx.saved_tensors
        tail = x < _ASYMPTOTIC_BELOW
        x_tail = torch.where(tail, x, torch.full_like(x, _ASYMPTOTIC_BELOW))
        inv_x2 = 1.0 / (x_tail * x_tail)
        series = 1.0 - inv_x2 + 3.0 * inv_x2**2 - 15.0 * inv_x2**3 + 105.0 * inv_x2**4
        mills_tail = -x_tail / series
        x_body = torch.where(tail, torch.zeros_like(x), x)
        log_cdf_body = torch.where(tail, torch.zeros_like(log_cdf), log_cdf)
        mills_body = torch.exp(-0.5 * x_body * x_body - _LOG_SQRT_2PI - log_cdf_body)
        return grad_output * torch.where(tail, mills_tail, mills_body)


def log_ndtr(x: torch.Tensor) -> torch.Tensor:
    """`log Φ(x)` with a gradient that stays exact for arbitrarily negative `x`."""
    return _LogNdtr.apply(x)


def _log1mexp(d: torch.Tensor) -> torch.Tensor:
    # log(1 - exp(-d)) for d > 0, switching formulas at log 2 (Mächler 2012) to keep full precision.
    return torch.where(d < math.log(2.0), torch.log(-torch.expm1(-d)), torch.log1p(-torch.exp(-d)))


def log_ndtr_diff(upper: torch.Tensor, lower: torch.Tensor) -> torch.Tensor:
    """`log(Φ(upper) − Φ(lower))` for `upper > lower`, stable in both tails and for tiny intervals.

    Intervals in the upper tail are reflected (`Φ(a) − Φ(b) = Φ(−b) − Φ(−a)`) so that `log Φ` is only evaluated where
    it keeps precision. Intervals with `(a − b)(1 + |m|) < 1e-2` (huge σ, or far tails) use the midpoint rule
    `(a − b) φ(m) (1 + (a − b)²(m² − 1)/24)`, where subtracting two nearly equal `log Φ` would lose digits.
    """
    upper, lower = _upcast(upper, lower)
    reflect = (upper + lower) > 0
    a = torch.where(reflect, -lower, upper)
    b = torch.where(reflect, -upper, lower)
    width = a - b
    mid = 0.5 * (a + b)
    narrow = width * (1.0 + mid.abs()) < _MIDPOINT_BELOW

    # Exact branch, evaluated on safe stand-ins where the midpoint branch is selected so no NaN reaches the gradient.
    a_exact = torch.where(narrow, torch.zeros_like(a), a)
    b_exact = torch.where(narrow, torch.full_like(b, -1.0), b)
    log_a = log_ndtr(a_exact)
    gap = log_a - log_ndtr(b_exact)
    exact = log_a + _log1mexp(torch.clamp_min(gap, torch.finfo(gap.dtype).tiny))

    width_mid = torch.where(narrow, width, torch.ones_like(width))
    mid_mid = torch.where(narrow, mid, torch.zeros_like(mid))
    midpoint = (
        torch.log(width_mid)
        - 0.5 * mid_mid * mid_mid
        - _LOG_SQRT_2PI
        + torch.log1p(width_mid * width_mid * (mid_mid * mid_mid - 1.0) / 24.0)
    )
    return torch.where(narrow, midpoint, exact)


def preference_z(
    mean_chosen: torch.Tensor,
    variance_chosen: torch.Tensor,
    mean_rejected: torch.Tensor,
    variance_rejected: torch.Tensor,
    margin: torch.Tensor | None = None,
) -> torch.Tensor:
    """Standardised reward gap `(μ_c − μ_r − margin) / sqrt(σ_c² + σ_r²)`, in the probability dtype."""
    mean_chosen, variance_chosen, mean_rejected, variance_rejected = _upcast(
        mean_chosen, variance_chosen, mean_rejected, variance_rejected
    )
    gap = mean_chosen - mean_rejected
    if margin is not None:
        gap = gap - margin.to(gap.dtype)
    return gap / torch.sqrt(variance_chosen + variance_rejected)


def log_ndtr_linear_tail(x: torch.Tensor, tail: float) -> torch.Tensor:
    """`log Φ(x)` above `−tail`, continued below it by its tangent at `−tail` (slope `φ(tail)/Φ(−tail)` ≈ `tail`).

    As a loss, `−log Φ` then grows linearly instead of quadratically in a wrongly ordered pair's standardised gap: its
    gradient is bounded by the slope (a mislabelled pair pulls like a pair at `z = −tail`, never harder) yet never
    vanishes, and the loss stays convex and differentiable. Above `−tail` nothing changes, so soft labels in
    `[Φ(−tail), Φ(tail)]` keep their exact optimum `Φ(z) = p`. Not a probability: use `log_ndtr` for those.
    """
    corner = torch.full_like(x, -tail)
    log_corner = torch.special.log_ndtr(corner)
    slope = torch.exp(-0.5 * corner * corner - _LOG_SQRT_2PI - log_corner)  # d log Φ / dx at −tail
    linear = log_corner + slope * (x - corner)
    below = x < corner
    return torch.where(below, linear, log_ndtr(torch.where(below, corner, x)))


def gaussian_preference_log_probs(
    mean_chosen, variance_chosen, mean_rejected, variance_rejected, margin=None, tail: float | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """`(log P(chosen ≻ rejected), log P(rejected ≻ chosen))` under the Gaussian (probit) model.

    With `tail`, both are `log_ndtr_linear_tail` of the standardised gap: the bounded-influence training loss (no
    longer normalised probabilities beyond `|z| > tail`).
    """
    z = preference_z(mean_chosen, variance_chosen, mean_rejected, variance_rejected, margin)
    if tail is None:
        return log_ndtr(z), log_ndtr(-z)
    return log_ndtr_linear_tail(z, tail), log_ndtr_linear_tail(-z, tail)


def bt_preference_log_probs(reward_chosen, reward_rejected, margin=None) -> tuple[torch.Tensor, torch.Tensor]:
    """`(log P(chosen ≻ rejected), log P(rejected ≻ chosen))` under Bradley–Terry: `sigmoid(r_c − r_r − margin)`."""
    reward_chosen, reward_rejected = _upcast(reward_chosen, reward_rejected)
    gap = reward_chosen - reward_rejected
    if margin is not None:
        gap = gap - margin.to(gap.dtype)
    return F.logsigmoid(gap), F.logsigmoid(-gap)


def soft_label_nll(log_p_chosen: torch.Tensor, log_p_rejected: torch.Tensor, soft_label: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of predicted preference probabilities against soft labels `P(chosen ≻ rejected)`.

    Written as `−p log P − (1 − p) log(1 − P)` with both logs supplied by the model, so a label of exactly 0 or 1
    multiplies an arbitrarily large (but finite) log-probability by zero instead of evaluating `log(0)`.
    """
    soft_label = soft_label.to(log_p_chosen.dtype)
    return -(soft_label * log_p_chosen + (1.0 - soft_label) * log_p_rejected)


def soft_probit_loss(
    mean_chosen, variance_chosen, mean_rejected, variance_rejected, soft_label, margin=None, tail=None
) -> torch.Tensor:
    """Per-pair soft-label Thurstone loss of the Gaussian reward model (`tail`: see `log_ndtr_linear_tail`)."""
    log_p, log_q = gaussian_preference_log_probs(
        mean_chosen, variance_chosen, mean_rejected, variance_rejected, margin, tail
    )
    return soft_label_nll(log_p, log_q, soft_label)


def soft_bt_loss(reward_chosen, reward_rejected, soft_label, margin=None) -> torch.Tensor:
    """Per-pair soft-label Bradley–Terry loss (TRL's reward loss when every label is 1)."""
    log_p, log_q = bt_preference_log_probs(reward_chosen, reward_rejected, margin)
    return soft_label_nll(log_p, log_q, soft_label)


def ordinal_log_probs(mean: torch.Tensor, std: torch.Tensor, thresholds: torch.Tensor) -> torch.Tensor:
    """Log-probabilities `log π_j`, `j = 0…K`, of each anchor class; shape `(*mean.shape, K + 1)`."""
    mean, std = _upcast(mean, std)
    thresholds = thresholds.to(device=mean.device, dtype=mean.dtype)
    z = (mean.unsqueeze(-1) - thresholds) / std.unsqueeze(-1)  # (..., K), decreasing in k
    lowest = log_ndtr(-z[..., :1])
    highest = log_ndtr(z[..., -1:])
    middle = log_ndtr_diff(z[..., :-1], z[..., 1:])
    return torch.cat([lowest, middle, highest], dim=-1)


def ordinal_anchor_nll(
    mean: torch.Tensor,
    std: torch.Tensor,
    thresholds: torch.Tensor,
    counts: torch.Tensor,
    normalize: bool = True,
) -> torch.Tensor:
    """Per-response negative log-likelihood of anchor labels given as class counts, shape `(..., K + 1)`.

    A single anchor class is the one-hot count vector (see `class_counts`). Crowd votes over `K + 1` ordered
    categories give the multinomial likelihood `−Σ_j n_j log π_j`; with `normalize=True` it is divided by `Σ_j n_j`
    (the cross-entropy against the vote distribution), which keeps a 300-vote caption from outweighing the pairwise
    term by a factor of 300. Rows whose counts sum to zero contribute zero.
    """
    log_probs = ordinal_log_probs(mean, std, thresholds)
    counts = counts.to(log_probs.dtype)
    nll = -(counts * log_probs).sum(-1)
    if normalize:
        nll = nll / counts.sum(-1).clamp_min(1.0)
    return nll


ANCHOR_NORMALIZATIONS = ("anchored", "pairs")


def batch_anchor_loss(
    weighted_nll: torch.Tensor, anchored: torch.Tensor, normalization: str = "anchored"
) -> torch.Tensor:
    """The anchor term of a batch from per-response weighted NLLs `w · L_anchor` and anchored flags, shape `(2, B)`
    (chosen row, rejected row).

    `"anchored"` (the paper's code): each side's sum divided by that side's number of anchored responses, then the two
    sides added, so λ keeps its meaning whatever fraction of the batch is anchored. `"pairs"`: both sides' sum divided
    by the number of pairs `B`.
    """
    if normalization == "anchored":
        return (weighted_nll.sum(-1) / anchored.sum(-1).clamp_min(1).to(weighted_nll.dtype)).sum()
    if normalization == "pairs":
        return weighted_nll.sum() / weighted_nll.shape[-1]
    raise ValueError(f"`normalization` must be one of {ANCHOR_NORMALIZATIONS}, got {normalization!r}.")


def class_counts(classes: torch.Tensor, num_thresholds: int) -> torch.Tensor:
    """One-hot count vectors for anchor classes in `0 … num_thresholds`."""
    return F.one_hot(classes.long(), num_classes=num_thresholds + 1).float()

