"""Fitting the arms of the simulation: a small MLP with the reward model's own `VarianceHead`, trained on the trainer's
loss functions for every seed at once (a vmapped ensemble), and the errors of a fit in the world's units."""

import copy

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from ...losses import class_counts, ordinal_anchor_nll, soft_bt_loss, soft_probit_loss
from ...models.configuration_gaussian import DEFAULT_VARIANCE_FLOOR
from ...models.modeling_gaussian import VarianceHead
from .config import SimulationConfig
from .world import PairData

_ANCHOR_THRESHOLDS = {"gaussian_1_anchor": "single", "gaussian_2_anchor": "pair"}


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
