"""The normal distribution N(μ₀, σ₀²) whose anchor class shares match a dataset's: the starting point of fresh heads.

With every response at the same (μ₀, σ₀), a model predicts the class shares `π_j(μ₀, σ₀)` of
`trl_anchor.losses.ordinal_log_probs` for every response. The heads start where these equal the shares `s_j` of the
train anchors, so training begins at the base rate instead of at (0, 1), which can be far from it (e.g. 84 % of crowd
votes in the lowest of three classes with τ = [−1, 1] needs μ ≈ −3.5, σ ≈ 2.5).

- One threshold: the share below τ_1 fixes only `(τ_1 − μ₀)/σ₀`; σ₀ stays 1 and `μ₀ = τ_1 − Φ⁻¹(s_0)`.
- Two thresholds, closed form: with `q_k = Φ⁻¹(s_0 + … + s_{k−1})`, `σ₀ = (τ_2 − τ_1)/(q_2 − q_1)` and
  `μ₀ = τ_1 − σ₀ q_1`.
- More thresholds: the maximum-likelihood (μ₀, σ₀) of the shares, `max Σ_j s_j log π_j`, started from the
  least-squares line `τ_k ≈ μ₀ + σ₀ q_k` (with two thresholds the closed form is this maximum exactly).
- `fit_std_at_mean`: σ₀ alone for a fixed μ₀ (a mean head without a bias cannot move μ), the 1-D likelihood fit.
- `fit_grouped_marginal`: groups with their own base rates (`anchor_group_column`): one σ₀ shared by every group and
  one mean μ_g per group, by maximum likelihood; μ₀ is their weighted mean and `μ_g − μ₀` each group's offset.

Shares below `MIN_SHARE` are raised to it, so an empty class gives a large but finite σ₀ or |μ₀|. With a single
occupied class the shares say nothing about the scale: (0, 1) is kept (the trainer warns that σ is unidentified).
"""

import numpy as np
import torch

from .losses import ordinal_log_probs

MIN_SHARE = 1e-4
_MAX_ITER = 200


def class_shares(counts: np.ndarray, weights: np.ndarray | None = None, normalize: bool = True) -> np.ndarray:
    """Shares of the K + 1 anchor classes in count vectors `(N, K + 1)` with per-response `weights`.

    `normalize=True` gives each response's label distribution the same weight (as the normalised count likelihood
    does); `False` pools every label. Responses with weight 0 or no labels are left out.
    """
    counts = np.asarray(counts, dtype=np.float64)
    weights = np.ones(len(counts)) if weights is None else np.asarray(weights, dtype=np.float64)
    totals = counts.sum(-1)
    keep = (weights > 0) & (totals > 0)
    if not keep.any():
        raise ValueError("No anchored response (all anchor weights or counts are zero): no class shares.")
    rows = counts[keep] / totals[keep, None] if normalize else counts[keep]
    pooled = (weights[keep, None] * rows).sum(0)
    return pooled / pooled.sum()


def fit_marginal(shares, thresholds) -> tuple[float, float]:
    """(μ₀, σ₀) whose anchor class probabilities match `shares` (length K + 1) under `thresholds` τ_1 < … < τ_K.

    Example:

    ```python
    >>> fit_marginal([0.84, 0.12, 0.04], [-1.0, 1.0])  # σ₀ = 2 / (Φ⁻¹(0.96) − Φ⁻¹(0.84))
    (-3.63..., 2.64...)
    ```
    """
    shares, tau = _checked(shares, thresholds)
    if (shares > MIN_SHARE).sum() < 2:
        return 0.0, 1.0
    q = torch.special.ndtri(torch.cumsum(shares, 0)[:-1])
    if len(tau) == 1:
        return float(tau[0] - q[0]), 1.0
    if len(tau) == 2:
        std = (tau[1] - tau[0]) / (q[1] - q[0])
        return float(tau[0] - std * q[0]), float(std)
    # Least-squares line τ_k = μ + σ q_k, then the likelihood of the shares.
    slope, intercept = np.polyfit(q.numpy(), tau.numpy(), 1)
    mean = torch.tensor(float(intercept), dtype=torch.float64, requires_grad=True)
    log_std = torch.tensor(float(np.log(max(slope, 1e-3))), dtype=torch.float64, requires_grad=True)
    _maximise(lambda: _cross_entropy(shares, mean, log_std.exp(), tau), [mean, log_std])
    return mean.item(), log_std.exp().item()


def fit_std_at_mean(shares, thresholds, mean: float) -> float:
    """σ₀ maximising `Σ_j s_j log π_j(mean, σ₀)` with the mean held fixed (1-D fit)."""
    shares, tau = _checked(shares, thresholds)
    spread = float(tau[-1] - tau[0]) if len(tau) > 1 else 1.0
    log_std = torch.tensor(np.log(spread), dtype=torch.float64, requires_grad=True)
    fixed = torch.tensor(float(mean), dtype=torch.float64)
    _maximise(lambda: _cross_entropy(shares, fixed, log_std.exp(), tau), [log_std])
    return log_std.exp().item()


def fit_grouped_marginal(group_shares, group_weights, thresholds) -> tuple[float, float, np.ndarray]:
    """(μ₀, σ₀, offsets) of groups of responses with their own base rates: the maximum of
    `Σ_g w_g Σ_j s_gj log π_j(μ₀ + δ_g, σ₀)` over one shared σ₀ and one mean per group, with the offsets `δ_g`
    centred (`Σ_g w_g δ_g = 0`). `group_shares` is `(G, K + 1)` (each row as `fit_marginal` takes it), `group_weights`
    `(G,)` (e.g. each group's number of anchored responses).

    σ₀ is the spread of responses around their own group's base rate, narrower than `fit_marginal`'s of the pooled
    shares by the spread of the group means, whose weighted variance is `(w · δ²) / Σ w`.
    """
    checked = [_checked(shares, thresholds) for shares in np.asarray(group_shares, dtype=np.float64)]
    weights = torch.as_tensor(np.asarray(group_weights, dtype=np.float64))
    if len(checked) != len(weights) or not len(checked) or not (weights >= 0).all() or not weights.sum() > 0:
        raise ValueError(f"Need one non-negative weight per group (not all zero), got {weights.tolist()}.")
    shares, tau = torch.stack([s for s, _ in checked]), checked[0][1]
    weights = weights / weights.sum()
    pooled_mean, pooled_std = fit_marginal((weights[:, None] * shares).sum(0).numpy(), thresholds)
    # Start every group at the pooled fit; with one threshold the shares fix no scale, so σ₀ stays 1.
    means = torch.full((len(shares),), pooled_mean, dtype=torch.float64, requires_grad=True)
    log_std = torch.tensor(np.log(pooled_std), dtype=torch.float64, requires_grad=len(tau) > 1)

    def objective():
        log_probs = ordinal_log_probs(means, log_std.exp().expand(len(shares)), tau)
        return -(weights * (shares * log_probs).sum(-1)).sum()

    _maximise(objective, [means, log_std] if len(tau) > 1 else [means])
    means = means.detach()
    mean = float((weights * means).sum())
    return mean, float(log_std.detach().exp()), (means - mean).numpy()


def marginal_shares(mean: float, std: float, thresholds) -> np.ndarray:
    """The class probabilities `π_j` of N(mean, std²) under `thresholds`."""
    tau = torch.as_tensor(thresholds, dtype=torch.float64)
    log_probs = ordinal_log_probs(torch.tensor([mean], dtype=torch.float64), torch.tensor([std]), tau)
    return log_probs.exp()[0].numpy()


def _checked(shares, thresholds) -> tuple[torch.Tensor, torch.Tensor]:
    shares = torch.as_tensor(np.asarray(shares, dtype=np.float64))
    tau = torch.as_tensor(np.asarray(thresholds, dtype=np.float64))
    if shares.shape != (len(tau) + 1,):
        raise ValueError(f"{len(tau)} thresholds need {len(tau) + 1} class shares, got {shares.tolist()}.")
    if not (torch.isfinite(shares).all() and (shares >= 0).all() and shares.sum() > 0):
        raise ValueError(f"Class shares must be finite, ≥ 0 and not all zero, got {shares.tolist()}.")
    shares = (shares / shares.sum()).clamp_min(MIN_SHARE)
    return shares / shares.sum(), tau


def _cross_entropy(shares, mean, std, tau) -> torch.Tensor:
    return -(shares * ordinal_log_probs(mean.reshape(1), std.reshape(1), tau)[0]).sum()


def _maximise(objective, params) -> None:
    optimizer = torch.optim.LBFGS(
        params, max_iter=_MAX_ITER, tolerance_grad=1e-12, tolerance_change=1e-15, line_search_fn="strong_wolfe"
    )

    def closure():
        optimizer.zero_grad()
        loss = objective()
        loss.backward()
        return loss

    optimizer.step(closure)
