"""Tables, figure and README of the IRL-SFT study (`trl_anchor.studies.irl_sft_task`)."""

import json
from pathlib import Path

import numpy as np

from .irl_sft_task import ARM_LABELS

COMMAND = "trl-anchor irl-sft-study"
_ORDER = ("warm_start", "sft", "irft", "rft", "irft_weighted", "rft_weighted")
_LABELS = {"warm_start": "warm start (before the arms)", **ARM_LABELS}


def _mean_se(values) -> tuple[float, float, int]:
    values = np.asarray([v for v in values if v is not None], dtype=np.float64)
    if values.size == 0:
        return float("nan"), float("nan"), 0
    se = values.std(ddof=1) / np.sqrt(values.size) if values.size > 1 else float("nan")
    return float(values.mean()), float(se), int(values.size)


def summarize(runs: list[dict]) -> dict:
    """Per arm and noise level: accuracy mean ± SE over seeds, the paired difference to SFT, wall time, and for the
    IRL arms the last round's reward margin, KL to the start and (weighted arms) the weights' corruption AUC."""
    accuracy = {(r["arm"], r["noise"], r["seed"]): r["accuracy"] for r in runs}
    sft = {(noise, seed): value for (arm, noise, seed), value in accuracy.items() if arm == "sft"}
    summary: dict[str, dict] = {}
    for arm in _ORDER:
        for noise in sorted({r["noise"] for r in runs if r["arm"] == arm}):
            rows = [r for r in runs if r["arm"] == arm and r["noise"] == noise]
            mean, se, n = _mean_se([r["accuracy"] for r in rows])
            entry = {"accuracy": mean, "accuracy_se": se, "seeds": n,
                     "seconds": _mean_se([r["seconds"] for r in rows])[0]}
            paired = [r["accuracy"] - sft[(noise, r["seed"])] for r in rows if (noise, r["seed"]) in sft]
            if arm not in ("sft", "warm_start") and paired:
                entry["diff_vs_sft"], entry["diff_vs_sft_se"], _ = _mean_se(paired)
            if arm.endswith("_weighted"):
                base = arm.removesuffix("_weighted")
                gains = [r["accuracy"] - accuracy[(base, noise, r["seed"])] for r in rows
                         if (base, noise, r["seed"]) in accuracy]
                if gains:
                    entry["diff_vs_unweighted"], entry["diff_vs_unweighted_se"], _ = _mean_se(gains)
            if rows[0].get("rounds"):
                last = [r["rounds"][-1] for r in rows]
                first = [r["rounds"][0] for r in rows]
                entry["first_round_reward_margin_before"] = _mean_se([m.get("reward_margin_before") for m in first])[0]
                entry["first_round_reward_margin"] = _mean_se([m.get("reward_margin") for m in first])[0]
                entry["last_round_reward_margin"] = _mean_se([m.get("reward_margin") for m in last])[0]
                entry["kl_to_start"] = _mean_se([m.get("kl_to_start") for m in last])[0]
            if "weight_auc" in rows[0]:
                entry["weight_auc"] = _mean_se([auc for r in rows for auc in r["weight_auc"]])[0]
            summary.setdefault(arm, {})[f"{noise:g}"] = entry
    return summary


def _verdict(diff: float, se: float) -> str:
    if not np.isfinite(se) or se == 0:
        return "no spread estimate"
    if diff > 2 * se:
        return "better than SFT (> 2 paired SE)"
    if diff < -2 * se:
        return "worse than SFT (> 2 paired SE)"
    return "no clear difference (within 2 paired SE)"


def _accuracy_table(summary: dict, noise_levels: list[str]) -> list[str]:
    lines = ["| arm | " + " | ".join(f"{float(n):.0%} corrupted" for n in noise_levels) + " |",
             "|---|" + "---|" * len(noise_levels)]
    for arm in _ORDER:
        if arm not in summary:
            continue
        cells = []
        for noise in noise_levels:
            entry = summary[arm].get(noise)
            cells.append("—" if entry is None else f"{entry['accuracy']:.3f} ± {entry['accuracy_se']:.3f}")
        lines.append(f"| {_LABELS[arm]} | " + " | ".join(cells) + " |")
    return lines


def _difference_lines(summary: dict, noise_levels: list[str]) -> list[str]:
    lines = [
        "| arm | corrupted | accuracy − SFT (paired over seeds) | verdict | wall s / run |",
        "|---|---|---|---|---|",
    ]
    for arm in _ORDER[2:]:
        for noise in noise_levels:
            entry = summary.get(arm, {}).get(noise)
            if entry is None or "diff_vs_sft" not in entry:
                continue
            lines.append(
                f"| {_LABELS[arm]} | {float(noise):.0%} | {entry['diff_vs_sft']:+.3f} ± {entry['diff_vs_sft_se']:.3f}"
                f" | {_verdict(entry['diff_vs_sft'], entry['diff_vs_sft_se'])} | {entry['seconds']:.0f} |"
            )
    sft_seconds = np.mean([entry["seconds"] for entry in summary.get("sft", {}).values()] or [np.nan])
    lines.append(f"\nSFT continuation: {sft_seconds:.0f} s per run on average.")
    return lines


def _weighting_lines(summary: dict, noise_levels: list[str]) -> list[str]:
    lines = ["| arm | corrupted | accuracy − unweighted arm (paired over seeds) | verdict | weight AUC |",
             "|---|---|---|---|---|"]
    for arm in ("irft_weighted", "rft_weighted"):
        for noise in noise_levels:
            entry = summary.get(arm, {}).get(noise)
            if entry is None or "diff_vs_unweighted" not in entry:
                continue
            verdict = _verdict(entry["diff_vs_unweighted"], entry["diff_vs_unweighted_se"]).replace(
                "SFT", "the unweighted arm"
            )
            lines.append(
                f"| {_LABELS[arm]} | {float(noise):.0%} | {entry['diff_vs_unweighted']:+.3f} ± "
                f"{entry['diff_vs_unweighted_se']:.3f} | {verdict} | {entry.get('weight_auc', float('nan')):.3f} |"
            )
    return lines


def _finding_lines(summary: dict, noise_levels: list[str]) -> list[str]:
    """One line per noise level: the arms ranked by mean accuracy (warm start excluded)."""
    lines = []
    for noise in noise_levels:
        arms = [arm for arm, entry in summary.items() if arm != "warm_start" and noise in entry]
        ranked = sorted(((summary[arm][noise]["accuracy"], arm) for arm in arms), reverse=True)
        order = ", ".join(f"{_LABELS[arm]} {value:.3f}" for value, arm in ranked)
        lines.append(f"- {float(noise):.0%} corrupted — mean exact match, best first: {order}.")
    return lines


def _diagnostic_lines(summary: dict, noise_levels: list[str]) -> list[str]:
    lines = ["| arm | corrupted | reward margin round 1 (before → after) | margin last round | KL(π_T ‖ π_0) "
             "| weight AUC |", "|---|---|---|---|---|---|"]
    for arm in _ORDER[2:]:
        for noise in noise_levels:
            entry = summary.get(arm, {}).get(noise)
            if entry is None or "first_round_reward_margin" not in entry:
                continue
            auc = entry.get("weight_auc")
            lines.append(
                f"| {_LABELS[arm]} | {float(noise):.0%} | {entry['first_round_reward_margin_before']:+.3f} → "
                f"{entry['first_round_reward_margin']:+.3f} | {entry['last_round_reward_margin']:+.3f} | "
                f"{entry['kl_to_start']:.3f} | {'—' if auc is None or np.isnan(auc) else f'{auc:.3f}'} |"
            )
    return lines


def plot_accuracy(summary: dict, noise_levels: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for arm in _ORDER:
        points = [(float(n), summary[arm][n]) for n in noise_levels if n in summary.get(arm, {})]
        if not points:
            continue
        x = np.array([p[0] for p in points]) * 100
        y = np.array([p[1]["accuracy"] for p in points])
        err = np.nan_to_num(np.array([p[1]["accuracy_se"] for p in points]))
        style = "--" if arm == "warm_start" else "-"
        ax.errorbar(x, y, yerr=err, marker="o", linestyle=style, capsize=3, label=_LABELS[arm])
    ax.set_xlabel("corrupted demonstrations (%)")
    ax.set_ylabel("exact-match accuracy (held-out words)")
    ax.set_title("Sorting task: SFT vs IRFT vs RFT at equal policy updates")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(results: dict, report_dir: Path) -> None:
    """Write `results.json`, `accuracy.png` and `README.md` to `report_dir`."""
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "results.json").write_text(json.dumps(results, indent=1, default=float))
    summary, config, load = results["summary"], results["config"], results["load_average"]
    noise_levels = [f"{n:g}" for n in config["noise_levels"]]
    plot_accuracy(summary, noise_levels, report_dir / "accuracy.png")
    policy_updates = config["num_rounds"] * config["steps_per_round"]
    lines = [
        "# IRL-SFT study: SFT vs IRFT vs RFT on noisy demonstrations",
        "",
        f"Generated by `{COMMAND}` (this folder; {results['wall_seconds'] / 60:.1f} min wall time on "
        f"{load['cpus']} CPU cores shared with other jobs: load average {load['start'][1]:.1f} at the start, "
        f"{load['end'][1]:.1f} at the end). Task: sort a word's letters (`dbca>` → `abcd`), exact answers; a tiny "
        "GPT-2 (character tokenizer, pad = EOS) is warm-started with "
        f"{config['warm_start_steps']} SFT steps on {config['num_train']} demonstrations, then every arm makes "
        f"{policy_updates} policy updates of {config['batch_size']} examples ({config['num_rounds']} rounds × "
        f"{config['steps_per_round']} for IRFT/RFT, which also sample {config['num_samples_per_prompt']} completions "
        f"per prompt and round; RFT also trains a Gaussian reward model for {config['reward_steps_per_round']} steps "
        "per round). Accuracy: greedy exact match on "
        f"{config['num_test']} held-out words, mean ± SE over seeds {config['seeds']}.",
        "",
        "![accuracy](accuracy.png)",
        "",
        "## Exact-match accuracy",
        "",
        *_accuracy_table(summary, noise_levels),
        "",
        "## Ranking",
        "",
        *_finding_lines(summary, noise_levels),
        "",
        "Differences smaller than about two paired standard errors (next table) are not resolved by "
        f"{len(config['seeds'])} seeds.",
        "",
        "## Paired differences to SFT (same seed, same warm start)",
        "",
        *_difference_lines(summary, noise_levels),
        "",
        "## Variance-aware demonstration weighting",
        "",
        "Each weighted arm against the same arm without weighting (same seed, same warm start; RFT and RFT + σ "
        "train the same round-1 reward model, IRFT + σ trains one that IRFT does not need). Weight AUC as defined "
        "below.",
        "",
        *_weighting_lines(summary, noise_levels),
        "",
        "## Reward learning diagnostics",
        "",
        "Reward margin = mean reward of the demonstration minus that of the policy's sample on the round's pairs "
        "(IRFT: the implicit reward β·Δlog-ratio of the new policy to the round's reference, 0 before the update; "
        "RFT: the Gaussian reward model's μ). Weight AUC: how well 1 − P(demo ≻ samples) ranks corrupted "
        "demonstrations above clean ones (0.5 = chance), averaged over rounds and seeds.",
        "",
        *_diagnostic_lines(summary, noise_levels),
        "",
        "## Settings",
        "",
        "```json",
        json.dumps(config, indent=1),
        "```",
    ]
    (report_dir / "README.md").write_text("\n".join(lines) + "\n")
