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

from .config import ARM_LABELS, ARMS, SOFT_LABEL_SOURCES, SimulationConfig, regenerating_command
from .fitting import METRICS, MLPRewardModel, arm_objective, fit_arm, fit_errors
from .report import (
    EQUIVALENCE_FIGURE,
    ERROR_FIGURE,
    plot_equivalent_worlds,
    plot_error_vs_n,
    render_report,
    write_report,
)
from .run import TEST_SEED, identifiability_checks, run_cell, run_simulation, summarize
from .world import PairData, SimulationWorld, anchor_classes, draw_latent_rewards, draw_soft_labels, simulate_pairs

__all__ = [
    "ARMS",
    "ARM_LABELS",
    "EQUIVALENCE_FIGURE",
    "ERROR_FIGURE",
    "METRICS",
    "SOFT_LABEL_SOURCES",
    "TEST_SEED",
    "MLPRewardModel",
    "PairData",
    "SimulationConfig",
    "SimulationWorld",
    "anchor_classes",
    "arm_objective",
    "draw_latent_rewards",
    "draw_soft_labels",
    "fit_arm",
    "fit_errors",
    "identifiability_checks",
    "plot_equivalent_worlds",
    "plot_error_vs_n",
    "regenerating_command",
    "render_report",
    "run_cell",
    "run_simulation",
    "simulate_pairs",
    "summarize",
    "write_report",
]
