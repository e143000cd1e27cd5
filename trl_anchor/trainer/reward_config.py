"""Configuration of `AnchorGaussianRewardTrainer`."""

import math
from dataclasses import dataclass, field

from trl import RewardConfig

from ..anchors import DEFAULT_PERCENTILES, parse_thresholds
from ..losses import ANCHOR_NORMALIZATIONS
from ..models.configuration_gaussian import check_variance_floor

REWARD_TYPES = ("gaussian", "bt")


@dataclass
class AnchorGaussianRewardConfig(RewardConfig):
    r"""
    Configuration class for the [`AnchorGaussianRewardTrainer`].

    Everything of [`trl.RewardConfig`] still applies (`max_length`, `center_rewards_coefficient`, gradient
    checkpointing, `model_init_kwargs`, `eos_token`/`pad_token`, ...). The fields below add the Gaussian reward model
    and its anchors.

    Parameters:
        > Parameters that control the reward model

        reward_type (`str`, *optional*, defaults to `"gaussian"`):
            `"gaussian"` trains a [`GaussianRewardModel`] (mean μ and variance σ², probit preference likelihood);
            `"bt"` trains a plain Bradley–Terry reward model with the same soft labels, so one trainer trains every
            arm of a comparison.
        variance_floor (`float`, *optional*):
            Lower bound added to the softplus variance, `σ² = softplus(·) + variance_floor`. `None` keeps the model's
            own (`1e-4` for a new model).
        probit_tail (`float`, *optional*, defaults to `5.0`):
            Bounded influence of mislabelled pairs: the pairwise loss `−log Φ(z)` continues linearly below
            `z = −probit_tail` (`trl_anchor.losses.log_ndtr_linear_tail`), so a wrongly ordered pair pulls like one at
            `z = −probit_tail` instead of quadratically harder (at the variance floor a pair with Δμ = −50 has a
            gradient of 2.5e5 otherwise). Unchanged above it, so soft labels in `[Φ(−5), Φ(5)]` keep their exact
            optimum. `None` trains the exact probit likelihood. Evaluation probabilities are always exact.

        > Parameters that control the anchors

        anchor_lambda (`float`, *optional*, defaults to `0.1`):
            Weight λ of the anchor likelihood: `L = L_pair + λ · (L_anchor(chosen) + L_anchor(rejected))`, each anchor
            term a weighted sum over the batch's anchored responses normalised as `anchor_normalization` says.
        anchor_normalization (`str`, *optional*, defaults to `"anchored"`):
            What each side's anchor term `Σ w · L_anchor` is divided by: `"anchored"`, the number of anchored responses
            of that side in the batch (the paper's code; λ keeps its meaning at any `anchor_fraction`), or `"pairs"`,
            the number of pairs in the batch (the anchor term then shrinks with the anchored fraction).
        anchor_thresholds (`list[float]` or `str`, *optional*):
            Strictly increasing thresholds τ_1 < … < τ_K on the latent reward scale. `"auto"` sets them to the
            `anchor_percentiles` of all train external scores (`chosen_score`/`rejected_score`). `None` means `"auto"`
            for score anchors and `K` evenly spaced values in [-1, 1] for count anchors (K + 1 counts per response)
            and for class anchors with `anchor_num_thresholds = K` (the thresholds fix the unit of μ and σ).
        anchor_num_thresholds (`int`, *optional*):
            Number K of thresholds of class anchors (classes 0..K) when `anchor_thresholds` is not given: K evenly
            spaced thresholds in [-1, 1]. Class anchors need it or `anchor_thresholds`; K is never inferred from the
            classes a train set happens to contain. Count anchors take K from their vectors' length.
        anchor_percentiles (`list[float]`, *optional*, defaults to `[25.0, 75.0]`):
            Percentiles used by `anchor_thresholds="auto"`; the published recipe thresholds an external reward model at
            its 25th/75th percentiles (one anchor: the median, `[50.0]`).
        anchor_fraction (`float`, *optional*, defaults to `1.0`):
            Fraction of train pairs that keep their anchors (a seeded subset, `anchor_seed`); the others train on the
            pairwise term only. Evaluation always uses every anchor.
        anchor_seed (`int`, *optional*):
            Seed of the anchored subset drawn for `anchor_fraction` < 1, so runs with different training `seed`s can
            share one subset. `None` uses `seed`.
        normalize_anchor_counts (`bool`, *optional*, defaults to `True`):
            For count anchors (e.g. crowd votes), divide the multinomial log-likelihood by the number of votes so each
            response weighs the same; `False` uses the full multinomial likelihood.
        anchor_group_column (`str`, *optional*):
            Column whose value groups pairs whose anchors share a base rate (a caption contest's crowd, an annotator
            pool; `"prompt"` makes every prompt a group). Each train group's latent rewards get an offset fitted
            before step 0 from its anchor class shares, so μ learns differences within groups and σ the spread
            around a group's own base rate; anchors of groups not trained on use σ² plus the offsets' variance
            (`trl_anchor.trainer.anchor_groups`). `None`: one base rate for all anchors.
        init_heads_from_anchors (`bool`, *optional*, defaults to `True`):
            Before step 0, start heads the trainer created (not loaded) at the train anchors' base rate: every response
            at the N(μ₀, σ₀²) whose anchor class shares equal the data's (mean and variance head weights 0, biases μ₀
            and σ₀; see `trl_anchor.trainer.head_init`; a mean head without a bias records μ₀ as
            `anchor_mean_offset` instead). Without it they start at μ ≈ 0, σ = 1, which can be far from the data (σ
            then barely moves at a backbone learning rate). No effect without anchors.
        head_learning_rate (`float`, *optional*):
            Learning rate of the reward heads (the mean head and the variance head), which start from scratch on a
            pretrained backbone; `None` uses `head_learning_rate_multiplier × learning_rate` for heads the trainer
            created and `learning_rate` for loaded ones.
        head_learning_rate_multiplier (`float`, *optional*, defaults to `30.0`):
            Learning rate of freshly created heads relative to `learning_rate` when `head_learning_rate` is not set.
            A backbone rate (1e-5…1e-4) barely moves a head that starts from scratch, so σ stays where it started;
            see `benchmarks/head_learning_rate.py` for the measurements behind the default. `1.0` trains the heads
            at `learning_rate`. Not applied to an optimizer passed in `optimizers` or defined by DeepSpeed.

        > Parameters that control padding-free training

        padding_free (`bool`, *optional*, defaults to `False`):
            Pack the chosen and rejected sequences of each batch without padding (`position_ids` restart per
            sequence, no attention mask; μ and σ² are read at each sequence's last token), so no compute is spent on
            pad tokens. Needs `reward_type="gaussian"` and a decoder backbone (GPT-2, Llama, Qwen, ...); the loss
            equals the padded one. See `trl_anchor.models.packing`.
    """

    reward_type: str = field(
        default="gaussian",
        metadata={"help": "'gaussian' (mean + variance, probit likelihood) or 'bt' (Bradley–Terry baseline).",
                  "choices": list(REWARD_TYPES)},
    )
    variance_floor: float | None = field(
        default=None,
        metadata={"help": "Floor added to the softplus variance. None keeps the model's own (1e-4 for a new model)."},
    )
    probit_tail: float | None = field(
        default=5.0,
        metadata={"help": "The pairwise loss -log Φ(z) continues linearly below z = -probit_tail (bounded influence "
                  "of mislabelled pairs). None: the exact probit likelihood."},
    )
    anchor_lambda: float = field(
        default=0.1,
        metadata={"help": "Weight λ of the anchor likelihood relative to the pairwise loss."},
    )
    anchor_normalization: str = field(
        default="anchored",
        metadata={"help": "Divide each side's weighted anchor likelihood by the number of anchored responses "
                  "('anchored', the paper's code) or by the number of pairs in the batch ('pairs').",
                  "choices": list(ANCHOR_NORMALIZATIONS)},
    )
    anchor_thresholds: list[float] | str | None = field(
        default=None,
        metadata={"help": "Strictly increasing anchor thresholds, or 'auto' (percentiles of the train external "
                  "scores). None: 'auto' for score anchors, evenly spaced in [-1, 1] for count anchors and for class "
                  "anchors with anchor_num_thresholds."},
    )
    anchor_num_thresholds: int | None = field(
        default=None,
        metadata={"help": "Number K of thresholds of class anchors (classes 0..K) when anchor_thresholds is not "
                  "given: K evenly spaced thresholds in [-1, 1]."},
    )
    anchor_percentiles: list[float] = field(
        default_factory=lambda: list(DEFAULT_PERCENTILES),
        metadata={"help": "Percentiles of the train external scores used by anchor_thresholds='auto'."},
    )
    anchor_fraction: float = field(
        default=1.0,
        metadata={"help": "Fraction of train pairs that keep their anchors (seeded subset)."},
    )
    anchor_seed: int | None = field(
        default=None,
        metadata={"help": "Seed of the anchored subset for anchor_fraction < 1; None uses `seed`."},
    )
    normalize_anchor_counts: bool = field(
        default=True,
        metadata={"help": "Divide the count-anchor (crowd vote) likelihood by the number of votes per response."},
    )
    anchor_group_column: str | None = field(
        default=None,
        metadata={"help": "Column grouping pairs whose anchors share a base rate (e.g. a contest id, or 'prompt'); "
                  "each train group gets a fitted offset so μ learns differences within groups. None: one base "
                  "rate."},
    )
    init_heads_from_anchors: bool = field(
        default=True,
        metadata={"help": "Start fresh mean/variance heads at the normal whose anchor class shares equal the train "
                  "anchors' (weights 0, biases μ₀ and σ₀). False: μ ≈ 0, σ = 1."},
    )
    head_learning_rate: float | None = field(
        default=None,
        metadata={"help": "Learning rate of the mean and variance heads; None: head_learning_rate_multiplier × "
                  "learning_rate for fresh heads, learning_rate for loaded ones."},
    )
    head_learning_rate_multiplier: float = field(
        default=30.0,
        metadata={"help": "Learning rate of freshly created heads relative to learning_rate when head_learning_rate "
                  "is None (1.0: same rate as the backbone)."},
    )
    padding_free: bool = field(
        default=False,
        metadata={"help": "Pack the chosen and rejected sequences of each batch without padding (position_ids "
                  "restart per sequence; μ and σ² read at each sequence's last token). Gaussian reward models with a "
                  "decoder backbone only."},
    )

    def __post_init__(self):
        super().__post_init__()
        if self.reward_type not in REWARD_TYPES:
            raise ValueError(f"`reward_type` must be one of {REWARD_TYPES}, got {self.reward_type!r}.")
        if self.probit_tail is not None and not self.probit_tail > 0:
            raise ValueError(f"`probit_tail` must be > 0 or None, got {self.probit_tail}.")
        if self.anchor_normalization not in ANCHOR_NORMALIZATIONS:
            raise ValueError(
                f"`anchor_normalization` must be one of {ANCHOR_NORMALIZATIONS}, got {self.anchor_normalization!r}."
            )
        if not self.anchor_lambda >= 0:
            raise ValueError(f"`anchor_lambda` must be ≥ 0, got {self.anchor_lambda}.")
        if not self.head_learning_rate_multiplier > 0:
            raise ValueError(f"`head_learning_rate_multiplier` must be > 0, got {self.head_learning_rate_multiplier}.")
        if not 0.0 <= self.anchor_fraction <= 1.0:
            raise ValueError(f"`anchor_fraction` must lie in [0, 1], got {self.anchor_fraction}.")
        if self.anchor_num_thresholds is not None and self.anchor_num_thresholds < 1:
            raise ValueError(f"`anchor_num_thresholds` must be ≥ 1, got {self.anchor_num_thresholds}.")
        if self.variance_floor is not None:
            self.variance_floor = check_variance_floor(self.variance_floor)
        if self.head_learning_rate is not None and not (0 <= self.head_learning_rate < math.inf):
            # AdamW refuses a negative `learning_rate` but not a param group added later: the heads would ascend.
            raise ValueError(f"`head_learning_rate` must be a finite number ≥ 0, got {self.head_learning_rate}.")
        self.anchor_thresholds = parse_thresholds(self.anchor_thresholds)
        self.anchor_percentiles = [float(p) for p in self.anchor_percentiles]
        if self.padding_free and self.reward_type != "gaussian":
            raise ValueError(
                "`padding_free=True` reads rewards through GaussianRewardModel; it needs reward_type='gaussian'."
            )
