"""Identifiability simulation study: can a reward model recover the mean μ(x) *and* the spread σ(x) of human reward?

A known world maps covariates `x ∈ [−1, 1]^d` to a latent reward `r ~ N(μ(x), σ(x)²)` with non-linear `μ` and `σ`.
From it we draw what a reward-modeling dataset contains:

- **pairs** of responses with a soft label `P(chosen ≻ rejected)`: the fraction of `m` simulated annotators whose own
  draws rank `chosen` higher, or the exact probit probability `Φ((μ_a − μ_b)/√(σ_a² + σ_b²))`;
- **anchors**: one further draw per response, thresholded at `τ_1 < τ_2` (class 0, 1 or 2); the 1-anchor variant
  thresholds the *same* draw at a single `τ_0`.

Small MLP reward models are fitted with the trainer's own loss functions (`soft_bt_loss`, `soft_probit_loss`,
`ordinal_anchor_nll`), objective `mean pair loss + λ · mean(anchor_nll(chosen) + anchor_nll(rejected))`, in four arms:
BT, Gaussian without anchors, Gaussian with one anchor threshold, Gaussian with two. Errors are measured on held-out
`x` in the world's own units, **without any post-hoc rescaling**.

Why the arms must differ (the mathematics the study checks):

- Pairwise probabilities depend on `(μ_a − μ_b)/√(σ_a² + σ_b²)` only, which is unchanged by `(μ, σ) → (aμ + b, aσ)`:
  pairs identify μ and σ only up to that two-parameter family, so the estimator's scale is whatever its initialisation
  and optimiser leave it at.
- One threshold adds `P(r > τ_0) = Φ((μ − τ_0)/σ)`, which pins the location (`b = τ_0(1 − a)`) but is unchanged by
  `(μ, σ) → (τ_0 + a(μ − τ_0), aσ)`: the scale `a` is still free.
- Two thresholds give `Φ((μ − τ_1)/σ)` and `Φ((μ − τ_2)/σ)`, two equations whose only solution is `a = 1, b = 0`.

The study makes this concrete with *equivalent worlds*: `SimulationWorld(scale=a)` is the world re-expressed by
`(μ, σ) → (τ_0 + a(μ − τ_0), aσ)`. Drawn with the same seed, its pairs and 1-anchor labels are identical to those of
the original world (exactly so for `τ_0 = 0` and `a` a power of two), so the BT, no-anchor and 1-anchor fits are
identical too and cannot be right in more than one of these worlds; only the 2-anchor labels differ.

Example:

```python
>>> from trl_anchor.studies.simulation import SimulationConfig, run_simulation
>>> results = run_simulation(SimulationConfig(quick=True, output_dir=None))
>>> sorted(results["summary"])
['bt', 'gaussian', 'gaussian_1_anchor', 'gaussian_2_anchor']
```
"""

import copy
import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from ..anchors import classes_from_scores, validate_thresholds
from ..losses import class_counts, ordinal_anchor_nll, preference_z, soft_bt_loss, soft_probit_loss
from ..models.modeling_gaussian import DEFAULT_VARIANCE_FLOOR, VarianceHead

logger = logging.getLogger(__name__)

ARMS = ("bt", "gaussian", "gaussian_1_anchor", "gaussian_2_anchor")
ARM_LABELS = {
    "bt": "BT (soft labels)",
    "gaussian": "Gaussian, no anchor",
    "gaussian_1_anchor": "Gaussian, 1 anchor",
    "gaussian_2_anchor": "Gaussian, 2 anchors",
}
_ANCHOR_THRESHOLDS = {"gaussian_1_anchor": "single", "gaussian_2_anchor": "pair"}
SOFT_LABEL_SOURCES = ("annotators", "exact")


# ------------------------------------------------------------------------------------------------------ configuration
@dataclass
class SimulationConfig:
    """Settings of `trl-anchor simulate` (every field is a command-line flag; `--config file.yaml` works too)."""

    output_dir: str | None = field(
        default="reports/simulation",
        metadata={"help": "Where results.json, README.md and the figures are written (None: write nothing)."},
    )
    dim: int = field(default=4, metadata={"help": "Dimension d of the covariates x ~ Uniform[-1, 1]^d (d ≥ 2)."})
    n_pairs: list[int] = field(
        default_factory=lambda: [250, 1000, 4000, 16000],
        metadata={"help": "Training-set sizes (number of pairs; every pair has two fresh responses), a log grid."},
    )
    seeds: list[int] = field(
        default_factory=lambda: [0, 1, 2], metadata={"help": "Seeds; each draws its own data and initialisation."}
    )
    arms: list[str] = field(
        default_factory=lambda: list(ARMS),
        metadata={"help": f"Arms to fit, a subset of {list(ARMS)}.", "choices": list(ARMS)},
    )
    soft_labels: str = field(
        default="annotators",
        metadata={
            "help": "`annotators`: a pair's label is the fraction of `annotators` simulated raters preferring chosen; "
            "`exact`: the exact probit probability.",
            "choices": list(SOFT_LABEL_SOURCES),
        },
    )
    annotators: int = field(default=10, metadata={"help": "Simulated annotators m per pair (soft_labels=annotators)."})
    thresholds: list[float] = field(
        default_factory=lambda: [-0.5, 0.5], metadata={"help": "The two anchor thresholds τ_1 < τ_2 (world units)."}
    )
    single_threshold: float | None = field(
        default=None,
        metadata={"help": "Threshold τ_0 of the 1-anchor arm; default: the midpoint of the two thresholds."},
    )
    anchor_lambda: float = field(
        default=1.0,
        metadata={
            "help": "λ, weight of the anchor NLL. 1 weights each anchor draw like one pair label (the joint "
            "likelihood); the trainer's default 0.1 down-weights noisy real anchors."
        },
    )
    equivalent_scales: list[float] = field(
        default_factory=lambda: [0.5, 2.0],
        metadata={
            "help": "Extra worlds (μ, σ) → (τ_0 + a(μ − τ_0), aσ) fitted at n = equivalence_n; their pairs and "
            "1-anchor labels equal the original world's. `1` alone: skip the check."
        },
    )
    equivalence_n: int | None = field(
        default=2000, metadata={"help": "Pairs for the equivalent-worlds check (None in Python: the largest n)."}
    )
    hidden_size: int = field(default=32, metadata={"help": "Width of the MLP trunk."})
    num_layers: int = field(default=2, metadata={"help": "Hidden layers of the MLP trunk."})
    epochs: int = field(default=600, metadata={"help": "Full-batch Adam steps (one step = one epoch)."})
    learning_rate: float = field(default=1e-2, metadata={"help": "Adam learning rate (cosine decay to 0)."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay of every parameter."})
    variance_floor: float = field(
        default=DEFAULT_VARIANCE_FLOOR, metadata={"help": "σ² floor of the variance head, as in the reward model."}
    )
    num_threads: int = field(
        default=1,
        metadata={
            "help": "torch CPU threads during the study (restored afterwards). Full-batch fits of tiny MLPs gain "
            "little from threads and slow down badly when the cores are shared; 0 keeps torch's setting."
        },
    )
    n_test: int = field(default=4096, metadata={"help": "Held-out covariates the errors are measured on."})
    quick: bool = field(
        default=False,
        metadata={"help": "Tiny sizes for smoke tests (n ≤ 300, 2 seeds, 100 epochs); overrides those fields."},
    )

    def __post_init__(self):
        if self.quick:
            self.n_pairs = [100, 300]
            self.seeds = [0, 1]
            self.epochs = 100
            self.hidden_size = 16
            self.n_test = 512
            self.equivalence_n = 300
        self.thresholds = validate_thresholds(self.thresholds)
        if len(self.thresholds) != 2:
            raise ValueError(f"`thresholds` must hold the two thresholds τ_1 < τ_2, got {self.thresholds}.")
        if self.single_threshold is None:
            self.single_threshold = 0.5 * (self.thresholds[0] + self.thresholds[1])
        if self.dim < 2:
            raise ValueError(f"`dim` must be at least 2 (μ and σ use two coordinates), got {self.dim}.")
        if not self.n_pairs or any(n < 2 for n in self.n_pairs):
            raise ValueError(f"`n_pairs` must be a non-empty list of sizes ≥ 2, got {self.n_pairs}.")
        self.n_pairs = sorted(int(n) for n in self.n_pairs)
        if not self.seeds:
            raise ValueError("`seeds` is empty.")
        unknown = [arm for arm in self.arms if arm not in ARMS]
        if unknown or not self.arms:
            raise ValueError(f"`arms` must be a non-empty subset of {list(ARMS)}, got {self.arms}.")
        self.arms = [arm for arm in ARMS if arm in self.arms]
        if self.soft_labels not in SOFT_LABEL_SOURCES:
            raise ValueError(f"`soft_labels` must be one of {SOFT_LABEL_SOURCES}, got {self.soft_labels!r}.")
        if self.soft_labels == "annotators" and self.annotators < 1:
            raise ValueError(f"`annotators` must be ≥ 1, got {self.annotators}.")
        if not self.anchor_lambda > 0:
            raise ValueError(f"`anchor_lambda` must be positive (0 is the no-anchor arm), got {self.anchor_lambda}.")
        if any(not a > 0 for a in self.equivalent_scales):
            raise ValueError(f"`equivalent_scales` must be positive, got {self.equivalent_scales}.")
        if self.equivalence_n is None:
            self.equivalence_n = self.n_pairs[-1]


# -------------------------------------------------------------------------------------------------------------- world
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


# --------------------------------------------------------------------------------------------------------------- data
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


# -------------------------------------------------------------------------------------------------------------- model
class MLPRewardModel(nn.Module):
    """Small MLP with the Gaussian reward model's two heads: a linear mean head and the library's `VarianceHead`.

    The variance head is `GaussianRewardModel`'s own module, so `σ² = softplus(w·h + b) + variance_floor` is exactly
    the reward model's parameterisation, starting at σ² = 1 for every x. The BT arm uses the same network and ignores
    the variance.
    """

    def __init__(
        self, dim: int, hidden_size: int = 32, num_layers: int = 2, variance_floor: float = DEFAULT_VARIANCE_FLOOR
    ):
        super().__init__()
        layers, width = [], dim
        for _ in range(num_layers):
            layers += [nn.Linear(width, hidden_size), nn.SiLU()]
            width = hidden_size
        self.trunk = nn.Sequential(*layers)
        self.mean_head = nn.Linear(width, 1)
        self.variance_head = VarianceHead(width, variance_floor)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.trunk(x)
        return self.mean_head(hidden).squeeze(-1), self.variance_head(hidden)


class _Ensemble:
    """Independent copies of one model trained side by side: parameters stacked on a leading axis and the forward
    vectorised with `torch.func.vmap`, so one batched matmul serves every seed. Adam is elementwise, so one optimiser
    over the stacked tensors equals one optimiser per copy."""

    def __init__(self, models: list[nn.Module]):
        params, buffers = stack_module_state(models)
        self.params = params
        self.buffers = buffers
        self.skeleton = copy.deepcopy(models[0]).to("meta")

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        def one(params, buffers, inputs):
            return functional_call(self.skeleton, (params, buffers), (inputs,))

        return vmap(one)(self.params, self.buffers, x)


# ----------------------------------------------------------------------------------------------------------- training
def _stack(datasets: list[PairData], name: str) -> torch.Tensor:
    return torch.stack([getattr(d, name) for d in datasets])


def arm_objective(
    arm: str,
    mean: torch.Tensor,
    variance: torch.Tensor,
    batch: dict[str, torch.Tensor],
    thresholds: dict[str, torch.Tensor],
    anchor_lambda: float,
) -> torch.Tensor:
    """Training objective of one arm per ensemble member: `mean pair loss + λ · mean(nll(chosen) + nll(rejected))`.

    `mean`/`variance` hold the chosen responses in the first half of the last axis and the rejected in the second.
    """
    mean_c, mean_r = mean.chunk(2, dim=-1)
    var_c, var_r = variance.chunk(2, dim=-1)
    if arm == "bt":
        return soft_bt_loss(mean_c, mean_r, batch["soft_label"]).mean(-1)
    loss = soft_probit_loss(mean_c, var_c, mean_r, var_r, batch["soft_label"]).mean(-1)
    if arm == "gaussian":
        return loss
    kind = _ANCHOR_THRESHOLDS[arm]
    taus = thresholds[kind]
    counts_c, counts_r = batch[f"{kind}_counts_chosen"], batch[f"{kind}_counts_rejected"]
    anchor = ordinal_anchor_nll(mean_c, var_c.sqrt(), taus, counts_c) + ordinal_anchor_nll(
        mean_r, var_r.sqrt(), taus, counts_r
    )
    return loss + anchor_lambda * anchor.mean(-1)


def _training_batch(datasets: list[PairData]) -> dict[str, torch.Tensor]:
    return {
        "x": torch.cat([_stack(datasets, "x_chosen"), _stack(datasets, "x_rejected")], dim=1).float(),
        "soft_label": _stack(datasets, "soft_label"),
        "pair_counts_chosen": class_counts(_stack(datasets, "anchor_chosen"), 2),
        "pair_counts_rejected": class_counts(_stack(datasets, "anchor_rejected"), 2),
        "single_counts_chosen": class_counts(_stack(datasets, "single_anchor_chosen"), 1),
        "single_counts_rejected": class_counts(_stack(datasets, "single_anchor_rejected"), 1),
    }


def fit_arm(arm: str, datasets: list[PairData], seeds: list[int], config: SimulationConfig) -> _Ensemble:
    """Fit one arm on one dataset per seed (full batch, AdamW with cosine decay); returns the trained ensemble."""
    models = []
    for seed in seeds:
        with torch.random.fork_rng(devices=[]):  # seeded init without touching the caller's global RNG
            torch.manual_seed(seed)  # the same initialisation for every arm of a seed
            models.append(MLPRewardModel(config.dim, config.hidden_size, config.num_layers, config.variance_floor))
    ensemble = _Ensemble(models)
    optimizer = torch.optim.AdamW(ensemble.params.values(), lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    batch = _training_batch(datasets)
    thresholds = {
        "pair": torch.tensor(config.thresholds, dtype=torch.float64),
        "single": torch.tensor([config.single_threshold], dtype=torch.float64),
    }
    for _ in range(config.epochs):
        optimizer.zero_grad(set_to_none=True)
        mean, variance = ensemble(batch["x"])
        objective = arm_objective(arm, mean, variance, batch, thresholds, config.anchor_lambda)
        objective.sum().backward()  # members share no parameters: the sum's gradient is each member's own
        optimizer.step()
        scheduler.step()
    return ensemble


# --------------------------------------------------------------------------------------------------------- evaluation
def fit_errors(
    mean_hat: torch.Tensor, std_hat: torch.Tensor | None, mean_true: torch.Tensor, std_true: torch.Tensor
) -> dict[str, float | None]:
    """Errors of one fit on held-out covariates, in the world's units.

    Headline errors use the raw predictions (no rescaling): `mu_rmse = RMSE(μ̂ − μ)` and
    `sigma_rel_rmse = RMS((σ̂ − σ)/σ)`. `sigma_scale` is the geometric mean of `σ̂/σ` (1 = right units). The
    `*_rescaled` diagnostics first apply the best affine map to μ̂ (least squares) and the best single factor to σ̂, so
    they measure the *shape* pairwise data can identify; they are not the study's result.
    """
    mean_hat, mean_true, std_true = mean_hat.double(), mean_true.double(), std_true.double()
    design = torch.stack([mean_hat, torch.ones_like(mean_hat)], dim=-1)
    coef = torch.linalg.lstsq(design, mean_true.unsqueeze(-1)).solution
    errors = {
        "mu_rmse": (mean_hat - mean_true).pow(2).mean().sqrt().item(),
        "mu_rmse_rescaled": (design @ coef - mean_true.unsqueeze(-1)).pow(2).mean().sqrt().item(),
        "sigma_rel_rmse": None,
        "sigma_scale": None,
        "sigma_rel_rmse_rescaled": None,
    }
    if std_hat is not None:
        ratio = std_hat.double() / std_true
        best = ratio.sum() / ratio.pow(2).sum()  # argmin_c Σ (c·ratio − 1)²
        errors["sigma_rel_rmse"] = (ratio - 1.0).pow(2).mean().sqrt().item()
        errors["sigma_scale"] = ratio.log().mean().exp().item()
        errors["sigma_rel_rmse_rescaled"] = (best * ratio - 1.0).pow(2).mean().sqrt().item()
    return errors


METRICS = ("mu_rmse", "sigma_rel_rmse", "sigma_scale", "mu_rmse_rescaled", "sigma_rel_rmse_rescaled")


def _data_generator(seed: int, n: int) -> torch.Generator:
    # Independent of the world's scale, so equivalent worlds draw identical random numbers.
    return torch.Generator().manual_seed(1_000_003 * seed + n)


def run_cell(
    config: SimulationConfig, world: SimulationWorld, n: int, x_test: torch.Tensor, progress=None
) -> list[dict[str, Any]]:
    """Fit every arm on `n` pairs of `world` for every seed; one record (arm, n, seed, scale, errors) per fit."""
    annotators = config.annotators if config.soft_labels == "annotators" else None
    datasets = [
        simulate_pairs(world, n, _data_generator(seed, n), config.thresholds, config.single_threshold, annotators)
        for seed in config.seeds
    ]
    mean_true, std_true = world.mean(x_test), world.std(x_test)
    records = []
    for arm in config.arms:
        start = time.perf_counter()
        ensemble = fit_arm(arm, datasets, config.seeds, config)
        with torch.no_grad():
            mean_hat, variance_hat = ensemble(x_test.float().expand(len(config.seeds), -1, -1))
        seconds = (time.perf_counter() - start) / len(config.seeds)
        for i, seed in enumerate(config.seeds):
            std_hat = None if arm == "bt" else variance_hat[i].sqrt()
            records.append(
                {
                    "arm": arm,
                    "n_pairs": n,
                    "seed": seed,
                    "world_scale": world.scale,
                    **fit_errors(mean_hat[i], std_hat, mean_true, std_true),
                    "fit_seconds": seconds,
                }
            )
        if progress is not None:
            progress.update(1)
    return records


# ------------------------------------------------------------------------------------------------------------ driver
TEST_SEED = 12345


def _aggregate(records: list[dict[str, Any]]) -> dict[str, dict[str, float | None]]:
    stats = {}
    for metric in METRICS:
        values = [r[metric] for r in records if r[metric] is not None]
        if not values:
            stats[metric] = None
            continue
        array = np.asarray(values)
        stats[metric] = {"mean": float(array.mean()), "std": float(array.std()), "values": [float(v) for v in array]}
    return stats


def summarize(records: list[dict[str, Any]], by: str, **where: Any) -> dict[str, dict[str, Any]]:
    """`{arm: {str(value of by): {metric: {mean, std, values}}}}` over the records matching `where`."""
    selected = [r for r in records if all(r[k] == v for k, v in where.items())]
    summary = {}
    for arm in [a for a in ARMS if any(r["arm"] == a for r in selected)]:
        rows = [r for r in selected if r["arm"] == arm]
        keys = sorted({r[by] for r in rows})
        summary[arm] = {str(key): _aggregate([r for r in rows if r[by] == key]) for key in keys}
    return summary


def identifiability_checks(summary: dict, equivalence: dict, config: SimulationConfig) -> dict[str, Any]:
    """The issue's claims as numbers: the 2-anchor σ error at the largest n (target ≤ 0.10), whether it shrinks from
    the smallest to the largest n, and each Gaussian arm's worst σ error over the equivalent worlds."""
    largest, smallest = str(config.n_pairs[-1]), str(config.n_pairs[0])
    checks: dict[str, Any] = {"largest_n": config.n_pairs[-1]}
    if "gaussian_2_anchor" in summary:
        two = summary["gaussian_2_anchor"]
        at_largest = two[largest]["sigma_rel_rmse"]["mean"]
        at_smallest = two[smallest]["sigma_rel_rmse"]["mean"]
        checks.update(
            two_anchor_sigma_rel_rmse_at_largest_n=at_largest,
            two_anchor_sigma_rel_rmse_at_smallest_n=at_smallest,
            two_anchor_sigma_within_10_percent=at_largest <= 0.10,
            two_anchor_sigma_error_shrinks=at_largest < at_smallest,
        )
    gaussian_arms = [arm for arm in equivalence if arm != "bt"]
    if gaussian_arms:
        checks["worst_sigma_rel_rmse_over_equivalent_worlds"] = {
            arm: max(cell["sigma_rel_rmse"]["mean"] for cell in equivalence[arm].values()) for arm in gaussian_arms
        }
    return checks


def run_simulation(config: SimulationConfig, show_progress: bool = True) -> dict[str, Any]:
    """Run the whole study and, when `config.output_dir` is set, write its report there (see `write_report`).

    Returns a JSON-serialisable dict: `config`, `world`, `records` (one per fit), `summary`
    (`{arm: {n: {metric: {mean, std, values}}}}` in the original world), `equivalence`
    (`{arm: {scale: ...}}` at `equivalence_n`), `checks`, `runtime_seconds` and `cpu_seconds`.
    """
    previous_threads = torch.get_num_threads()
    if config.num_threads > 0:
        torch.set_num_threads(config.num_threads)
    try:
        results = _run_study(config, show_progress)
    finally:
        torch.set_num_threads(previous_threads)
    if config.output_dir is not None:
        write_report(results, config.output_dir)
    return results


def _run_study(config: SimulationConfig, show_progress: bool) -> dict[str, Any]:
    from tqdm.auto import tqdm

    start, start_cpu = time.perf_counter(), time.process_time()
    world = SimulationWorld(config.dim, pivot=config.single_threshold)
    x_test = world.sample_x(config.n_test, torch.Generator().manual_seed(TEST_SEED))
    scales = [a for a in config.equivalent_scales if a != 1.0]
    cells = [(world, n) for n in config.n_pairs]
    if scales and config.equivalence_n not in config.n_pairs:
        cells.append((world, config.equivalence_n))
    cells += [
        (SimulationWorld(config.dim, scale=a, pivot=config.single_threshold), config.equivalence_n) for a in scales
    ]

    records = []
    with tqdm(total=len(cells) * len(config.arms), desc="simulate", unit="fit", disable=not show_progress) as progress:
        for cell_world, n in cells:
            progress.set_postfix(n=n, world_scale=cell_world.scale)
            records += run_cell(config, cell_world, n, x_test, progress)

    summary = summarize(records, "n_pairs", world_scale=1.0)
    summary = {arm: {str(n): cells[str(n)] for n in config.n_pairs} for arm, cells in summary.items()}
    equivalence = summarize(records, "world_scale", n_pairs=config.equivalence_n) if scales else {}
    mean_true, std_true = world.mean(x_test), world.std(x_test)
    results = {
        "config": asdict(config),
        "command": regenerating_command(config),
        "world": {
            "mean": "sin(pi x_1) + 2 x_2^2 - 2/3 + mean(x)",
            "std": "0.2 + 0.6 sigmoid(2 x_1 - 3 x_2 x_d)",
            "covariates": f"x ~ Uniform[-1, 1]^{config.dim}",
            "equivalent_world": "(mu, sigma) -> (tau_0 + a (mu - tau_0), a sigma)",
            "test_seed": TEST_SEED,
            "test_mu_std": float(mean_true.std()),
            "test_sigma_mean": float(std_true.mean()),
            "test_sigma_range": [float(std_true.min()), float(std_true.max())],
        },
        "records": records,
        "summary": summary,
        "equivalence": equivalence,
        "checks": identifiability_checks(summary, equivalence, config),
        "runtime_seconds": time.perf_counter() - start,
        "cpu_seconds": time.process_time() - start_cpu,
    }
    return results


def regenerating_command(config: SimulationConfig) -> str:
    """The `trl-anchor simulate` command line that reproduces `config` (only non-default flags)."""
    reference = SimulationConfig(quick=config.quick)
    parts = ["trl-anchor simulate"]
    if config.quick:
        parts.append("--quick")
    for f in fields(SimulationConfig):
        value, default = getattr(config, f.name), getattr(reference, f.name)
        # The output directory changes no number; `quick` is already in the command.
        if f.name in ("quick", "output_dir") or value == default:
            continue
        if isinstance(value, list):
            shown = " ".join(str(v) for v in value) or "1"  # `--equivalent_scales 1`: no extra world
        else:
            shown = str(value)
        parts.append(f"--{f.name} {shown}")
    return " ".join(parts)


# ------------------------------------------------------------------------------------------------------------- report
ERROR_FIGURE = "error_vs_n.png"
EQUIVALENCE_FIGURE = "equivalent_worlds.png"
_COLORS = {
    "bt": "tab:gray",
    "gaussian": "tab:orange",
    "gaussian_1_anchor": "tab:purple",
    "gaussian_2_anchor": "tab:blue",
}


def write_report(results: dict[str, Any], output_dir: str | Path) -> Path:
    """Write `results.json`, the figures and `README.md` (the markdown report) into `output_dir`."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    plot_error_vs_n(results, output_dir / ERROR_FIGURE)
    if any(arm != "bt" for arm in results["equivalence"]):
        plot_equivalent_worlds(results, output_dir / EQUIVALENCE_FIGURE)
    (output_dir / "README.md").write_text(render_report(results))
    logger.info("Simulation report written to %s", output_dir)
    return output_dir


def _fitted(results: dict[str, Any], gaussian_only: bool = False) -> tuple[str, ...]:
    """The arms of the study, in canonical order (only those with a σ when `gaussian_only`)."""
    return tuple(arm for arm in results["summary"] if not (gaussian_only and arm == "bt"))


def _log_axes(ax, x_ticks: list[float], y_format: str = "{:g}") -> None:
    """Log-log axes labelled with plain numbers (1, 2, 5 × 10^k on y) instead of powers of ten."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xticks(x_ticks, [f"{t:g}" for t in x_ticks])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: y_format.format(v)))
    ax.yaxis.set_minor_formatter(NullFormatter())
    ax.grid(True, which="major", alpha=0.3)


def plot_error_vs_n(results: dict[str, Any], path: Path) -> None:
    """Three panels against n (log scale): μ RMSE, σ relative RMSE (no rescaling) and the σ scale σ̂/σ."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("mu_rmse", "RMSE of μ (world units, no rescaling)", _fitted(results), "{:g}"),
        ("sigma_rel_rmse", "relative RMSE of σ (no rescaling)", _fitted(results, gaussian_only=True), "{:.0%}"),
        ("sigma_scale", "σ scale: geometric mean of σ̂ / σ", _fitted(results, gaussian_only=True), "{:g}"),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, (metric, ylabel, arms, y_format) in zip(axes, panels):
        for arm in arms:
            cells = results["summary"][arm]
            ns = [int(n) for n in cells]
            stats = [cells[n][metric] for n in cells]
            means = [s["mean"] for s in stats]
            ax.errorbar(
                ns,
                means,
                yerr=[s["std"] for s in stats],
                marker="o",
                capsize=3,
                color=_COLORS[arm],
                label=ARM_LABELS[arm],
            )
            for n, s in zip(ns, stats):
                ax.scatter([n] * len(s["values"]), s["values"], s=8, alpha=0.35, color=_COLORS[arm])
        _log_axes(ax, results["config"]["n_pairs"], y_format)
        ax.set_xlabel("n (training pairs)")
        ax.set_ylabel(ylabel)
    axes[1].axhline(0.10, color="black", linestyle="--", linewidth=1, label="10% target")
    axes[2].axhline(1.0, color="black", linestyle="--", linewidth=1, label="true scale")
    axes[0].legend(fontsize=8)
    axes[1].legend(fontsize=8)
    seeds = len(results["config"]["seeds"])
    fig.suptitle(f"Identifiability simulation: error on held-out x vs n (mean ± sd over {seeds} seeds; dots: seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_equivalent_worlds(results: dict[str, Any], path: Path) -> None:
    """Estimated σ scale against the true one over worlds that pairs (and one anchor) cannot tell apart."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 4.2))
    arms = [arm for arm in results["equivalence"] if arm != "bt"]
    scales = sorted(float(a) for a in results["equivalence"][arms[0]]) if arms else []
    ax.plot(scales, scales, color="black", linestyle="--", linewidth=1, label="truth (σ̂ scale = a)")
    for arm in arms:
        cells = results["equivalence"][arm]
        # σ̂/σ_a times a: the estimate's scale in the units of the original world (a = 1).
        values = [[v * a for v in cells[str(a)]["sigma_scale"]["values"]] for a in scales]
        ax.errorbar(
            scales,
            [np.mean(v) for v in values],
            yerr=[np.std(v) for v in values],
            marker="o",
            capsize=3,
            color=_COLORS[arm],
            label=ARM_LABELS[arm],
        )
    _log_axes(ax, scales)
    ax.set_xlabel("world scale a: (μ, σ) → (τ₀ + a(μ − τ₀), aσ)")
    ax.set_ylabel("estimated σ scale (geometric mean σ̂ / σ₁)")
    ax.set_title(f"Equivalent worlds, n = {results['config']['equivalence_n']} pairs", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _fmt(stats: dict | None, percent: bool = False) -> str:
    if stats is None:
        return "—"
    if percent:
        return f"{100 * stats['mean']:.1f}% ± {100 * stats['std']:.1f}"
    return f"{stats['mean']:.3f} ± {stats['std']:.3f}"


def _table(
    results: dict[str, Any], title: str, metric: str, arms: tuple[str, ...], percent: bool = False
) -> list[str]:
    """A titled markdown table of `metric` (mean ± sd over seeds), rows n, columns arms; nothing without arms."""
    if not arms:
        return []
    lines = [
        title,
        "",
        "| n pairs | " + " | ".join(ARM_LABELS[a] for a in arms) + " |",
        "|---:|" + "---:|" * len(arms),
    ]
    for n in results["config"]["n_pairs"]:
        cells = [_fmt(results["summary"][arm][str(n)][metric], percent) for arm in arms]
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return lines + [""]


def _equivalence_section(results: dict[str, Any]) -> list[str]:
    equivalence, config = results["equivalence"], results["config"]
    arms = [arm for arm in equivalence if arm != "bt"]
    if not arms:
        return []
    scales = sorted(float(a) for a in equivalence[arms[0]])
    header = f"| arm | {' | '.join(f'a = {a:g}' for a in scales)} |\n|---|" + "---:|" * len(scales)

    def row(arm, metric, transform=lambda a, v: v, percent=False):
        cells = []
        for a in scales:
            stats = equivalence[arm][str(a)][metric]
            values = [transform(a, v) for v in stats["values"]] if stats else None
            shown = None if values is None else {"mean": float(np.mean(values)), "std": float(np.std(values))}
            cells.append(_fmt(shown, percent))
        return f"| {ARM_LABELS[arm]} | " + " | ".join(cells) + " |"

    return [
        "## Equivalent worlds: the data without two thresholds cannot tell these worlds apart",
        "",
        (
            "World `a` is the same world in other units: `(μ, σ) → (τ₀ + a(μ − τ₀), aσ)` with"
            f" τ₀ = {config['single_threshold']:g} (the 1-anchor threshold). Drawn with the same seed, its pairwise soft"
            " labels and its 1-anchor labels are those of the original world (bit for bit when τ₀ = 0 and `a` is a power"
            " of two; otherwise up to rounding), so BT, Gaussian-no-anchor and Gaussian-1-anchor are fitted to the same"
            " data in every world and return the same model — which can have the right σ in at most one of them. Only"
            f" the two-threshold labels change with `a`. n = {config['equivalence_n']} pairs, the same seeds as above."
        ),
        "",
        f"![σ scale across equivalent worlds]({EQUIVALENCE_FIGURE})",
        "",
        "Estimated σ scale in the original world's units (geometric mean of σ̂ / σ₁; the truth is `a`):",
        "",
        header,
        *[row(arm, "sigma_scale", transform=lambda a, v: a * v) for arm in arms],
        "",
        "Relative RMSE of σ in each world (no rescaling):",
        "",
        header,
        *[row(arm, "sigma_rel_rmse", percent=True) for arm in arms],
        "",
        "RMSE of μ in each world's units (no rescaling):",
        "",
        header,
        *[row(arm, "mu_rmse") for arm in equivalence],
        "",
    ]


def _headline(results: dict[str, Any]) -> list[str]:
    checks, config, summary = results["checks"], results["config"], results["summary"]
    largest, smallest = checks["largest_n"], config["n_pairs"][0]
    lines = []
    if "two_anchor_sigma_rel_rmse_at_largest_n" in checks:
        met = "met" if checks["two_anchor_sigma_within_10_percent"] else "**not met**"
        lines.append(
            f"- **Two anchors**: the relative RMSE of σ goes from "
            f"{100 * checks['two_anchor_sigma_rel_rmse_at_smallest_n']:.1f}% at n = {smallest} to "
            f"{100 * checks['two_anchor_sigma_rel_rmse_at_largest_n']:.1f}% at n = {largest} (target ≤ 10%: {met})."
        )
    for arm, what in (("gaussian", "No anchor"), ("gaussian_1_anchor", "One anchor")):
        if arm in summary:
            scales = summary[arm][str(largest)]["sigma_scale"]["values"]
            errors = [summary[arm][str(n)]["sigma_rel_rmse"]["mean"] for n in config["n_pairs"]]
            lines.append(
                f"- **{what}**: nothing in the data fixes the scale, so σ̂/σ is wherever the initialisation (σ² = 1)"
                f" and the optimiser leave it: at n = {largest} between {min(scales):.2f} and {max(scales):.2f} over"
                f" seeds; the σ error over the n grid is {', '.join(f'{100 * e:.0f}%' for e in errors)}. How close it lands"
                " depends on how the world's units compare with the initialisation's, which the equivalent worlds"
                " below vary."
            )
    worst = checks.get("worst_sigma_rel_rmse_over_equivalent_worlds")
    if worst:
        lines.append(
            "- **Across equivalent worlds** (same pairs, same 1-anchor labels) the worst σ relative RMSE is "
            + ", ".join(f"{ARM_LABELS[a]} {100 * v:.0f}%" for a, v in worst.items())
            + "."
        )
    if "bt" in summary:
        bt = summary["bt"][str(largest)]
        line = (
            "- **BT** fits a logistic utility in units of the pair noise, not μ: at n = "
            f"{largest} its μ RMSE without rescaling is {bt['mu_rmse']['mean']:.3f}, after the best affine map"
            f" (diagnostic below) {bt['mu_rmse_rescaled']['mean']:.3f}"
        )
        if "gaussian_2_anchor" in summary:
            two = summary["gaussian_2_anchor"][str(largest)]
            line += f" (2 anchors: {two['mu_rmse']['mean']:.3f} and {two['mu_rmse_rescaled']['mean']:.3f})"
        lines.append(line + ".")
    return lines


def render_report(results: dict[str, Any]) -> str:
    """The markdown report: command, settings, headline numbers, figures and tables."""
    config, world, checks = results["config"], results["world"], results["checks"]
    arms, gaussian_arms = _fitted(results), _fitted(results, gaussian_only=True)
    soft = (
        f"the fraction of m = {config['annotators']} simulated annotators (each draws r ~ N(μ, σ²) for both responses)"
        if config["soft_labels"] == "annotators"
        else "the exact probit probability Φ((μ_a − μ_b)/√(σ_a² + σ_b²))"
    )
    lines = [
        "# Identifiability simulation study",
        "",
        "Generated by `trl-anchor simulate` (`trl_anchor/simulation.py`); every number and figure here is regenerated by",
        "",
        "```bash",
        results["command"],
        "```",
        "",
        (
            f"(wall time {results['runtime_seconds'] / 60:.1f} min, CPU time {results['cpu_seconds'] / 60:.1f} min, with"
            f" {config['num_threads'] or 'default'} torch thread(s); `results.json` holds every fit's errors)."
        ),
        "",
        "## Claim under test",
        "",
        (
            "Pairwise preference probabilities `Φ((μ_a − μ_b)/√(σ_a² + σ_b²))` are unchanged by `(μ, σ) → (aμ + b, aσ)`, so"
            " pairs identify the reward distribution only up to that family. One anchor threshold τ₀ pins the location"
            " but leaves the scale `a` free; two thresholds τ₁ < τ₂ fix both. So a Gaussian reward model with two anchors"
            " should recover μ(x) and σ(x) in the world's own units, with an error that falls as n grows, and without"
            " anchors or with one it should not."
        ),
        "",
        "## Setup",
        "",
        (
            f"- **World**: {world['covariates']}; μ(x) = {world['mean']}; σ(x) = {world['std']}. On the held-out set"
            f" (n = {config['n_test']}, seed {world['test_seed']}) sd(μ) = {world['test_mu_std']:.2f}, σ ranges"
            f" {world['test_sigma_range'][0]:.2f}–{world['test_sigma_range'][1]:.2f} (mean {world['test_sigma_mean']:.2f})."
        ),
        f"- **Pairs**: n pairs of fresh responses; soft label = {soft}; chosen = the majority side.",
        (
            f"- **Anchors**: one further draw r ~ N(μ, σ²) per response; 2-anchor class = thresholds exceeded among"
            f" τ = {config['thresholds']}; the 1-anchor arm thresholds the same draw at τ₀ = {config['single_threshold']:g}."
        ),
        (
            f"- **Model**: MLP trunk ({config['num_layers']} × {config['hidden_size']}, SiLU) with a linear mean head and"
            f" the library's `VarianceHead` (σ² = softplus(·) + {config['variance_floor']:g}, starting at σ² = 1); BT uses"
            " the mean head only."
        ),
        (
            "- **Loss**: the trainer's own functions, `soft_bt_loss` (BT) or `soft_probit_loss` (Gaussian arms) +"
            f" λ · mean(`ordinal_anchor_nll`(chosen) + `ordinal_anchor_nll`(rejected)), λ = {config['anchor_lambda']:g}."
            " With λ = 1 each anchor draw weighs as much as one pair label: the joint likelihood of the simulated data."
            " The trainer's default 0.1 down-weights anchors because real anchors are noisy and misspecified; data"
            " simulated from the model itself need no such discount (any λ > 0 identifies σ in the limit, a smaller one"
            " just uses the anchors' information less efficiently)."
        ),
        (
            f"- **Training**: full batch, AdamW (lr {config['learning_rate']:g}, cosine decay, weight decay"
            f" {config['weight_decay']:g}), {config['epochs']} steps; no early stopping, no rescaling."
        ),
        f"- **Seeds** {config['seeds']} (each draws its own data and initialisation; every arm of a seed shares both).",
        (
            "- **Errors on held-out x, in the world's units, no post-hoc rescaling**: RMSE of μ, relative RMSE of σ"
            " (RMS of (σ̂ − σ)/σ) and the σ scale (geometric mean of σ̂/σ; 1 = right units)."
        ),
        "",
        "## Result",
        "",
        *_headline(results),
        "",
        f"![error vs n]({ERROR_FIGURE})",
        "",
        *_table(
            results,
            "Relative RMSE of σ (no rescaling), mean ± sd over seeds:",
            "sigma_rel_rmse",
            gaussian_arms,
            percent=True,
        ),
        *_table(results, "σ scale, geometric mean of σ̂/σ (1 = right units):", "sigma_scale", gaussian_arms),
        *_table(results, "RMSE of μ (world units, no rescaling):", "mu_rmse", arms),
        *_equivalence_section(results),
        "## Diagnostics (rescaled — not the result)",
        "",
        (
            "What pairs alone *can* identify is the shape: after the best affine map of μ̂ and the best single factor on"
            " σ̂ (fitted on the held-out set itself, which a user could not do), the errors are:"
        ),
        "",
        *_table(results, "RMSE of μ after the best affine map:", "mu_rmse_rescaled", arms),
        *_table(
            results,
            "Relative RMSE of σ after the best single factor:",
            "sigma_rel_rmse_rescaled",
            gaussian_arms,
            percent=True,
        ),
        "## Checks (from `results.json`)",
        "",
        "```json",
        json.dumps(checks, indent=1),
        "```",
        "",
    ]
    return "\n".join(lines)
