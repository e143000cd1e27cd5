"""`GaussianRewardModel`: a sequence-classification reward model that also predicts the variance of human reward.

The model *is* the backbone's own `...ForSequenceClassification` class (GPT-2, Llama, Qwen, BERT, MiniLM, ...) with
one extra module, `variance_head`, applied to the same hidden state the standard reward head (`score` or `classifier`)
reads. Consequences:

- `config.num_labels == 1` and the reward head is the usual one, so `trl.RewardTrainer`'s checks pass unpatched.
- A saved directory is an ordinary checkpoint of the backbone's class (`config.architectures` names it) plus the
  tensors `variance_head.weight`/`variance_head.bias` in the same safetensors file. Plain
  `AutoModelForSequenceClassification.from_pretrained(dir)` loads it without remote code, ignores the variance head and
  returns the mean μ as its single logit.
- `config.gaussian_reward` records that the model is Gaussian, its variance floor and the anchors it was trained with
  (`configuration_gaussian` reads and writes it).

Both heads keep float32 parameters (also in a bf16 model, `_keep_in_fp32_modules_strict`) and compute with autocast
off: μ comes out of a float32 product, never a bf16-rounded one, and a 1e-5 update moves them.

Multi-attribute models (HelpSteer2's helpfulness, correctness, ... ratings): the same class with `num_labels = A`.
The mean head outputs μ ∈ R^A, exactly what `AutoModelForSequenceClassification(num_labels=A)` returns (the format
of NVIDIA's attribute reward models), the variance head σ² ∈ R^A, and `config.gaussian_reward["attributes"]` names
the attributes (also written to `config.id2label`). Outputs then have shape `(batch_size, A)`; with one attribute
they keep the scalar shapes `(batch_size,)`.

Variance parameterisation: `σ² = softplus(w·h + b) + variance_floor`, computed in float64 and returned as float32.
Softplus keeps σ² strictly positive with a gradient everywhere (no clamp), grows linearly for large activations (no
exp overflow) and the floor bounds the probit denominator away from zero. A fresh head has `w = 0` and `b` chosen so
that σ² = 1.
"""

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from transformers import MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING, AutoConfig, PretrainedConfig
from transformers.dynamic_module_utils import get_class_from_dynamic_module, resolve_trust_remote_code
from transformers.utils import ModelOutput, logging

from ..losses import math_dtype
from .configuration_gaussian import (
    DEFAULT_VARIANCE_FLOOR,
    check_variance_floor,
    gaussian_settings,
    is_gaussian_config,
    prepare_gaussian_config,
)
from .pooling import reward_token_index

logger = logging.get_logger(__name__)

_INITIAL_VARIANCE = 1.0
# Modules kept in float32 when a Gaussian model is loaded in bf16/fp16: the mean head and the variance head.
_FLOAT32_HEADS = ("score", "classifier", "variance_head")
# At most this many positions are upcast at once, so heads applied to every position of a (B, T, H) batch (PPO) never
# hold an upcast copy of the whole batch.
_UPCAST_ROWS = 4096


@dataclass
class GaussianRewardModelOutput(ModelOutput):
    """Output of a `GaussianRewardModel`.

    Args:
        loss (`torch.FloatTensor`, *optional*): the backbone's regression loss when `labels` were passed.
        logits (`torch.FloatTensor` of shape `(batch_size, num_labels)`): the mean reward μ, exactly what the plain
            sequence-classification model returns.
        mean (`torch.FloatTensor` of shape `(batch_size,)`, or `(batch_size, A)` for A > 1 attributes): μ in float32.
        variance (`torch.FloatTensor`, shaped as `mean`): σ² in float32, at least the variance floor.
        std (`torch.FloatTensor`, shaped as `mean`): σ.
        hidden_states, attentions: as returned by the backbone when requested.
    """

    loss: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    mean: torch.FloatTensor | None = None
    variance: torch.FloatTensor | None = None
    std: torch.FloatTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


class VarianceHead(nn.Module):
    """Variance of the latent reward from the pooled hidden state the reward head reads: a linear map and softplus.

    With `num_outputs = A > 1` (one variance per attribute) the output has a trailing dimension of size A."""

    def __init__(self, in_features: int, variance_floor: float = DEFAULT_VARIANCE_FLOOR, num_outputs: int = 1):
        super().__init__()
        # float32 whatever the default dtype a bf16 model is built under (a checkpoint without this head leaves it
        # at its initial values, so no load casts it either).
        self.weight = nn.Parameter(torch.empty(num_outputs, in_features, dtype=torch.float32))
        self.bias = nn.Parameter(torch.empty(num_outputs, dtype=torch.float32))
        self.variance_floor = variance_floor  # validated by the setter
        self.reset_parameters()

    @property
    def variance_floor(self) -> float:
        return self._variance_floor

    @variance_floor.setter
    def variance_floor(self, value: float) -> None:
        self._variance_floor = check_variance_floor(value)

    def reset_parameters(self) -> None:
        # Zero weights make every response start with σ² = 1, the scale on which the anchors identify σ.
        with torch.no_grad():
            self.weight.zero_()
            self.bias.fill_(_inverse_softplus(_INITIAL_VARIANCE - self.variance_floor))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """Variance `softplus(w·h + b) + floor` of hidden states `(..., H)`, as float32 of shape `(...)` (`(..., A)`
        for A > 1 outputs).

        The head is tiny, so it runs in float64 (float32 on MPS) with autocast off whatever the model dtype: bf16
        training never rounds σ², and the result does not depend on how the loaded weights happen to be aligned in
        memory.
        """
        raw = upcast_linear(hidden, self.weight, self.bias, math_dtype(hidden.device))
        if raw.shape[-1] == 1:
            raw = raw.squeeze(-1)
        return (F.softplus(raw) + self.variance_floor).float()


class Float32Linear(nn.Linear):
    """`nn.Linear` computed in float32 with autocast off, whatever the dtype of its parameters and input; the mean
    head of a `GaussianRewardModel`. Same parameters and state-dict keys as `nn.Linear`."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        return upcast_linear(input, self.weight, self.bias, torch.float32)


def upcast_linear(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, dtype: torch.dtype):
    """`F.linear` in `dtype` with autocast disabled, upcasting `_UPCAST_ROWS` positions of `hidden` at a time."""
    with torch.autocast(device_type=hidden.device.type, enabled=False):
        weight = weight.to(dtype)
        bias = None if bias is None else bias.to(dtype)
        rows = hidden.reshape(-1, hidden.shape[-1]).split(_UPCAST_ROWS)
        out = torch.cat([F.linear(chunk.to(dtype), weight, bias) for chunk in rows])
    return out.reshape(*hidden.shape[:-1], out.shape[-1])


def _inverse_softplus(y: float) -> float:
    return y + math.log(-math.expm1(-y))


def reward_head(model: nn.Module) -> nn.Module:
    """The module that produces the scalar reward of a sequence-classification model (`score`, `classifier`, or a
    classification head's `out_proj`), whose input is the hidden state σ is predicted from."""
    head = getattr(model, "score", None)
    if head is None:
        head = getattr(model, "classifier", None)
    if head is None:
        raise ValueError(
            f"{type(model).__name__} has neither a `score` nor a `classifier` module; cannot attach a variance head."
        )
    # RoBERTa-style heads pool and project inside `classifier`; the last projection sees the pooled state.
    return getattr(head, "out_proj", head)


def _in_features(head: nn.Module) -> int:
    linear = getattr(head, "in_features", None)
    if linear is None:
        raise ValueError(
            f"The reward head {type(head).__name__} is not a linear layer; cannot size the variance head."
        )
    return linear


class GaussianRewardModel:
    """A reward model that predicts a mean μ and a variance σ² of human reward for each (prompt, response).

    `GaussianRewardModel` is a mixin: `GaussianRewardModel.from_pretrained(...)` returns an instance of
    `Gaussian<Backbone>ForSequenceClassification`, a subclass of both this class and the backbone's own
    sequence-classification class, so everything that works on that class (TRL trainers, PEFT, DeepSpeed,
    `save_pretrained`/`push_to_hub`, gradient checkpointing) works unchanged.

    Example:

    ```python
    >>> from transformers import GPT2Config
    >>> from trl_anchor import GaussianRewardModel

    >>> config = GPT2Config(n_layer=2, n_head=2, n_embd=32, vocab_size=100, num_labels=1, pad_token_id=0)
    >>> model = GaussianRewardModel.from_config(config)
    >>> out = model(input_ids=torch.tensor([[5, 6, 7]]))
    >>> out.logits.shape, out.mean.shape, out.variance.shape
    (torch.Size([1, 1]), torch.Size([1]), torch.Size([1]))
    ```
    """

    _backbone_class: type | None = None
    variance_head: VarianceHead

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        # Both heads stay float32 when the model is loaded in bf16/fp16 (the backbone's own list is kept).
        inherited = getattr(super(GaussianRewardModel, cls), "_keep_in_fp32_modules_strict", None) or []
        cls._keep_in_fp32_modules_strict = sorted({*inherited, *_FLOAT32_HEADS})

    def __init__(self, config: PretrainedConfig, *args, **kwargs):
        super().__init__(config, *args, **kwargs)
        settings = gaussian_settings(config)
        head = reward_head(self)
        self.variance_head = VarianceHead(_in_features(head), settings["variance_floor"], config.num_labels)
        if type(head) is nn.Linear:
            # μ in float32 with autocast off, like σ²: the module keeps its parameters, only its forward changes.
            head.__class__ = Float32Linear
        # Heads created here rather than loaded; `from_pretrained` narrows it to the heads its checkpoint lacked. The
        # trainer starts fresh heads at the train anchors' base rate (`trl_anchor.trainer.head_init`).
        self.fresh_heads = {"mean", "variance"}

    # ----------------------------------------------------------------------------------------------------- creation
    @classmethod
    def class_for(
        cls, config: PretrainedConfig, trust_remote_code: bool | None = False, repo_id: str | None = None, **hub_kwargs
    ) -> type:
        """The `Gaussian<Backbone>ForSequenceClassification` class for a backbone config.

        The backbone class is the one `AutoModelForSequenceClassification` would pick: with `trust_remote_code=True`
        the class named in `config.auto_map` (remote code from `repo_id`, default `config.name_or_path`, fetched with
        `hub_kwargs` such as `revision`), otherwise transformers' own class for the config.
        """
        return gaussian_class(sequence_classification_class(config, trust_remote_code, repo_id, **hub_kwargs))

    @classmethod
    def from_config(
        cls,
        config: PretrainedConfig,
        variance_floor: float | None = None,
        attributes: list[str] | None = None,
        **kwargs,
    ):
        """Build a freshly initialised Gaussian reward model from a backbone config: one reward (`num_labels=1`), or
        one (μ, σ²) per named attribute with `attributes` (sets `num_labels = len(attributes)`)."""
        prepare_gaussian_config(config, variance_floor, attributes)
        return cls.class_for(config)(config, **kwargs)

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path,
        *model_args,
        variance_floor: float | None = None,
        attributes: list[str] | None = None,
        **kwargs,
    ):
        """Load a Gaussian reward model from a local directory or the Hub.

        Works on a `GaussianRewardModel` checkpoint (both heads restored), on a plain reward-model checkpoint (the
        variance head starts at σ² = 1) and on a base LM or encoder checkpoint (both heads initialised), exactly like
        `AutoModelForSequenceClassification.from_pretrained`. Extra keyword arguments are forwarded to it.
        `attributes` makes a multi-attribute model from a base checkpoint; a saved multi-attribute checkpoint keeps
        its own attributes.
        """
        if cls is not GaussianRewardModel:
            wants_info = kwargs.pop("output_loading_info", False)
            model, info = super().from_pretrained(
                pretrained_model_name_or_path, *model_args, output_loading_info=True, **kwargs
            )
            model.fresh_heads = _fresh_heads(info["missing_keys"], is_gaussian_config(model.config))
            return (model, info) if wants_info else model
        hub_kwargs = {k: kwargs[k] for k in ("revision", "token", "cache_dir") if k in kwargs}
        trust_remote_code = kwargs.get("trust_remote_code")
        config = kwargs.pop("config", None)
        if config is None:
            config_overrides = {}
            if "pad_token_id" in kwargs:
                config_overrides["pad_token_id"] = kwargs.pop("pad_token_id")
            config = AutoConfig.from_pretrained(
                pretrained_model_name_or_path, trust_remote_code=trust_remote_code, **hub_kwargs, **config_overrides
            )
            saved_attributes = gaussian_settings(config).get("attributes")
            # A reward model has one output per attribute (one by default), whatever the checkpoint's head had (base
            # LMs default to 2 labels).
            config.num_labels = kwargs.pop("num_labels", len(attributes or saved_attributes or [None]))
        saved_as_gaussian = is_gaussian_config(config)
        prepare_gaussian_config(config, variance_floor, attributes)
        repo_id = str(pretrained_model_name_or_path)
        model_class = cls.class_for(config, trust_remote_code, repo_id=repo_id, **hub_kwargs)
        model, info = model_class.from_pretrained(
            pretrained_model_name_or_path, *model_args, config=config, output_loading_info=True, **kwargs
        )
        if model.__dict__.pop("_missing_variance_head", False) and saved_as_gaussian:
            # Its config promises a trained σ; a fresh head would silently report σ² = 1 for every response.
            raise ValueError(
                f"{pretrained_model_name_or_path} is configured as a Gaussian reward model (`gaussian_reward` in "
                "config.json) but its weights have no `variance_head.*` tensors, so it has no trained σ. Load "
                "it with AutoModelForSequenceClassification (μ only), or restore the variance head's weights."
            )
        model.fresh_heads = _fresh_heads(info["missing_keys"], saved_as_gaussian)
        if "variance" in model.fresh_heads:
            logger.info("No variance head in %s: initialised to σ² = 1.", pretrained_model_name_or_path)
        return model

    # ------------------------------------------------------------------------------------------------ transformers
    # The variance head is expected to be missing from non-Gaussian checkpoints; `from_pretrained` reports it.
    _keys_to_ignore_on_load_missing = [r"^variance_head\."]

    def _adjust_missing_and_unexpected_keys(self, loading_info) -> None:
        # Seen before the ignore pattern above hides the missing head from `missing_keys`.
        self._missing_variance_head = any(key.startswith("variance_head.") for key in loading_info.missing_keys)
        super()._adjust_missing_and_unexpected_keys(loading_info)

    def _init_weights(self, module):
        if isinstance(module, VarianceHead):
            module.reset_parameters()
        else:
            super()._init_weights(module)

    def save_pretrained(self, save_directory, *args, **kwargs):
        super().save_pretrained(save_directory, *args, **kwargs)
        # transformers records the runtime class name; consumers without trl_anchor (AutoModel, vLLM, TGI) need the
        # backbone's own class there.
        self.config.architectures = [self._backbone_class.__name__]
        if self.is_remote_code():  # transformers shipped the backbone's code file; point `auto_map` at its class
            module = self._backbone_class.__module__.split(".")[-1]
            self.config.auto_map[self._auto_class] = f"{module}.{self._backbone_class.__name__}"
        if kwargs.get("is_main_process", True):
            self.config.save_pretrained(save_directory)

    # ----------------------------------------------------------------------------------------------------- forward
    def forward(self, input_ids=None, attention_mask=None, sequence_ends=None, **kwargs) -> GaussianRewardModelOutput:
        """Arguments as for the backbone's sequence-classification forward, plus `sequence_ends` for padding-free
        batches (`trl_anchor.models.packing`): the flat index `row * width + column` of the token each packed
        sequence's μ and σ² are read at; the outputs then have one row per sequence. Without it, σ² is read where the
        backbone reads μ (`trl_anchor.models.pooling.reward_token_index` for decoders)."""
        captured = {}

        def capture_head(_module, inputs, output):
            captured["h"], captured["logits"] = inputs[0], output

        handle = reward_head(self).register_forward_hook(capture_head)
        try:
            outputs = super().forward(input_ids=input_ids, attention_mask=attention_mask, **kwargs)
        finally:
            handle.remove()
        hidden = captured["h"]
        logits = outputs.logits
        if sequence_ends is not None:
            hidden, logits = _at_sequence_ends(self, hidden, captured["logits"], sequence_ends)
        elif hidden.dim() == 3:  # the reward head runs on every position (causal LMs): pool exactly as it does
            if input_ids is None:  # as transformers: without token ids padding is invisible; read the last position
                index = torch.full((hidden.shape[0],), hidden.shape[1] - 1, device=hidden.device)
            else:
                index = reward_token_index(input_ids, self.config.get_text_config().pad_token_id).to(hidden.device)
            hidden = hidden[torch.arange(hidden.shape[0], device=hidden.device), index]
        variance = self.variance_head(hidden)
        mean = logits.squeeze(-1) if logits.shape[-1] == 1 else logits
        return GaussianRewardModelOutput(
            loss=outputs.loss,
            logits=logits,
            mean=mean.float(),
            variance=variance,
            std=variance.sqrt(),
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )

    # ------------------------------------------------------------------------------------------------- metadata
    @property
    def gaussian_settings(self) -> dict[str, Any]:
        """The `config.gaussian_reward` record (variance floor, anchors, λ, normalisation statistics)."""
        return gaussian_settings(self.config)

    def record_training_settings(self, **settings: Any) -> None:
        """Store training facts (thresholds, λ, anchor source, ...) in `config.gaussian_reward`."""
        self.config.gaussian_reward = {**gaussian_settings(self.config), **settings}


_GAUSSIAN_CLASSES: dict[type, type] = {}
_GAUSSIAN_PREFIX = "Gaussian"


def __getattr__(name: str) -> type:
    # The `Gaussian<Backbone>ForSequenceClassification` classes are generated on demand; resolving them by name here
    # lets pickle (`torch.save(model)`, multiprocessing) find them, also in a process that has not generated them yet.
    backbone_name = name.removeprefix(_GAUSSIAN_PREFIX)
    if name.startswith(_GAUSSIAN_PREFIX) and backbone_name.endswith("ForSequenceClassification"):
        import transformers

        backbone = getattr(transformers, backbone_name, None)
        if backbone is not None:
            return GaussianRewardModel.class_for(backbone.config_class())
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def gaussian_class(backbone: type) -> type:
    """The `Gaussian<Backbone>` subclass of a sequence-classification class (created once per backbone)."""
    if backbone not in _GAUSSIAN_CLASSES:
        # A remote-code class lives in its own module: transformers copies that module's file next to a saved
        # checkpoint, so the Gaussian subclass claims it too.
        module = backbone.__module__ if backbone.is_remote_code() else __name__
        _GAUSSIAN_CLASSES[backbone] = type(
            f"Gaussian{backbone.__name__}", (GaussianRewardModel, backbone),
            {"_backbone_class": backbone, "__module__": module},
        )
    return _GAUSSIAN_CLASSES[backbone]


def sequence_classification_class(
    config: PretrainedConfig, trust_remote_code: bool | None = False, repo_id: str | None = None, **hub_kwargs
) -> type:
    """The class `AutoModelForSequenceClassification` instantiates for `config`, `auto_map` (remote code) included."""
    auto_class = "AutoModelForSequenceClassification"
    class_ref = (getattr(config, "auto_map", None) or {}).get(auto_class)
    has_local_code = type(config) in MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING
    if class_ref is not None:
        repo_id = repo_id or config.name_or_path
        upstream_repo = class_ref.split("--")[0] if "--" in class_ref else None
        # Raises transformers' own "contains custom code" error when remote code is needed but not trusted.
        if resolve_trust_remote_code(trust_remote_code, repo_id, has_local_code, True, upstream_repo=upstream_repo):
            if upstream_repo is not None:
                repo_id, class_ref = class_ref.split("--")
            backbone = get_class_from_dynamic_module(class_ref, repo_id, **hub_kwargs)
            backbone.register_for_auto_class(auto_class)
            return backbone
    if not has_local_code:
        raise ValueError(
            f"Model type `{config.model_type}` has no AutoModelForSequenceClassification class; "
            "GaussianRewardModel wraps backbones that transformers can load for sequence classification."
        )
    return MODEL_FOR_SEQUENCE_CLASSIFICATION_MAPPING[type(config)]


def _at_sequence_ends(model, hidden, position_logits, sequence_ends):
    # Packed rows hold several sequences, so the backbone's own one-per-row pooling is meaningless; the per-position
    # head input and output are read at each sequence's last token instead.
    if hidden.dim() != 3:
        raise ValueError(
            "Padding-free batches (`sequence_ends`) need a reward head that reads every position (decoder backbones); "
            f"{type(model).__name__} pools before its head. Train it with padding (`padding_free=False`)."
        )
    index = sequence_ends.to(hidden.device)
    return hidden.flatten(0, 1)[index], position_logits.flatten(0, 1)[index]


def _fresh_heads(missing_keys, gaussian_checkpoint: bool) -> set[str]:
    # A Gaussian checkpoint always holds its variance head (a missing one is not reported: it is in
    # `_keys_to_ignore_on_load_missing`). The mean head is `score` (decoders) or `classifier` (encoders).
    fresh = set() if gaussian_checkpoint else {"variance"}
    if any(key.startswith(("score.", "classifier.")) for key in missing_keys):
        fresh.add("mean")
    return fresh
