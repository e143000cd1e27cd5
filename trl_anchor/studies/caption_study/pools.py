"""The study's data: the seeded contest split, the evaluation pool of each held-out contest (the captions every model
scores, and the pairs drawn from them) and the training pairs."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ...data import caption_contest_sources as sources
from ...data._common import FilterReport, format_prompt
from ...data.caption_contest import CaptionContestData, pairwise_soft_labels, sample_pairs
from ...data.caption_contest_files import ContestTable
from ...metrics import vote_spread
from .config import CaptionStudyConfig


def split_contests(
    contests: Sequence[int],
    test_size: float,
    validation_size: float,
    seed: int,
    descriptions: Mapping[int, str] | None = None,
) -> dict[str, list[int]]:
    """Seeded train / validation / test contest ids, the same split that `load_caption_contest(test_size=...,
    validation_size=..., seed=...)` makes of these contests (contests sharing a description stay together)."""
    return sources.split_contests(contests, test_size, validation_size, seed, descriptions)


@dataclass
class CaptionPool:
    """The captions of one held-out contest that every model scores: `sample` (random captions with enough votes),
    `top` and `far` (the best captions and those ranked ~`far_rank`), and pairs of sample captions
    (`random_pairs`, `clear_pairs`: `(chosen, rejected)` pool indices, chosen = higher crowd mean; "clear" judged
    with the add-one standard errors of `caption_contest_files.separation_se`, `se` holds the raw ones)."""

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
    pool_mean, pool_se, separation_se = mean[keep], se[keep], table.separation_se[keep]
    random_pairs = _oriented_pairs(pool_mean, separation_se, table.counts[keep], local_sample, "random", config, rng)
    clear_pairs = _oriented_pairs(
        pool_mean, separation_se, table.counts[keep], local_sample, "clearly_separated", config, rng
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
