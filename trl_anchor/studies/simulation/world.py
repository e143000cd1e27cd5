"""The simulated world: a known μ(x), σ(x) (optionally re-expressed in other units) and the data a reward-modelling set
holds, drawn from it: pairs with soft labels and one- or two-threshold anchors."""

import math
from dataclasses import dataclass

import torch

from ...anchors import classes_from_scores
from ...losses import preference_z


@dataclass(frozen=True)
class SimulationWorld:
    """The known truth: `μ(x)` and `σ(x)` on `x ∈ [−1, 1]^d`, optionally re-expressed in other units.

    `μ(x) = sin(π x_1) + 2 x_2² − 2/3 + mean(x)` and `σ(x) = 0.2 + 0.6 · sigmoid(2 x_1 − 3 x_2 x_d)` (so σ ∈ (0.2,
    0.8), unrelated in shape to μ). With `scale = a ≠ 1` the world is `(τ_0 + a(μ − τ_0), aσ)`: every pairwise
    probability and every `P(r > τ_0)` is unchanged, only the 2-threshold anchor probabilities differ.

    Example:

    ```python
    >>> world = SimulationWorld(dim=3)
    >>> x = torch.zeros(1, 3)
    >>> world.mean(x), world.std(x)
    (tensor([-0.6667]), tensor([0.5000]))
    ```
    """

    dim: int
    scale: float = 1.0
    pivot: float = 0.0

    def sample_x(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return torch.rand(n, self.dim, generator=generator, dtype=torch.float64) * 2.0 - 1.0

    def mean(self, x: torch.Tensor) -> torch.Tensor:
        base = torch.sin(math.pi * x[:, 0]) + 2.0 * x[:, 1] ** 2 - 2.0 / 3.0 + x.mean(-1)
        return self.pivot + self.scale * (base - self.pivot)

    def std(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * (0.2 + 0.6 * torch.sigmoid(2.0 * x[:, 0] - 3.0 * x[:, 1] * x[:, -1]))


@dataclass
class PairData:
    """One simulated training set: `n` pairs (chosen = majority side), soft labels and both anchor variants."""

    x_chosen: torch.Tensor  # (n, d)
    x_rejected: torch.Tensor  # (n, d)
    soft_label: torch.Tensor  # (n,) P(chosen ≻ rejected) ≥ 0.5
    anchor_chosen: torch.Tensor  # (n,) class 0..2 w.r.t. (τ_1, τ_2)
    anchor_rejected: torch.Tensor
    single_anchor_chosen: torch.Tensor  # (n,) class 0..1 w.r.t. τ_0, from the same draw
    single_anchor_rejected: torch.Tensor


def draw_soft_labels(
    world: SimulationWorld,
    x_a: torch.Tensor,
    x_b: torch.Tensor,
    annotators: int | None,
    generator: torch.Generator,
) -> torch.Tensor:
    """`P(a ≻ b)` per pair: the fraction of `annotators` raters whose own draws rank `a` higher (ties impossible in
    continuous draws), or the exact probit probability when `annotators` is None."""
    mean_a, std_a, mean_b, std_b = world.mean(x_a), world.std(x_a), world.mean(x_b), world.std(x_b)
    if annotators is None:
        return torch.special.ndtr(preference_z(mean_a, std_a**2, mean_b, std_b**2))
    noise = torch.randn(2, x_a.shape[0], annotators, generator=generator, dtype=torch.float64)
    reward_a = mean_a.unsqueeze(-1) + std_a.unsqueeze(-1) * noise[0]
    reward_b = mean_b.unsqueeze(-1) + std_b.unsqueeze(-1) * noise[1]
    return (reward_a > reward_b).double().mean(-1)


def draw_latent_rewards(world: SimulationWorld, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One draw `r ~ N(μ(x), σ(x)²)` per row: what an anchor labeller sees."""
    noise = torch.randn(x.shape[0], generator=generator, dtype=torch.float64)
    return world.mean(x) + world.std(x) * noise


def anchor_classes(rewards: torch.Tensor, thresholds: list[float]) -> torch.Tensor:
    """Number of thresholds each reward exceeds (the trainer's anchor class)."""
    return torch.from_numpy(classes_from_scores(rewards.numpy(), thresholds)).long()


def simulate_pairs(
    world: SimulationWorld,
    n: int,
    generator: torch.Generator,
    thresholds: list[float],
    single_threshold: float,
    annotators: int | None,
) -> PairData:
    """Draw `n` pairs of fresh responses with soft labels and anchors, oriented so that `soft_label ≥ 0.5`.

    Draws happen in a fixed order (covariates, annotators, anchors), so two worlds that differ only in `scale` see the
    same random numbers.
    """
    x_a, x_b = world.sample_x(n, generator), world.sample_x(n, generator)
    label = draw_soft_labels(world, x_a, x_b, annotators, generator)
    reward_a, reward_b = draw_latent_rewards(world, x_a, generator), draw_latent_rewards(world, x_b, generator)
    swap = label < 0.5

    def orient(a, b):
        mask = swap.reshape(-1, *([1] * (a.dim() - 1)))
        return torch.where(mask, b, a), torch.where(mask, a, b)

    x_c, x_r = orient(x_a, x_b)
    r_c, r_r = orient(reward_a, reward_b)
    return PairData(
        x_chosen=x_c,
        x_rejected=x_r,
        soft_label=torch.where(swap, 1.0 - label, label),
        anchor_chosen=anchor_classes(r_c, thresholds),
        anchor_rejected=anchor_classes(r_r, thresholds),
        single_anchor_chosen=anchor_classes(r_c, [single_threshold]),
        single_anchor_rejected=anchor_classes(r_r, [single_threshold]),
    )
