"""Running the identifiability simulation: every arm fitted on every n and seed, in the original world and in the
equivalent worlds, summarised into `results` (and written as a report by `trl_anchor.studies.simulation.report`)."""

import time
from dataclasses import asdict
from typing import Any

import numpy as np
import torch

from .config import ARMS, SimulationConfig, regenerating_command
from .fitting import METRICS, fit_arm, fit_errors
from .report import write_report
from .world import SimulationWorld, simulate_pairs

TEST_SEED = 12345


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
