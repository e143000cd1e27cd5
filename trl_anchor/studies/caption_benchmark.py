"""Best-of-N on real captions, without generation: does the reward model pick captions the crowd finds funnier?

For contests of the New Yorker caption-contest crowd votes held out from the reward model's training (split by
contest), pools of N real captions are drawn per contest (seeded). Each policy picks from a pool by the reward model's
(μ, σ) — `mean`, `quantile:q`, `lcb:κ`, ... (`trl_anchor.rewards.transforms` specs) — and is judged by the crowd: the
mean vote (1 = unfunny … 3 = funny) and P(funny) = funny votes / all votes of the chosen caption. `random` (a uniform
pick, the pool average) and `oracle` (the best crowd caption of the pool for that metric) bracket the policies, and the
exact best-of-n estimator of `trl_anchor.pipelines.best_of_n` gives whole curves for n = 1..N from the same pools.

Pools of one contest share captions and a cartoon, so they are not independent: every number is averaged over the
pools of a contest first, and standard errors are over contests. For a Gaussian model the benchmark also reports, per
contest, the rank correlation of σ with the crowd's vote spread and its partial correlation given the crowd mean
(`trl_anchor.metrics.partial_spearman`): the spread is almost a function of the mean, so only the partial figure says
whether σ carries disagreement beyond μ. A model that records its training contests (`trl_anchor.data.provenance`)
is refused on them.
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

from ..data._common import FilterReport
from ..data.caption_contest import CaptionContestData
from ..data.caption_contest_files import DEFAULT_MIN_VOTES
from ..data.caption_contest_sources import contest_ids, read_descriptions, split_contests
from ..data.provenance import check_not_trained_on
from ..metrics import partial_spearman, spearman, vote_spread
from ..models.configuration_gaussian import gaussian_settings, is_gaussian_config
from ..models.loading import load_reward_model
from ..pipelines.best_of_n import (
    ANCHOR_POLICIES,
    DEFAULT_POLICIES,
    BestOfNCurve,
    BestOfNReport,
    best_of_n_curve,
    check_policies,
    plot_best_of_n,
    policy_scores,
)
from ..rewards.scoring import RewardScores, score_responses

logger = logging.get_logger(__name__)

METRICS = {"mean_vote": "crowd mean vote (1–3)", "p_funny": "P(funny) = funny / votes"}
GOLD_COLUMNS = {"mean_vote": "mean", "p_funny": "p_funny"}  # metric -> column of `load_benchmark_captions`
SIGMA_METRICS = {
    "sigma_spearman_spread": "Spearman ρ(σ, vote spread)",
    "sigma_partial_spread": "partial Spearman ρ(σ, vote spread | crowd mean)",
}


# ============================================================================================ data
def held_out_contests(
    data_dir: str | os.PathLike, test_size: float = 0.1, validation_size: float = 0.0, seed: int = 0
) -> list[int]:
    """The contests of the `test` split that `load_caption_contest(data_dir, test_size=..., validation_size=...,
    seed=...)` makes (its defaults are these): the split depends only on the contests with a summary file, the
    descriptions (contests sharing one stay together) and the seed, so it is recomputed without reading the captions.
    It may include contests the loader then leaves out (e.g. corrupted votes); the benchmark reports them.

    Example:

    ```python
    >>> held_out_contests("../shared/data/caption_contest", test_size=0.1, seed=0)  # doctest: +SKIP
    [521, 539, ...]
    ```
    """
    data_dir = Path(data_dir)
    files = sorted((data_dir / "summaries").glob("*.csv"))
    if not files:
        raise FileNotFoundError(f"No summary CSV files in {data_dir / 'summaries'}.")
    try:
        contests = contest_ids(files)
    except ValueError as error:
        raise ValueError(f"{error} Pass the held-out contests explicitly.") from None
    path = data_dir / "descriptions.csv"
    descriptions = read_descriptions(path) if path.is_file() else {}
    return split_contests(contests, test_size, validation_size, seed, descriptions)["test"]


def _benchmark_data(data_dir, contests: Sequence[int], min_votes: int) -> CaptionContestData:
    data = CaptionContestData.from_dir(data_dir, contests=contests, min_votes=min_votes)
    for report in data.reports:
        report.log()
    missing = sorted(set(int(c) for c in contests) - set(data.sources.contests_found))
    if missing:
        raise ValueError(f"No summary file for contests {missing} in {data_dir}.")
    for contest, why in data.sources.excluded.items():
        logger.warning(f"Caption benchmark: contest {contest} left out ({why}).")
    if not data.tables:
        raise ValueError(f"None of the contests {sorted(contests)} has usable captions: {data.sources.excluded}.")
    return data


def _caption_rows(data: CaptionContestData, conversational: bool) -> Dataset:
    captions = data.captions(conversational=conversational)
    counts = np.asarray(captions["anchor_counts"], dtype=np.float64)
    return captions.add_column("p_funny", (counts[:, 2] / counts.sum(1)).tolist())


def load_benchmark_captions(
    data_dir: str | os.PathLike,
    contests: Sequence[int],
    min_votes: int = DEFAULT_MIN_VOTES,
    conversational: bool = True,
) -> Dataset:
    """One row per caption of `contests` (columns `contest`, `prompt`, `completion`, `anchor_counts`, `votes`,
    `mean`, ...) from the caption-contest loader, plus `p_funny`. Contests the loader leaves out (corrupted votes, no
    caption with `min_votes` votes, ...) are warned about; a contest without a summary file is an error."""
    return _caption_rows(_benchmark_data(data_dir, contests, min_votes), conversational)


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
    """Best-of-n curves per policy for the crowd mean vote (`mean_vote`) and P(funny) (`p_funny`), averaged per
    contest with standard errors over contests, and (Gaussian models) σ against the crowd's vote spread per contest."""

    report: BestOfNReport
    contests: list[int]
    settings: dict[str, Any] = field(default_factory=dict)
    sigma: dict[str, dict[str, Any]] = field(default_factory=dict)

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
            f"Held-out contests: {', '.join(map(str, self.contests))}. Pools of one contest share captions, so every"
            f" value is averaged over the pools of each contest first; ± is the standard error over the"
            f" {len(self.contests)} contests.",
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
        if self.sigma:
            lines += ["### σ and the crowd's disagreement (per contest, pooled captions)", ""]
            lines += ["| measure | mean ± SE over contests | contests |", "|---|---|---|"]
            for name, label in SIGMA_METRICS.items():
                stats = self.sigma[name]
                value = "—" if stats["mean"] is None else f"{stats['mean']:+.3f} ± {stats['se'] or 0.0:.3f}"
                lines.append(f"| {label} | {value} | {stats['n']} |")
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
    validation_size: float = 0.0,
    split_seed: int = 0,
    pool_size: int = 32,
    pools_per_contest: int = 4,
    policies: Sequence[str] = DEFAULT_POLICIES,
    seed: int = 0,
    min_votes: int = DEFAULT_MIN_VOTES,
    conversational: bool | None = None,
    batch_size: int = 32,
    max_length: int | None = None,
    plot: bool = True,
    allow_training_data: bool = False,
) -> CaptionBenchmarkResult:
    """Run the caption benchmark and, with `output_dir`, write `caption_benchmark.{json,md,png}` and
    `caption_pools.jsonl` (every pool with its captions, μ, σ and crowd scores).

    Args:
        reward_model: a (Gaussian) reward model or its path; `tokenizer` is its own tokenizer (loaded with a path).
        data_dir: the caption-contest folder (`summaries/`, `descriptions.csv`).
        contests: held-out contests to use; by default the `test` split of `held_out_contests(data_dir, test_size,
            validation_size, seed=split_seed)` — pass the split settings the reward model was trained with.
        pool_size, pools_per_contest: N captions per pool and pools drawn per contest (seeded with `seed`).
        policies: selection policies (`RewardTransform` specs, `random`); `oracle` is always added, and for an
            anchored model `expected_class` (expected vote − 1) and `p_top` (P(funny)).
        min_votes: leave out captions with fewer crowd votes (their gold is noise).
        conversational: give the prompt (cartoon description) and caption as chat messages (through the reward
            model's chat template) or as text; default: chat when the tokenizer has a template.
        allow_training_data: score contests the model records as training contests anyway (refused by default).

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
        contests = held_out_contests(data_dir, test_size=test_size, validation_size=validation_size, seed=split_seed)
    contests = sorted(int(c) for c in contests)
    notes = [] if allow_training_data else check_not_trained_on(reward_model.config, contests, what="the benchmark")
    if conversational is None:
        conversational = bool(tokenizer.chat_template)
    data = _benchmark_data(data_dir, contests, min_votes)
    captions = _caption_rows(data, conversational)
    pools = sample_caption_pools(captions, pool_size, pools_per_contest, seed)
    unique, scores = _score_captions(reward_model, tokenizer, captions, pools.rows, batch_size, max_length)
    inverse = np.searchsorted(unique, pools.rows)
    mean = scores.mean[inverse]
    std = None if scores.std is None else scores.std[inverse]
    gold = {metric: np.asarray(captions[GOLD_COLUMNS[metric]], np.float64)[pools.rows] for metric in METRICS}
    selection = {p: policy_scores(p, mean, std, reward_config=reward_model.config, seed=seed) for p in policies}
    metadata = {"num_contests": len(set(pools.contests)), "seed": seed}
    report = _report_by_contest(selection, gold, pools.contests, metadata)
    settings = {
        "contests": contests, "pool_size": pool_size, "pools_per_contest": pools_per_contest, "seed": seed,
        "min_votes": min_votes, "conversational": conversational, "policies": policies,
        "contests_dropped": pools.report.as_dict(),
        "contests_excluded": {str(c): why for c, why in data.sources.excluded.items()},
        "standard_errors": "over contests (each contest's pools averaged first)", "notes": notes,
    }
    sigma = {} if scores.std is None else _sigma_by_contest(captions, unique, scores)
    result = CaptionBenchmarkResult(report, sorted(set(pools.contests)), settings, sigma)
    if output_dir is not None:
        _write_outputs(result, captions, pools, mean, std, Path(output_dir), plot)
    return result


def _score_captions(model, tokenizer, captions: Dataset, rows: np.ndarray, batch_size, max_length):
    """(sorted distinct caption rows of the pools, their scores): each distinct caption is scored once."""
    unique = np.unique(rows)
    subset = captions.select(unique.tolist())
    completions, prompts = list(subset["completion"]), list(subset["prompt"])
    scores = score_responses(model, tokenizer, completions, prompts, batch_size, max_length, show_progress=True)
    return unique, scores


def _report_by_contest(selection, gold, pool_contests, metadata) -> BestOfNReport:
    """Best-of-n curves per metric and policy: each contest's pools averaged, then mean and standard error over
    contests (the oracle of each metric is the pool's best caption by that metric)."""
    contest_of_pool = np.asarray(pool_contests)
    contests = sorted(set(pool_contests))
    num_pools, pool_size = next(iter(gold.values())).shape
    ns = list(range(1, pool_size + 1))
    curves, vs_random = {}, {}
    for metric, values in gold.items():
        per_pool = {p: best_of_n_curve(s, values, ns) for p, s in {**selection, "oracle": values}.items()}
        per_contest = {p: np.stack([c[contest_of_pool == k].mean(0) for k in contests]) for p, c in per_pool.items()}
        curves[metric] = {p: BestOfNCurve.from_pools(c) for p, c in per_contest.items()}
        if "random" in per_contest:
            vs_random[metric] = {
                p: BestOfNCurve.from_pools(c - per_contest["random"]) for p, c in per_contest.items()
            }
    return BestOfNReport(ns, num_pools, pool_size, curves, vs_random, {**metadata, "se_over": "contests"})


def _sigma_by_contest(captions: Dataset, rows: np.ndarray, scores: RewardScores) -> dict[str, dict[str, Any]]:
    """Per contest, over its pooled captions: Spearman of σ with the vote spread, and the partial rank correlation
    given the crowd mean; mean and standard error over contests (contests with fewer than 4 captions left out)."""
    contest = np.asarray(captions["contest"])[rows]
    counts = np.asarray(captions["anchor_counts"], dtype=np.float64)[rows]
    crowd, spread = np.asarray(captions["mean"], dtype=np.float64)[rows], vote_spread(counts)
    values: dict[str, dict[int, float]] = {name: {} for name in SIGMA_METRICS}
    for k in sorted(set(contest.tolist())):
        members = contest == k
        if members.sum() < 4:
            continue
        sigma = scores.std[members]
        values["sigma_spearman_spread"][k] = spearman(sigma, spread[members])
        values["sigma_partial_spread"][k] = partial_spearman(sigma, spread[members], crowd[members])
    return {name: _over_contests(per_contest) for name, per_contest in values.items()}


def _over_contests(per_contest: dict[int, float]) -> dict[str, Any]:
    finite = np.array([v for v in per_contest.values() if np.isfinite(v)])
    return {
        "mean": float(finite.mean()) if finite.size else None,
        "se": float(finite.std(ddof=1) / np.sqrt(finite.size)) if finite.size > 1 else None,
        "n": int(finite.size),
        "per_contest": {str(k): (float(v) if np.isfinite(v) else None) for k, v in per_contest.items()},
    }


def _write_outputs(result, captions, pools, mean, std, output_dir: Path, plot: bool) -> None:
    output_dir.mkdir(parents=True, exist_ok=True)
    summary = {
        **result.report.to_dict(),
        "settings": result.settings,
        "at_pool_size": result.at_pool_size(),
        "sigma": result.sigma,
    }
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

