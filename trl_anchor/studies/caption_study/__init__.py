"""Real-vote study: do Gaussian reward models with crowd-vote anchors model held-out caption contests better than
Bradley–Terry and than Gaussian models without anchors, and does their σ mean disagreement?

Data: the New Yorker caption-contest crowd votes (NEXT / nextml, CC-BY 4.0), where every caption was rated unfunny /
somewhat funny / funny by many people. Contests are split into train / validation / test (seeded, a contest lives in
one split). The packaged MiniLM-L6 is fine-tuned on within-contest caption pairs of the train contests in four arms:

- **TRL RewardTrainer**: TRL's own `RewardTrainer` on hard labels (chosen = the caption with the higher crowd mean),
  the peer every TRL user already has;
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
- `vote_nll`: per-vote cross-entropy of the vote counts under the ordinal model `ordinal_log_probs(μ, σ, τ)` (with
  `σ² + s²` for a model trained with contest groups, `anchor_group_column`: a test contest is a new group), and
  `vote_nll_within_gain`: how much lower it is than predicting every caption of the contest the model's own average
  vote distribution (what the caption-to-caption differences add, apart from the guessed base rate of the contest);
- `kendall_tau_expected_vote`: Kendall τ-b of the expected vote `Σ_j j·π_j(μ, σ, τ)` (uses σ) against the crowd mean;
- `bon_gain_<rule>`: caption best-of-N with the `BON_RULES` selections (μ, the 10% quantile, the expected vote), the
  pick's crowd mean above a random caption's as a share of the best caption's (0 random, 1 oracle).
Every headline arm is trained once per `training_seeds` entry; its per-contest metrics are averaged over the seeds.
The data themselves bound these metrics: `ceiling` fits oracles to the held-out votes (each contest's own vote
distribution; each caption's μ with one σ per contest; each caption's μ and σ) and tests with likelihood ratios whether
captions differ in μ and, beyond it, in σ.

Modules: `config` (settings and runs), `pools` (split, evaluation pools, training pairs), `statistics` (per-contest
metrics and their aggregation; the rank statistics live in `trl_anchor.metrics`), `ceiling` (oracles of the held-out
votes), `run` (training, scoring, caching, λ selection), `report`, `findings` and `plots` (the report).

Example:

```python
>>> from trl_anchor.studies.caption_study import CaptionStudyConfig, run_caption_study
>>> config = CaptionStudyConfig(data_dir="../shared/data/caption_contest", report_dir="reports/caption_study")
>>> results = run_caption_study(config)  # doctest: +SKIP
>>> results["summary"]["gaussian+anchors"]["kendall_tau"]["mean"]  # doctest: +SKIP
```
"""

from ...metrics import discrimination_auc, kendall_tau_b, partial_spearman
from .config import (
    ANCHOR_COLUMNS,
    ARM_LABELS,
    ARMS,
    BASELINE_RUNS,
    DIGITS,
    GAUSSIAN_ONLY,
    METRICS,
    CaptionStudyConfig,
    StudyRun,
    ablation_runs,
    anchored_run,
    regenerating_command,
)
from .plots import ABLATION_FIGURE, ARM_FIGURE, MU_FIGURE, SIGMA_FIGURE, plot_ablations, plot_arms, plot_mu, plot_sigma
from .pools import CaptionPool, build_pool, split_contests, training_pairs
from .report import render_report, write_report
from .run import backbone_path, run_caption_study, score_pools, train_run
from .statistics import (
    aggregate,
    best_of_n_gains,
    constant_vote_distribution,
    constant_vote_nll,
    constant_vote_nll_per_contest,
    contest_average_vote_nll,
    contest_metrics,
    data_properties,
    paired_difference,
    vote_nll,
)

__all__ = [
    "ABLATION_FIGURE",
    "ANCHOR_COLUMNS",
    "ARMS",
    "ARM_FIGURE",
    "ARM_LABELS",
    "BASELINE_RUNS",
    "DIGITS",
    "GAUSSIAN_ONLY",
    "METRICS",
    "MU_FIGURE",
    "SIGMA_FIGURE",
    "CaptionPool",
    "CaptionStudyConfig",
    "StudyRun",
    "ablation_runs",
    "aggregate",
    "best_of_n_gains",
    "anchored_run",
    "backbone_path",
    "build_pool",
    "constant_vote_distribution",
    "constant_vote_nll",
    "constant_vote_nll_per_contest",
    "contest_average_vote_nll",
    "contest_metrics",
    "data_properties",
    "discrimination_auc",
    "kendall_tau_b",
    "paired_difference",
    "partial_spearman",
    "plot_ablations",
    "plot_arms",
    "plot_mu",
    "plot_sigma",
    "regenerating_command",
    "render_report",
    "run_caption_study",
    "score_pools",
    "split_contests",
    "train_run",
    "training_pairs",
    "vote_nll",
    "write_report",
]
