"""Settings of the real-vote caption study (`trl-anchor caption-study`): the arms and metrics, `CaptionStudyConfig`,
the training runs it makes (`StudyRun`) and the command line that reproduces a configuration."""

from dataclasses import dataclass, field, fields
from typing import Any

from ...anchors import validate_thresholds
from ...data.caption_contest_files import DEFAULT_MIN_VOTES

ARMS = ("trl_bt", "bt", "gaussian", "gaussian+anchors")
ANCHOR_COLUMNS = ("chosen_anchor_counts", "rejected_anchor_counts")
# Metrics of the test table, in order, with the direction that is better.
METRICS = {
    "accuracy_clear": ("accuracy, clearly separated pairs", "higher"),
    "soft_ce": ("soft cross-entropy, random pairs", "lower"),
    "brier": ("Brier score, random pairs", "lower"),
    "accuracy": ("accuracy, random pairs", "higher"),
    "ece": ("ECE, random pairs", "lower"),
    "kendall_tau": ("Kendall τ-b of μ vs crowd mean", "higher"),
    "kendall_tau_expected_vote": ("Kendall τ-b of expected vote vs crowd mean", "higher"),
    "top_vs_far_auc": ("AUC top-10 vs rank ~1000", "higher"),
    "sigma_spearman_spread": ("Spearman σ vs vote spread", "higher"),
    "sigma_partial_spread": ("partial Spearman σ vs spread given crowd mean", "higher"),
    "sigma_partial_spread_cubic": ("same, cubic in the crowd mean's rank", "higher"),
    "vote_nll": ("vote NLL per vote (nats)", "lower"),
    "vote_nll_within_gain": ("vote NLL gain over the model's contest-average prediction (nats)", "higher"),
    "sigma_relative_spread": ("σ spread across captions (std / mean)", "higher"),
    "bon_gain_mean": ("best-of-N gain, μ selection", "higher"),
    "bon_gain_quantile": ("best-of-N gain, 10% quantile selection", "higher"),
    "bon_gain_expected_vote": ("best-of-N gain, expected-vote selection", "higher"),
}
# Best-of-N selection rules (`trl_anchor.rewards.transforms` specs) behind the `bon_gain_<rule>` metrics.
BON_RULES = {"mean": "mean", "quantile": "quantile:0.1", "expected_vote": "expected_class"}
# Calibration metrics differ in the 3rd–4th decimal: random caption pairs have soft labels close to ½.
DIGITS = {"soft_ce": 4, "brier": 4, "ece": 4, "vote_nll_within_gain": 4}
# Descriptive metrics: reported per arm, not compared between arms (a flat σ is the failure, more is not better;
# the within-contest vote NLL gain is tested against 0 in the findings: without anchors it has no unit).
DESCRIPTIVE = ("sigma_relative_spread", "vote_nll_within_gain")
# What σ does and the vote likelihood (the report's σ table); with the σ-using scores, the Gaussian-only metrics.
SIGMA_METRICS = (
    "sigma_relative_spread",
    "sigma_spearman_spread",
    "sigma_partial_spread",
    "sigma_partial_spread_cubic",
    "vote_nll",
    "vote_nll_within_gain",
)
GAUSSIAN_ONLY = (*SIGMA_METRICS, "kendall_tau_expected_vote", "bon_gain_quantile", "bon_gain_expected_vote")
ARM_LABELS = {
    "trl_bt": "TRL RewardTrainer, hard labels",
    "bt": "BT, soft labels",
    "gaussian": "Gaussian",
    "gaussian+anchors": "Gaussian + anchors",
}


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
            "help": "Seed of the contest split and of the pair, pool and best-of-N sampling (the trainings use "
            "`training_seeds`)."
        },
    )
    contests: list[int] | None = field(
        default=None, metadata={"help": "Restrict the study to these contests (default: every contest in data_dir)."}
    )
    test_size: float = field(default=0.1, metadata={"help": "Fraction of contests held out for test."})
    validation_size: float = field(default=0.1, metadata={"help": "Fraction of contests for validation (λ choice)."})
    train_pairs_per_contest: int = field(default=100, metadata={"help": "Train pairs sampled per train contest."})
    train_strategy: str = field(
        default="random",
        metadata={
            "help": "Train pair sampling of `CaptionContestData.pairs`. Random pairs are what a crowd-vote dataset "
            "gives; `clearly_separated` pairs carry more pairwise signal per pair (soft labels ~0.63 instead of "
            "~0.54), which only a very small pair budget needs.",
            "choices": ["random", "rank_stratified", "clearly_separated"],
        },
    )
    anchor_thresholds: list[float] = field(
        default_factory=lambda: [-1.0, 1.0],
        metadata={"help": "τ_1 < τ_2 of the vote anchors (unfunny | somewhat | funny); they fix the unit of μ, σ."},
    )
    anchor_lambdas: list[float] = field(
        default_factory=lambda: [0.1, 1.0],
        metadata={
            "help": "λ values of the anchored runs (0.1 is the trainer's default); the headline arm uses the best on "
            "validation soft CE."
        },
    )
    anchor_group_column: str | None = field(
        default="contest",
        metadata={
            "help": "Train-pair column whose groups have their own anchor base rate (`anchor_group_column` of the "
            "trainer): 'contest', each contest's crowd; 'none' gives every anchor one base rate, so μ also has to "
            "guess an unseen contest's base rate from its description."
        },
    )
    anchor_fractions: list[float] = field(
        default_factory=lambda: [0.5],
        metadata={"help": "Anchor fractions (< 1) of the ablation runs at the chosen λ (1 is the headline arm)."},
    )
    training_seeds: list[int] = field(
        default_factory=lambda: [0, 1],
        metadata={
            "help": "Training seeds (head initialisation, batch order) of the headline arms: each arm is trained once "
            "per seed and its per-contest metrics are averaged over the seeds before the contest-clustered "
            "statistics. The λ / fraction ablations use the first seed. The split and pools follow `seed`."
        },
    )
    num_train_epochs: float = field(default=1.5, metadata={"help": "Epochs per run."})
    max_steps: int = field(default=-1, metadata={"help": "If > 0, overrides num_train_epochs (smoke runs)."})
    per_device_train_batch_size: int = field(default=16, metadata={"help": "Pairs per optimisation step."})
    learning_rate: float = field(default=5e-5, metadata={"help": "AdamW learning rate of the backbone (cosine)."})
    head_learning_rate: float | None = field(
        default=None,
        metadata={
            "help": "Learning rate of the fresh μ / σ heads; default the trainer's (`head_learning_rate_multiplier` "
            "× `learning_rate`), i.e. what a user gets without tuning."
        },
    )
    max_length: int = field(default=64, metadata={"help": "Max tokens of description + caption."})
    eval_captions_per_contest: int = field(
        default=120, metadata={"help": "Random captions scored per test contest (besides the top / rank-~1000 sets)."}
    )
    validation_captions_per_contest: int = field(
        default=50, metadata={"help": "Random captions scored per validation contest."}
    )
    min_eval_votes: int = field(
        default=DEFAULT_MIN_VOTES,
        metadata={"help": "Evaluation uses captions with at least this many votes (reliable means; loader default)."},
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
    bon_n: int = field(default=16, metadata={"help": "Candidates per best-of-N draw (captions of one test contest)."})
    bon_draws: int = field(default=200, metadata={"help": "Random best-of-N draws per test contest."})
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
        if self.anchor_group_column in ("", "none", "None"):  # how a command line spells "no groups"
            self.anchor_group_column = None
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
            "bon_n",
            "bon_draws",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be ≥ 1, got {getattr(self, name)}.")
        if self.far_rank - (self.num_far + 1) // 2 < self.num_top:
            raise ValueError(
                f"The {self.num_far} captions around `far_rank`={self.far_rank} overlap the top {self.num_top}."
            )
        if not self.training_seeds or len(set(self.training_seeds)) != len(self.training_seeds):
            raise ValueError(f"`training_seeds` must be distinct and non-empty, got {self.training_seeds}.")
        if self.test_size <= 0 or self.validation_size <= 0:
            raise ValueError("The study needs test and validation contests: `test_size` and `validation_size` > 0.")


@dataclass(frozen=True)
class StudyRun:
    """One training run: an arm (`reward_type`: `bt`, `gaussian`, or `trl` for TRL's own `RewardTrainer` on hard
    labels; anchors or not) with its λ, anchor fraction and training seed."""

    name: str
    reward_type: str
    anchor_lambda: float | None = None  # None: trained without anchors
    anchor_fraction: float = 1.0
    training_seed: int | None = None  # None: the study's first training seed

    def with_seed(self, seed: int) -> "StudyRun":
        return StudyRun(f"{self.name}_seed{seed}", self.reward_type, self.anchor_lambda, self.anchor_fraction, seed)

    def seed_in(self, config: CaptionStudyConfig) -> int:
        """The trainer seed this run trains with in the study `config`."""
        return config.training_seeds[0] if self.training_seed is None else self.training_seed

    @property
    def anchored(self) -> bool:
        return self.anchor_lambda is not None

    @property
    def label(self) -> str:
        # A further training seed's run is named after it, so tables listing every run tell the seeds apart.
        seed = "" if self.training_seed is None else f", seed {self.training_seed}"
        if not self.anchored:
            arm = {"trl": "TRL RewardTrainer, hard labels", "bt": "BT, soft labels"}.get(
                self.reward_type, "Gaussian, no anchors"
            )
            return arm + seed
        return f"Gaussian + anchors, λ={self.anchor_lambda:g}, {self.anchor_fraction:.0%} anchored{seed}"


def anchored_run(anchor_lambda: float, anchor_fraction: float = 1.0) -> StudyRun:
    name = f"anchors_lambda{anchor_lambda:g}" + ("" if anchor_fraction == 1.0 else f"_fraction{anchor_fraction:g}")
    return StudyRun(name, "gaussian", anchor_lambda, anchor_fraction)


BASELINE_RUNS = (StudyRun("trl_bt", "trl"), StudyRun("bt", "bt"), StudyRun("gaussian", "gaussian"))


def ablation_runs(results: dict[str, Any]) -> list[tuple[str, str, float]]:
    """(run name, axis, x value) of the λ and anchor-fraction ablations of a finished study's `results`."""
    config, chosen = results["config"], results["selection"]["anchor_lambda"]
    rows = [(anchored_run(lam).name, "lambda", lam) for lam in config["anchor_lambdas"]]
    rows += [(anchored_run(chosen, f).name, "fraction", f) for f in config["anchor_fractions"]]
    rows.append((anchored_run(chosen).name, "fraction", 1.0))
    return rows


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
