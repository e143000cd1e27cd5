"""Best-of-N on real captions, without generation: does the reward model pick captions the crowd finds funnier?

For contests of the New Yorker caption-contest crowd votes held out from the reward model's training (split by
contest), pools of N real captions are drawn per contest (seeded). Each policy picks from a pool by the reward model's
(μ, σ) — `mean`, `quantile:q`, `lcb:κ`, ... (`trl_anchor.rewards.transforms` specs) — and is judged by the crowd: the
mean vote (1 = unfunny … 3 = funny) and P(funny) = funny votes / all votes of the chosen caption. `random` (a uniform
pick, the pool average) and `oracle` (the best crowd caption of the pool for that metric) bracket the policies, and the
exact best-of-n estimator of `trl_anchor.pipelines.best_of_n` gives whole curves for n = 1..N from the same pools.
"""

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from datasets import Dataset
from transformers import PreTrainedModel, PreTrainedTokenizerBase
from transformers.utils import logging

from ..data._common import FilterReport, split_by_group
from ..data.caption_contest import CaptionContestData
from ..data.caption_contest_files import contest_from_filename
from ..models.loading import load_reward_model
from ..models.modeling_gaussian import gaussian_settings, is_gaussian_config
from ..pipelines.best_of_n import (
    ANCHOR_POLICIES,
    DEFAULT_POLICIES,
    BestOfNReport,
    best_of_n_report,
    check_policies,
    plot_best_of_n,
    policy_scores,
)
from ..rewards.scoring import score_responses

logger = logging.get_logger(__name__)

METRICS = {"mean_vote": "crowd mean vote (1–3)", "p_funny": "P(funny) = funny / votes"}
GOLD_COLUMNS = {"mean_vote": "mean", "p_funny": "p_funny"}  # metric -> column of `load_benchmark_captions`


# ============================================================================================ data
def held_out_contests(
    data_dir: str | os.PathLike, test_size: float = 0.1, validation_size: float = 0.0, seed: int = 0
) -> list[int]:
    """The contests of the `test` split that `load_caption_contest(data_dir, test_size=..., validation_size=...,
    seed=...)` makes (its defaults are these): the split depends only on the set of contests and the seed, so it is
    recomputed from the file names without reading the captions.

    Example:

    ```python
    >>> held_out_contests("../shared/data/caption_contest", test_size=0.1, seed=0)  # doctest: +SKIP
    [521, 539, ...]
    ```
    """
    summaries = Path(data_dir) / "summaries"
    files = sorted(summaries.glob("*.csv"))
    if not files:
        raise FileNotFoundError(f"No summary CSV files in {summaries}.")
    contests = [contest_from_filename(path) for path in files]
    unnamed = [path.name for path, contest in zip(files, contests, strict=True) if contest is None]
    if unnamed:
        raise ValueError(
            f"Cannot tell the contest of {unnamed[:5]} from the file name; pass the held-out contests explicitly."
        )
    ids = Dataset.from_dict({"contest": sorted(set(contests))})
    splits = split_by_group(ids, "contest", test_size=test_size, validation_size=validation_size, seed=seed)
    return sorted(splits["test"]["contest"])


def load_benchmark_captions(
    data_dir: str | os.PathLike, contests: Sequence[int], min_votes: int = 2, conversational: bool = True
) -> Dataset:
    """One row per caption of `contests` (columns `contest`, `prompt`, `completion`, `anchor_counts`, `votes`,
    `mean`, ...) from the caption-contest loader, plus `p_funny`."""
    data = CaptionContestData.from_dir(data_dir, contests=contests, min_votes=min_votes)
    for report in data.reports:
        report.log()
    missing = sorted(set(int(c) for c in contests) - set(data.tables))
    if missing:
        raise ValueError(f"No captions found for contests {missing} in {data_dir}.")
    captions = data.captions(conversational=conversational)
    counts = np.asarray(captions["anchor_counts"], dtype=np.float64)
    return captions.add_column("p_funny", (counts[:, 2] / counts.sum(1)).tolist())


@dataclass
class CaptionPools:
    """Pools of caption row indices, shape `(num_pools, pool_size)`, with each pool's contest and number."""

    rows: np.ndarray
    contests: list[int]
    pool_numbers: list[int]
    report: FilterReport


def sample_caption_pools(captions: Dataset, pool_size: int, pools_per_contest: int, seed: int = 0) -> CaptionPools:
    """Draw `pools_per_contest` pools of `pool_size` distinct captions per contest (seeded per contest and pool, so a
    contest's pools do not depend on which other contests are in the benchmark). Contests with fewer captions than
    `pool_size` are left out and counted."""
    if pool_size < 2 or pools_per_contest < 1:
        raise ValueError(f"Need pool_size ≥ 2 and pools_per_contest ≥ 1, got {pool_size} and {pools_per_contest}.")
    contest_of_row = np.asarray(captions["contest"])
    unique = sorted(set(contest_of_row.tolist()))
    report = FilterReport("caption benchmark contests", total=len(unique))
    rows, contests, numbers = [], [], []
    for contest in unique:
        members = np.flatnonzero(contest_of_row == contest)
        if len(members) < pool_size:
            report.drop("fewer_captions_than_pool_size", f"contest {contest} ({len(members)} captions)")
            continue
        for number in range(pools_per_contest):
            rng = np.random.default_rng([seed, contest, number])
            rows.append(rng.choice(members, size=pool_size, replace=False))
            contests.append(contest)
            numbers.append(number)
    report.kept = len(unique) - report.num_dropped
    report.log()
    if not rows:
        raise ValueError(f"No contest has at least pool_size={pool_size} captions; lower `pool_size`.")
    return CaptionPools(np.stack(rows), contests, numbers, report)


# ============================================================================================ benchmark
@dataclass
class CaptionBenchmarkResult:
    """Best-of-n curves per policy for the crowd mean vote (`mean_vote`) and P(funny) (`p_funny`)."""

    report: BestOfNReport
    contests: list[int]
    settings: dict[str, Any] = field(default_factory=dict)

    def at_pool_size(self) -> dict[str, dict[str, float]]:
        """metric → policy → mean value of the caption each policy picks from the full pool (n = N)."""
        return {
            metric: {policy: curve.mean[-1] for policy, curve in by_policy.items()}
            for metric, by_policy in self.report.curves.items()
        }

    def to_markdown(self) -> str:
        report = self.report
        lines = [
            f"# Caption benchmark: best-of-{report.pool_size} on {report.num_pools} pools from "
            f"{len(self.contests)} held-out contests",
            "",
            f"Held-out contests: {', '.join(map(str, self.contests))}.",
            "",
            f"### Picking from the full pool (n = {report.pool_size})",
            "",
            "| policy | mean vote | P(funny) | Δ mean vote vs random (± paired SE) | Δ P(funny) vs random | "
            "share of oracle gain (mean vote) |",
            "|---|---|---|---|---|---|",
        ]
        final = self.at_pool_size()
        vote, funny = final["mean_vote"], final["p_funny"]
        delta = {metric: self.report.vs_random[metric] for metric in METRICS}
        gain = vote["oracle"] - vote["random"]
        for policy in vote:
            share = (vote[policy] - vote["random"]) / gain if gain > 0 else float("nan")
            deltas = [f"{d[policy].mean[-1]:+.4f} ± {d[policy].se[-1]:.4f}" for d in delta.values()]
            cells = [f"{vote[policy]:.4f}", f"{funny[policy]:.4f}", *deltas, f"{share:.1%}"]
            lines.append(f"| {policy} | " + " | ".join(cells) + " |")
        lines.append("")
        for metric, label in METRICS.items():
            lines.append(report.to_markdown(metric, f"{label} of the selected caption vs n"))
        return "\n".join(lines)


def run_caption_benchmark(
    reward_model: "PreTrainedModel | str",
    data_dir: str | os.PathLike,
    output_dir: str | os.PathLike | None = None,
    tokenizer: PreTrainedTokenizerBase | None = None,
    contests: Sequence[int] | None = None,
    test_size: float = 0.1,
    split_seed: int = 0,
    pool_size: int = 32,
    pools_per_contest: int = 4,
    policies: Sequence[str] = DEFAULT_POLICIES,
    seed: int = 0,
    min_votes: int = 2,
    conversational: bool | None = None,
    batch_size: int = 32,
    max_length: int | None = None,
    plot: bool = True,
) -> CaptionBenchmarkResult:
    """Run the caption benchmark and, with `output_dir`, write `caption_benchmark.{json,md,png}` and
    `caption_pools.jsonl` (every pool with its captions, μ, σ and crowd scores).

    Args:
        reward_model: a (Gaussian) reward model or its path; `tokenizer` is its own tokenizer (loaded with a path).
        data_dir: the caption-contest folder (`summaries/`, `descriptions.csv`).
        contests: held-out contests to use; by default the `test` split of `held_out_contests(data_dir, test_size,
            seed=split_seed)` — pass the split settings the reward model was trained with.
        pool_size, pools_per_contest: N captions per pool and pools drawn per contest (seeded with `seed`).
        policies: selection policies (`RewardTransform` specs, `random`); `oracle` is always added, and for an
            anchored model `expected_class` (expected vote − 1) and `p_top` (P(funny)).
        min_votes: leave out captions with fewer crowd votes (their gold is noise).
        conversational: give the prompt (cartoon description) and caption as chat messages (through the reward
            model's chat template) or as text; default: chat when the tokenizer has a template.

    Example:

    ```python
    >>> from trl_anchor.studies.caption_benchmark import run_caption_benchmark
    >>> result = run_caption_benchmark("outputs/quickstart/gaussian_anchored", "../shared/data/caption_contest",
    ...                                output_dir="outputs/caption_bon", pool_size=32)  # doctest: +SKIP
    >>> sorted(result.at_pool_size()["mean_vote"])  # doctest: +SKIP
    ['lcb:1.0', 'mean', 'oracle', 'quantile:0.1', 'random']
    ```
    """
    if isinstance(reward_model, str):
        reward_model, tokenizer = load_reward_model(reward_model)
    elif tokenizer is None:
        raise ValueError("Pass the reward model's own `tokenizer` along with a model object.")
    gaussian = is_gaussian_config(reward_model.config)
    if gaussian and gaussian_settings(reward_model.config).get("anchor_thresholds") is not None:
        policies = [*policies, *(p for p in ANCHOR_POLICIES if p not in policies)]  # expected vote, P(funny)
    policies = [p for p in check_policies(policies, gaussian=gaussian) if p != "oracle"]
    if contests is None:
        contests = held_out_contests(data_dir, test_size=test_size, seed=split_seed)
    contests = sorted(int(c) for c in contests)
    if conversational is None:
        conversational = bool(tokenizer.chat_template)
    captions = load_benchmark_captions(data_dir, contests, min_votes=min_votes, conversational=conversational)
    pools = sample_caption_pools(captions, pool_size, pools_per_contest, seed)
    mean, std = _score_pools(reward_model, tokenizer, captions, pools.rows, batch_size, max_length)
    gold = {metric: np.asarray(captions[GOLD_COLUMNS[metric]], np.float64)[pools.rows] for metric in METRICS}
    selection = {p: policy_scores(p, mean, std, reward_config=reward_model.config, seed=seed) for p in policies}
    report = _report_per_metric(selection, gold, {"num_contests": len(contests), "seed": seed})
    settings = {
        "contests": contests, "pool_size": pool_size, "pools_per_contest": pools_per_contest, "seed": seed,
        "min_votes": min_votes, "conversational": conversational, "policies": policies,
        "contests_dropped": pools.report.as_dict(),
    }
    result = CaptionBenchmarkResult(report, sorted(set(pools.contests)), settings)
    if output_dir is not None:
        _write_outputs(result, captions, pools, mean, std, Path(output_dir), plot)
    return result


def _score_pools(model, tokenizer, captions: Dataset, rows: np.ndarray, batch_size: int, max_length: int | None):
    """μ and σ of every pooled caption, each distinct caption scored once."""
    unique, inverse = np.unique(rows, return_inverse=True)
    subset = captions.select(unique.tolist())
    completions, prompts = list(subset["completion"]), list(subset["prompt"])
    scores = score_responses(model, tokenizer, completions, prompts, batch_size, max_length, show_progress=True)
    mean = scores.mean[inverse].reshape(rows.shape)
    std = None if scores.std is None else scores.std[inverse].reshape(rows.shape)
    return mean, std


def _report_per_metric(selection: dict[str, np.ndarray], gold: dict[str, np.ndarray], metadata) -> BestOfNReport:
    # The oracle of each metric is the pool's best caption by that metric.
    reports = [
        best_of_n_report({**selection, "oracle": values}, {metric: values}, metadata)
        for metric, values in gold.items()
    ]
    merged = reports[0]
    for other in reports[1:]:
        merged.curves.update(other.curves)
        merged.vs_random.update(other.vs_random)
    return merged


def _write_outputs(result, captions, pools, mean, std, output_dir: Path, plot: bool) -> None:
    output_dir.mkdir(parents=True, exist_ok=True)
    summary = {**result.report.to_dict(), "settings": result.settings, "at_pool_size": result.at_pool_size()}
    (output_dir / "caption_benchmark.json").write_text(json.dumps(summary, indent=2) + "\n")
    (output_dir / "caption_benchmark.md").write_text(result.to_markdown())
    texts = np.asarray([_text(c) for c in captions["completion"]], dtype=object)
    gold = {metric: np.asarray(captions[column], np.float64) for metric, column in GOLD_COLUMNS.items()}
    with (output_dir / "caption_pools.jsonl").open("w", encoding="utf-8") as handle:
        for k, rows in enumerate(pools.rows):
            record = {
                "contest": pools.contests[k],
                "pool": pools.pool_numbers[k],
                "captions": texts[rows].tolist(),
                "mu": mean[k].tolist(),
                "sigma": None if std is None else std[k].tolist(),
                **{metric: values[rows].tolist() for metric, values in gold.items()},
            }
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    if plot:
        plot_best_of_n(
            result.report, output_dir / "caption_benchmark.png", list(METRICS.items()),
            title=f"Caption benchmark: {result.report.num_pools} pools of N = {result.report.pool_size} "
            f"from {len(result.contests)} held-out contests",
            xlabel="n (captions per pool)",
        )
    logger.info(f"Caption benchmark written to {output_dir}.")


def _text(completion) -> str:
    return completion if isinstance(completion, str) else completion[-1]["content"]

