"""Configuration of `ImageRewardTrainer`."""

from dataclasses import dataclass, field
from typing import Any

from transformers import TrainingArguments

from ..anchors import validate_thresholds
from ..data.vision_prefer import VISION_PREFER_ASPECTS

REWARD_TYPES = ("gaussian", "bt")


@dataclass
class ImageRewardConfig(TrainingArguments):
    r"""
    Configuration class for the [`ImageRewardTrainer`].

    Everything of [`~transformers.TrainingArguments`] applies; the fields below describe the rated aspects, the loss
    and the heads.

    Parameters:
        > Parameters that control the aspects

        aspects (`list[str]`, *optional*):
            Names of the rated aspects: the rating columns of a ratings dataset, `chosen_<aspect>` /
            `rejected_<aspect>` and `soft_label_<aspect>` of a pairs dataset (as `load_vision_prefer` writes them).
            Defaults to VisionPrefer's `prompt_following, aesthetic, fidelity, harmlessness`.
        aspect_weights (`list[float]`, *optional*):
            Weights w of the combined reward `r = wᵀμ` (recorded in the model's config). Defaults to 1/A.
        min_rating (`int`, *optional*, defaults to `1`) and max_rating (`int`, *optional*, defaults to `5`):
            Ratings are integers `min_rating … max_rating` (VisionPrefer: 1–5), i.e. one ordinal anchor class each.
        rating_thresholds (`list[float]`, *optional*):
            Thresholds of the ordinal anchors, one list shared by all aspects. Defaults to the rating midpoints
            (`1.5, 2.5, 3.5, 4.5` for 1–5), so μ is on the rating scale and σ in rating points.

        > Parameters that control the loss

        reward_type (`str`, *optional*, defaults to `"gaussian"`):
            `"gaussian"`: one μ_a and σ_a per aspect; pairs with per-aspect soft labels are scored per aspect with the
            Thurstone likelihood `Φ((μ_{c,a} − μ_{r,a})/sqrt(σ²_{c,a} + σ²_{r,a}))`, pairs with only an overall
            `soft_label` on the combined reward wᵀμ, and ratings by the ordinal anchor likelihood. `"bt"`: the
            VP-Score/ImageReward baseline, one scalar reward trained with Bradley–Terry on the overall labels.
        anchor_lambda (`float`, *optional*, defaults to `1.0`):
            Weight of the ordinal rating (anchor) term of the Gaussian arm; `0` trains on the pairs alone.
        hard_labels (`bool`, *optional*, defaults to `False`):
            Train on hard labels (chosen ≻ rejected with probability 1) instead of the soft labels, as VP-Score does.

        > Parameters that control the heads

        init_heads_from_anchors (`bool`, *optional*, defaults to `True`):
            Start the fresh heads of the Gaussian arm, per aspect, at the normal N(μ₀, σ₀²) whose class shares equal
            the train ratings' (`trl_anchor.anchor_marginal.fit_marginal`), as the scalar trainer does.
        head_learning_rate (`float`, *optional*):
            Learning rate of the reward heads; `None` uses `head_learning_rate_multiplier × learning_rate`.
        head_learning_rate_multiplier (`float`, *optional*, defaults to `30.0`):
            The heads start from scratch on a pretrained backbone, so they train faster (the scalar trainer's default).
        variance_floor (`float`, *optional*):
            Lower bound of σ²_a; `None` keeps the model's own (`1e-4` for a new model).
        disable_dropout (`bool`, *optional*, defaults to `True`):
            Disable dropout in the model, as `trl.RewardConfig` does.
        model_init_kwargs (`dict`, *optional*):
            Keyword arguments for `from_pretrained` when the model is given as a string.
    """

    _VALID_DICT_FIELDS = [*TrainingArguments._VALID_DICT_FIELDS, "model_init_kwargs"]

    aspects: list[str] | None = field(
        default=None, metadata={"help": "Rated aspects; default VisionPrefer's four."}
    )
    aspect_weights: list[float] | None = field(
        default=None, metadata={"help": "Weights w of the combined reward wᵀμ; default 1/A."}
    )
    min_rating: int = field(default=1, metadata={"help": "Lowest rating (VisionPrefer: 1)."})
    max_rating: int = field(default=5, metadata={"help": "Highest rating (VisionPrefer: 5)."})
    rating_thresholds: list[float] | None = field(
        default=None, metadata={"help": "Ordinal thresholds shared by the aspects; default the rating midpoints."}
    )
    reward_type: str = field(
        default="gaussian",
        metadata={"help": "`gaussian` (μ and σ per aspect) or `bt` (scalar Bradley–Terry baseline, VP-Score).",
                  "choices": list(REWARD_TYPES)},
    )
    anchor_lambda: float = field(default=1.0, metadata={"help": "Weight of the ordinal rating term (Gaussian)."})
    hard_labels: bool = field(default=False, metadata={"help": "Hard pairwise labels instead of soft labels."})
    init_heads_from_anchors: bool = field(
        default=True, metadata={"help": "Start fresh heads at the train ratings' marginal (per aspect)."}
    )
    head_learning_rate: float | None = field(
        default=None, metadata={"help": "Learning rate of the heads; None: head_learning_rate_multiplier × lr."}
    )
    head_learning_rate_multiplier: float = field(
        default=30.0, metadata={"help": "Head learning rate as a multiple of `learning_rate`."}
    )
    variance_floor: float | None = field(default=None, metadata={"help": "Lower bound of σ²_a."})
    disable_dropout: bool = field(default=True, metadata={"help": "Disable dropout in the model (as TRL)."})
    model_init_kwargs: dict[str, Any] | None = field(
        default=None, metadata={"help": "Keyword arguments for `from_pretrained` when the model is a string."}
    )
    learning_rate: float = field(default=1e-4, metadata={"help": "The initial learning rate for AdamW."})
    logging_steps: float = field(default=10, metadata={"help": "Log every X updates steps."})
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Kept False: the collator needs the image and rating columns."}
    )

    def __post_init__(self):
        super().__post_init__()
        if self.reward_type not in REWARD_TYPES:
            raise ValueError(f"`reward_type` must be one of {REWARD_TYPES}, got {self.reward_type!r}.")
        if self.aspects is None:
            self.aspects = list(VISION_PREFER_ASPECTS)
        if isinstance(self.aspects, str):
            self.aspects = [name.strip() for name in self.aspects.split(",")]
        if not self.aspects or len(set(self.aspects)) != len(self.aspects):
            raise ValueError(f"`aspects` must be distinct names, at least one, got {self.aspects}.")
        if self.max_rating <= self.min_rating:
            raise ValueError(f"`max_rating` ({self.max_rating}) must exceed `min_rating` ({self.min_rating}).")
        self.aspect_weights = self._floats(self.aspect_weights) or [1.0 / len(self.aspects)] * len(self.aspects)
        if len(self.aspect_weights) != len(self.aspects):
            raise ValueError(f"Got {len(self.aspect_weights)} `aspect_weights` for the aspects {self.aspects}.")
        levels = range(self.min_rating, self.max_rating)
        self.rating_thresholds = self._floats(self.rating_thresholds) or [k + 0.5 for k in levels]
        self.rating_thresholds = validate_thresholds(self.rating_thresholds)
        if len(self.rating_thresholds) != len(levels):
            raise ValueError(
                f"Ratings {self.min_rating}..{self.max_rating} need {len(levels)} thresholds, got "
                f"{self.rating_thresholds}."
            )
        if self.anchor_lambda < 0:
            raise ValueError(f"`anchor_lambda` must be non-negative, got {self.anchor_lambda}.")
        if not self.head_learning_rate_multiplier > 0:
            raise ValueError(f"`head_learning_rate_multiplier` must be > 0, got {self.head_learning_rate_multiplier}.")

    @staticmethod
    def _floats(values) -> list[float] | None:
        if values is None:
            return None
        if isinstance(values, str):
            values = values.split(",")
        return [float(v) for v in values]
