"""Configuration of `MultiAttributeRewardTrainer`."""

from dataclasses import dataclass, field
from typing import Any

from transformers import TrainingArguments

from ..anchors import validate_thresholds

LOSS_TYPES = ("ordinal", "mse")
THRESHOLD_MODES = ("midpoints", "auto")
# HelpSteer2's attributes, in the order NVIDIA's attribute reward models output them.
HELPSTEER2_ATTRIBUTES = ("helpfulness", "correctness", "coherence", "complexity", "verbosity")
# The weights NVIDIA recommends for turning those five predicted attributes into one reward: the model card of
# nvidia/Llama3-70B-SteerLM-RM (https://huggingface.co/nvidia/Llama3-70B-SteerLM-RM, "we recommend using the weights
# [0, 0, 0, 0, 0.65, 0.8, 0.45, 0.55, -0.4]", the last five entries being these attributes), trained on HelpSteer2
# (Wang et al. 2024, arXiv:2406.08673).
HELPSTEER2_WEIGHTS = (0.65, 0.8, 0.45, 0.55, -0.4)


@dataclass
class MultiAttributeRewardConfig(TrainingArguments):
    r"""
    Configuration class for the [`MultiAttributeRewardTrainer`].

    Everything of [`~transformers.TrainingArguments`] applies; the fields below describe the attributes, their
    ratings, the loss and the optional pairwise term.

    Parameters:
        > Parameters that control the attributes

        attributes (`list[str]`, *optional*):
            Names of the rated attributes, which are also the dataset's rating columns. Defaults to HelpSteer2's
            `helpfulness, correctness, coherence, complexity, verbosity`.
        max_rating (`int`, *optional*, defaults to `4`):
            Ratings are integers `0 … max_rating` (HelpSteer2: 0–4), i.e. K = `max_rating` thresholds per attribute.
        attribute_weights (`list[float]`, *optional*):
            Default weights w of the combined reward `r = wᵀμ`, recorded in the model's config and used by the
            pairwise term. Defaults to NVIDIA's HelpSteer2 weights `0.65, 0.8, 0.45, 0.55, -0.4` for HelpSteer2's
            attributes (model card of nvidia/Llama3-70B-SteerLM-RM), otherwise equal weights 1/A.

        > Parameters that control the loss

        loss_type (`str`, *optional*, defaults to `"ordinal"`):
            `"ordinal"` trains a multi-attribute [`GaussianRewardModel`]: each rating is an ordinal anchor class, with
            likelihood `P(rating = j) = Φ((μ_a − τ_{a,j})/σ_a) − Φ((μ_a − τ_{a,j+1})/σ_a)`
            (`trl_anchor.losses.ordinal_anchor_nll`). `"mse"` is the NeMo-Aligner baseline: a plain
            `AutoModelForSequenceClassification(num_labels=A)` regressing μ_a on the rating, no σ.
        rating_thresholds (`str` or `list`, *optional*, defaults to `"midpoints"`):
            Thresholds of the ordinal arm. `"midpoints"`: `τ_k = k − ½` for every attribute, so μ_a is on the rating
            scale and σ_a in rating points (directly comparable with the MSE arm). `"auto"`: per attribute,
            `τ_{a,k} = Φ⁻¹(share of train ratings below k)` (the probit of the empirical rating distribution: μ and
            σ in units of the population spread). A list of K floats (shared) or A lists of K floats (per attribute)
            fixes them.
        pairwise_lambda (`float`, *optional*, defaults to `1.0`):
            Weight of the pairwise term when the trainer gets a `preference_dataset`: soft labels on the combined
            reward, `P(chosen ≻ rejected) = Φ((wᵀμ_c − wᵀμ_r)/sqrt(Σ_a w_a²(σ²_{c,a} + σ²_{r,a})))` for the ordinal
            arm (attributes independent given the response), Bradley–Terry `sigmoid(wᵀμ_c − wᵀμ_r)` for the MSE arm.
        head_learning_rate (`float`, *optional*):
            Learning rate of the mean and variance heads (their own param group); `None` uses
            `head_learning_rate_multiplier × learning_rate` for heads the trainer creates, `learning_rate` for
            loaded ones.
        head_learning_rate_multiplier (`float`, *optional*, defaults to `30.0`):
            Rate of freshly created heads relative to `learning_rate` when `head_learning_rate` is None, as in
            `AnchorGaussianRewardConfig` (1.0: the backbone's rate).
        variance_floor (`float`, *optional*):
            Lower bound of σ²_a; `None` keeps the model's own (`1e-4` for a new model).

        > Parameters that control the data

        max_length (`int`, *optional*, defaults to `1024`):
            Responses (prompt included) longer than this are dropped and counted. `None`: no limit.
        padding_free (`bool`, *optional*, defaults to `False`):
            Pack the sequences of a batch without padding (decoder backbones; see `trl_anchor.models.packing`).
        disable_dropout (`bool`, *optional*, defaults to `True`):
            Disable dropout in the model, as `trl.RewardConfig` does: a reward's μ and σ should not depend on a dropout
            mask, and data-parallel runs then match one process.
        model_init_kwargs (`dict`, *optional*):
            Keyword arguments for `from_pretrained` when the model is given as a string.
    """

    _VALID_DICT_FIELDS = [*TrainingArguments._VALID_DICT_FIELDS, "model_init_kwargs"]

    attributes: list[str] | None = field(
        default=None,
        metadata={"help": "Rated attributes (the dataset's rating columns); default HelpSteer2's five."},
    )
    max_rating: int = field(default=4, metadata={"help": "Ratings are integers 0..max_rating (K thresholds)."})
    attribute_weights: list[float] | None = field(
        default=None,
        metadata={"help": "Weights w of the combined reward wᵀμ; default NVIDIA's HelpSteer2 weights or 1/A."},
    )
    loss_type: str = field(
        default="ordinal",
        metadata={"help": "`ordinal` (Gaussian μ and σ per attribute) or `mse` (NeMo-style regression baseline).",
                  "choices": list(LOSS_TYPES)},
    )
    rating_thresholds: str = field(
        default="midpoints",
        metadata={"help": "`midpoints` (τ_k = k − ½), `auto` (probit of the train rating shares), or K floats."},
    )
    pairwise_lambda: float = field(default=1.0, metadata={"help": "Weight of the pairwise combined-reward term."})
    head_learning_rate: float | None = field(
        default=None,
        metadata={
            "help": "Learning rate of the mean and variance heads; None: head_learning_rate_multiplier × "
            "learning_rate for fresh heads, learning_rate for loaded ones."
        },
    )
    head_learning_rate_multiplier: float = field(
        default=30.0,
        metadata={
            "help": "Learning rate of freshly created heads relative to learning_rate when head_learning_rate is "
            "None (1.0: same rate as the backbone)."
        },
    )
    variance_floor: float | None = field(default=None, metadata={"help": "Lower bound of σ²_a."})
    max_length: int | None = field(default=1024, metadata={"help": "Longer sequences are dropped and counted."})
    padding_free: bool = field(default=False, metadata={"help": "Pack sequences without padding (decoders)."})
    disable_dropout: bool = field(default=True, metadata={"help": "Disable dropout in the model (as TRL)."})
    model_init_kwargs: dict[str, Any] | None = field(
        default=None, metadata={"help": "Keyword arguments for `from_pretrained` when the model is a string."}
    )
    learning_rate: float = field(default=1e-4, metadata={"help": "The initial learning rate for AdamW."})
    logging_steps: float = field(default=10, metadata={"help": "Log every X updates steps."})
    remove_unused_columns: bool = field(
        default=False, metadata={"help": "Kept False: the collator needs the rating columns."}
    )

    def __post_init__(self):
        super().__post_init__()
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"`loss_type` must be one of {LOSS_TYPES}, got {self.loss_type!r}.")
        if self.attributes is None:
            self.attributes = list(HELPSTEER2_ATTRIBUTES)
        if isinstance(self.attributes, str):
            self.attributes = [name.strip() for name in self.attributes.split(",")]
        if len(set(self.attributes)) != len(self.attributes) or not self.attributes:
            raise ValueError(f"`attributes` must be distinct names, at least one, got {self.attributes}.")
        if not self.head_learning_rate_multiplier > 0:
            raise ValueError(f"`head_learning_rate_multiplier` must be > 0, got {self.head_learning_rate_multiplier}.")
        if self.max_rating < 1:
            raise ValueError(f"`max_rating` must be at least 1 (two rating levels), got {self.max_rating}.")
        self.attribute_weights = self._resolve_weights()
        if isinstance(self.rating_thresholds, str) and self.rating_thresholds not in THRESHOLD_MODES:
            self.rating_thresholds = [float(t) for t in self.rating_thresholds.split(",")]
        if not isinstance(self.rating_thresholds, str):
            self.rating_thresholds = self._validate_fixed_thresholds(self.rating_thresholds)
        if self.pairwise_lambda < 0:
            raise ValueError(f"`pairwise_lambda` must be non-negative, got {self.pairwise_lambda}.")

    def _resolve_weights(self) -> list[float]:
        if self.attribute_weights is None:
            if tuple(self.attributes) == HELPSTEER2_ATTRIBUTES:
                return list(HELPSTEER2_WEIGHTS)
            return [1.0 / len(self.attributes)] * len(self.attributes)
        weights = self.attribute_weights
        if isinstance(weights, str):
            weights = weights.split(",")
        weights = [float(w) for w in weights]
        if len(weights) != len(self.attributes):
            raise ValueError(f"Got {len(weights)} `attribute_weights` for {len(self.attributes)} attributes.")
        return weights

    def _validate_fixed_thresholds(self, thresholds) -> list[list[float]]:
        rows = thresholds if thresholds and isinstance(thresholds[0], (list, tuple)) else [thresholds] * len(
            self.attributes
        )
        if len(rows) != len(self.attributes):
            raise ValueError(f"Got {len(rows)} threshold lists for {len(self.attributes)} attributes.")
        rows = [validate_thresholds(row) for row in rows]
        if any(len(row) != self.max_rating for row in rows):
            raise ValueError(
                f"Ratings 0..{self.max_rating} need {self.max_rating} thresholds per attribute, got {rows}."
            )
        return rows
