"""Robustness of the pairwise likelihood to mislabelled pairs: BT vs the Gaussian probit, with and without remedies.

At the variance floor the probit's loss grows like z²/2 in a wrongly ordered pair's standardised gap z = Δμ/σ_Δ and
its gradient like |z|/σ_Δ (BT's gradient in Δμ is bounded by 1), so after global gradient clipping a single
mislabelled pair can dominate a batch. This script measures it: first the loss and gradient of one pair with Δμ = −50
at the floor, then training on synthetic data whose labels are flipped for 0–20% of the pairs.

World: 8-dimensional response features; true μ linear in them (sd 2), true σ log-linear (median e^log_sigma, by
default 0.05, so confident responses sit near the variance floor); each train pair's label is the share of
`annotators` simulated annotators (r ~ N(μ, σ²); 1 by default: hard labels) preferring the first response, then
flipped (p → 1 − p) for a random `noise` fraction of pairs; two anchors from one more draw per response, thresholded
at the 25th/75th percentiles. Model: a 2-layer MLP trunk with a mean head and `trl_anchor`'s variance parameterisation
(softplus + floor 1e-4, σ² = 1 at init), Adam, global gradient clipping at 1.0 (the Trainer's default), λ = 0.1, the
paper's anchor normalisation. Held-out pairs are scored against their exact preference probability: accuracy
(majority side), soft cross-entropy, and the Spearman correlation of predicted σ with the true σ. The last column is
the share of a batch's pull on μ (|∂L/∂μ| summed over its 128 responses) taken by its hardest-pulling response, over
the last epoch (uniform would be 1/128 ≈ 0.008).

    python benchmarks/robust_probit.py            # about 10 CPU-minutes
"""

import argparse
import math

import numpy as np
import torch
from _common import machine_info
from scipy.stats import norm, spearmanr
from torch import nn

from trl_anchor.losses import batch_anchor_loss, class_counts, ordinal_anchor_nll, soft_bt_loss, soft_probit_loss
from trl_anchor.metrics import preference_accuracy

DIM, RESPONSES, TRAIN_PAIRS, TEST_PAIRS = 8, 2500, 6000, 4000
FLOOR = 1e-4
# variant → (pairwise loss, probit tail, variance floor)
VARIANTS = {
    "bt": ("bt", None, None),
    "gaussian": ("probit", None, FLOOR),
    "gaussian, floor 1e-2": ("probit", None, 1e-2),
    "gaussian, tail 3": ("probit", 3.0, FLOOR),
    "gaussian, tail 5": ("probit", 5.0, FLOOR),
}


def single_pair(loss_kind, tail=None):
    """Loss and |dℓ/dΔμ| of one pair labelled 1 with Δμ = −50 (Gaussian: both variances at the floor)."""
    gap = torch.tensor([-50.0], dtype=torch.float64, requires_grad=True)
    zero, floor = torch.zeros(1, dtype=torch.float64), torch.full((1,), FLOOR, dtype=torch.float64)
    if loss_kind == "bt":
        loss = soft_bt_loss(gap, zero, torch.ones(1))
    else:
        loss = soft_probit_loss(gap, floor, zero, floor, torch.ones(1), tail=tail)
    loss.backward()
    return loss.item(), abs(gap.grad.item())


def make_world(seed, annotators, log_sigma):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(RESPONSES, DIM))
    w, v = rng.normal(size=DIM), rng.normal(size=DIM)
    mu = 2.0 * x @ (w / np.linalg.norm(w))
    sigma = np.exp(1.2 * x @ (v / np.linalg.norm(v)) + log_sigma)
    draw = rng.normal(mu, sigma)
    tau = np.percentile(draw, [25, 75])
    anchor = (draw[:, None] >= tau[None, :]).sum(1)
    split = int(0.8 * RESPONSES)

    def pairs(low, high, n):
        a, b = rng.integers(low, high, n), rng.integers(low, high, n)
        keep = a != b
        return a[keep], b[keep]

    train_a, train_b = pairs(0, split, TRAIN_PAIRS)
    votes = rng.normal(mu[train_a, None], sigma[train_a, None], (len(train_a), annotators)) > rng.normal(
        mu[train_b, None], sigma[train_b, None], (len(train_b), annotators)
    )
    test_a, test_b = pairs(split, RESPONSES, TEST_PAIRS)
    true_prob = norm.cdf((mu[test_a] - mu[test_b]) / np.sqrt(sigma[test_a] ** 2 + sigma[test_b] ** 2))
    return dict(x=x, mu=mu, sigma=sigma, tau=tau, anchor=anchor, train=(train_a, train_b), soft=votes.mean(1),
                test=(test_a, test_b), true_prob=true_prob, split=split)


class Model(nn.Module):
    def __init__(self, floor):
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(DIM, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh())
        self.mean = nn.Linear(64, 1)
        self.raw_variance = nn.Linear(64, 1)
        self.floor = floor if floor is not None else FLOOR
        nn.init.zeros_(self.raw_variance.weight)
        nn.init.constant_(self.raw_variance.bias, math.log(math.expm1(1.0 - self.floor)))  # σ² = 1 at init

    def forward(self, x):
        h = self.trunk(x)
        return self.mean(h).squeeze(-1), nn.functional.softplus(self.raw_variance(h).squeeze(-1)) + self.floor


def train_and_score(world, noise, variant, seed, epochs, lam=0.1):
    loss_kind, tail, floor = VARIANTS[variant]
    rng = np.random.default_rng(seed + 1000)
    soft = world["soft"].copy()
    flipped = rng.random(len(soft)) < noise
    soft[flipped] = 1.0 - soft[flipped]
    torch.manual_seed(seed)
    model = Model(floor)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    x = torch.tensor(world["x"], dtype=torch.float32)
    a, b = (torch.as_tensor(side) for side in world["train"])
    labels = torch.tensor(soft, dtype=torch.float32)
    tau = torch.tensor(world["tau"])
    counts = class_counts(torch.as_tensor(world["anchor"]), 2)
    spikes = []
    for epoch in range(epochs):
        for batch in torch.randperm(len(a)).split(64):
            mean, variance = model(x[torch.cat([a[batch], b[batch]])])
            mean.retain_grad()
            mean_a, mean_b = mean.chunk(2)
            if loss_kind == "bt":
                loss = soft_bt_loss(mean_a, mean_b, labels[batch]).mean()
            else:
                var_a, var_b = variance.chunk(2)
                loss = soft_probit_loss(mean_a, var_a, mean_b, var_b, labels[batch], tail=tail).mean()
                side_counts = counts[torch.cat([a[batch], b[batch]])]
                nll = ordinal_anchor_nll(mean, variance.sqrt(), tau, side_counts).reshape(2, -1)
                loss = loss + lam * batch_anchor_loss(nll, torch.ones_like(nll, dtype=torch.bool))
            optimizer.zero_grad()
            loss.backward()
            if epoch == epochs - 1:  # the share of the batch's pull on μ that its hardest-pulling response exerts
                pull = mean.grad.abs()
                spikes.append((pull.max() / pull.sum()).item())
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
    with torch.no_grad():
        mean, variance = (t.double().numpy() for t in model(x))
    test_a, test_b = world["test"]
    gap = mean[test_a] - mean[test_b]
    if loss_kind == "bt":
        prob = 1.0 / (1.0 + np.exp(-gap))
    else:
        prob = norm.cdf(gap / np.sqrt(variance[test_a] + variance[test_b]))
    true = world["true_prob"]
    prob = np.clip(prob, 1e-12, 1 - 1e-12)
    held_out = slice(world["split"], None)
    return {
        "accuracy": preference_accuracy(prob, true),
        "soft_ce": float(np.mean(-(true * np.log(prob) + (1 - true) * np.log1p(-prob)))),
        "spike": float(np.mean(spikes)),
        "spike_max": float(np.max(spikes)),
        "sigma_spearman": (
            float("nan") if loss_kind == "bt" else spearmanr(variance[held_out], world["sigma"][held_out])[0]
        ),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--noise", type=float, nargs="+", default=[0.0, 0.05, 0.1, 0.2])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--annotators", type=int, default=1, help="labels per train pair (1: hard labels)")
    parser.add_argument("--log_sigma", type=float, default=-3.0, help="mean log σ of the world (median σ = exp)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    for key, value in machine_info().items():
        print(f"{key}: {value}")

    print("\nOne pair labelled 1 with Δμ = −50, both variances at the floor 1e-4:\n")
    print("| loss | per-pair loss | |dℓ/dΔμ| |\n|---|---|---|")
    cases = (("bt", "bt", None), ("gaussian", "probit", None), ("gaussian, tail 3", "probit", 3.0),
             ("gaussian, tail 5", "probit", 5.0))
    for name, loss_kind, tail in cases:
        loss, grad = single_pair(loss_kind, tail)
        print(f"| {name} | {loss:.3g} | {grad:.3g} |")

    worlds = [make_world(seed, args.annotators, args.log_sigma) for seed in range(args.seeds)]
    print(f"\nHeld-out pairs, mean of {args.seeds} seeds ({args.epochs} epochs, {TRAIN_PAIRS} train pairs):\n")
    print("| variant | flipped | accuracy | soft CE | σ Spearman | top response's share of the pull: mean, max |")
    print("|---|---|---|---|---|---|")
    for noise in args.noise:
        for variant in VARIANTS:
            runs = [train_and_score(world, noise, variant, seed, args.epochs) for seed, world in enumerate(worlds)]
            mean = {key: np.mean([run[key] for run in runs]) for key in runs[0]}
            sigma = "—" if np.isnan(mean["sigma_spearman"]) else f"{mean['sigma_spearman']:.3f}"
            spike_max = max(run["spike_max"] for run in runs)
            print(f"| {variant} | {noise:.0%} | {mean['accuracy']:.4f} | {mean['soft_ce']:.4f} | {sigma} | "
                  f"{mean['spike']:.3f}, {spike_max:.3f} |", flush=True)


if __name__ == "__main__":
    main()
