"""Gaussian reward models of (prompt, image) pairs on the CLIP dual-encoder family: μ ∈ R^A and σ² ∈ R^A per aspect.

`CLIPImageRewardModel` is the plain model: CLIP's text and image encoders, their projections L2-normalised (in
float32) and fused as `[t, v, t ⊙ v]` (so the CLIP score `tᵀv` is one linear direction of the features), and a linear
`score` head with one output per aspect. `GaussianCLIPImageRewardModel` is the same model through the
`GaussianRewardModel` mixin of `modeling_gaussian`: the same `VarianceHead`, float32 heads, σ² parameterisation,
output dataclass and `config.gaussian_reward` record as the text reward models, here with the rated aspects as
`attributes`, their `attribute_weights` and `attribute_thresholds` (the ordinal anchors of 1–5 ratings default to the
midpoints 1.5, 2.5, 3.5, 4.5, so μ is on the rating scale).

A saved directory is an ordinary `CLIPImageRewardModel` checkpoint plus the variance head's tensors; a CLIP
checkpoint (`CLIPModel`, e.g. `openai/clip-vit-base-patch32`) loads into it with fresh heads.
"""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from transformers import CLIPConfig, CLIPModel, CLIPPreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import SequenceClassifierOutput

from ..anchors import validate_thresholds
from .configuration_gaussian import attribute_names, gaussian_settings, is_gaussian_config, prepare_gaussian_config
from .modeling_gaussian import GaussianRewardModel

RATING_MIDPOINTS = (1.5, 2.5, 3.5, 4.5)  # thresholds between the ratings 1 … 5


def fuse_features(text_embeds: torch.Tensor, image_embeds: torch.Tensor) -> torch.Tensor:
    """`[t, v, t ⊙ v]` of the L2-normalised text and image embeddings, in float32 whatever the model dtype."""
    text = F.normalize(text_embeds.float(), dim=-1)
    image = F.normalize(image_embeds.float(), dim=-1)
    return torch.cat([text, image, text * image], dim=-1)


class _CLIPEncoders(CLIPModel):
    """`CLIPModel` whose contrastive temperature `logit_scale` is a buffer, not a parameter. It plays no part in the
    reward, and DeepSpeed cannot take a 0-dim parameter: ZeRO-2 fails broadcasting it, ZeRO-3's `zero.Init`
    partitioning it. The swap happens in this class's own `__init__` because `zero.Init` partitions a module's
    parameters as soon as its outermost `__init__` returns; the buffer keeps the key, so CLIP checkpoints load and
    saved models reload unchanged."""

    def __init__(self, config: CLIPConfig):
        super().__init__(config)
        logit_scale = self.logit_scale.detach().clone()
        del self.logit_scale
        self.register_buffer("logit_scale", logit_scale)


class CLIPImageRewardModel(CLIPPreTrainedModel):
    """A CLIP dual encoder with a linear reward head on the fused text–image features; `logits` has one column per
    aspect (`config.num_labels`). The backbone of `GaussianCLIPImageRewardModel`."""

    def __init__(self, config: CLIPConfig):
        super().__init__(config)
        self.clip = _CLIPEncoders._from_config(config)
        self.score = nn.Linear(3 * config.projection_dim, config.num_labels)
        self.post_init()

    def _init_weights(self, module):
        super()._init_weights(module)
        if module is getattr(self, "score", None):
            # CLIP's own scale for a head on its features (`CLIPForImageClassification`): fresh rewards of order one.
            init.normal_(module.weight, std=module.in_features**-0.5 * self.config.initializer_factor)
            init.zeros_(module.bias)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        pixel_values: torch.FloatTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput:
        if input_ids is None or pixel_values is None:
            raise ValueError("An image reward model needs `input_ids` (the prompt) and `pixel_values` (an image).")
        text = self.clip.get_text_features(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids
        )
        image = self.clip.get_image_features(pixel_values=pixel_values)
        logits = self.score(fuse_features(text.pooler_output, image.pooler_output))
        return SequenceClassifierOutput(logits=logits)


class GaussianCLIPImageRewardModel(GaussianRewardModel, CLIPImageRewardModel):
    """A Gaussian reward model of (prompt, image): per aspect a mean μ_a and a variance σ²_a.

    Example:

    ```python
    >>> import torch
    >>> from transformers import CLIPConfig
    >>> from trl_anchor.models.modeling_image_gaussian import GaussianCLIPImageRewardModel

    >>> text = {"vocab_size": 64, "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
    ...         "num_attention_heads": 2, "max_position_embeddings": 16, "bos_token_id": 0, "eos_token_id": 1}
    >>> vision = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
    ...           "image_size": 32, "patch_size": 8}
    >>> config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=8)
    >>> model = GaussianCLIPImageRewardModel.from_config(config, aspects=["aesthetic", "fidelity"])
    >>> out = model(input_ids=torch.tensor([[5, 6, 1]]), pixel_values=torch.zeros(1, 3, 32, 32))
    >>> out.mean.shape, out.variance.shape
    (torch.Size([1, 2]), torch.Size([1, 2]))
    ```
    """

    _backbone_class = CLIPImageRewardModel

    @classmethod
    def from_config(
        cls,
        config: CLIPConfig,
        aspects: Sequence[str] | None = None,
        aspect_weights: Sequence[float] | None = None,
        thresholds: Sequence[float] | Sequence[Sequence[float]] | None = None,
        variance_floor: float | None = None,
        **kwargs,
    ) -> "GaussianCLIPImageRewardModel":
        """A freshly initialised model; without `aspects` it predicts one scalar reward (num_labels = 1)."""
        prepare_image_reward_config(config, aspects, aspect_weights, thresholds, variance_floor)
        return cls(config, **kwargs)

    @classmethod
    def from_pretrained(
        cls,
        pretrained_model_name_or_path,
        *model_args,
        aspects: Sequence[str] | None = None,
        aspect_weights: Sequence[float] | None = None,
        thresholds: Sequence[float] | Sequence[Sequence[float]] | None = None,
        variance_floor: float | None = None,
        **kwargs,
    ) -> "GaussianCLIPImageRewardModel":
        """Load a saved image reward model (both heads restored, its aspects kept) or a CLIP checkpoint (`CLIPModel`)
        with fresh heads for `aspects`. Other keyword arguments go to `PreTrainedModel.from_pretrained`."""
        config = kwargs.pop("config", None)
        if config is None:
            hub_kwargs = {k: kwargs[k] for k in ("revision", "token", "cache_dir") if k in kwargs}
            config = CLIPConfig.from_pretrained(pretrained_model_name_or_path, **hub_kwargs)
        saved_as_gaussian = is_gaussian_config(config)
        prepare_image_reward_config(config, aspects, aspect_weights, thresholds, variance_floor)
        loaded = super().from_pretrained(pretrained_model_name_or_path, *model_args, config=config, **kwargs)
        if not saved_as_gaussian:  # a CLIP checkpoint: the variance head was created here (the trainer inits it)
            (loaded[0] if isinstance(loaded, tuple) else loaded).fresh_heads.add("variance")
        return loaded


def prepare_image_reward_config(
    config: CLIPConfig,
    aspects: Sequence[str] | None = None,
    aspect_weights: Sequence[float] | None = None,
    thresholds: Sequence[float] | Sequence[Sequence[float]] | None = None,
    variance_floor: float | None = None,
) -> None:
    """Record aspects (`attributes`), `attribute_weights` and `attribute_thresholds` in `config.gaussian_reward`.

    A saved config keeps what it records unless overridden. Weights default to 1/A; thresholds to the midpoints of
    1–5 ratings for every aspect (one list shared by all aspects, or one list per aspect)."""
    aspects = list(aspects) if aspects is not None else attribute_names(config)
    config.num_labels = 1 if aspects is None else len(aspects)
    prepare_gaussian_config(config, variance_floor, aspects)
    if aspects is None:
        if aspect_weights is not None or thresholds is not None:
            raise ValueError("`aspect_weights` and `thresholds` describe aspects; pass `aspects=[...]` as well.")
        return
    settings = gaussian_settings(config)
    weights = aspect_weights if aspect_weights is not None else settings.get("attribute_weights")
    weights = [float(w) for w in weights] if weights is not None else [1.0 / len(aspects)] * len(aspects)
    if len(weights) != len(aspects):
        raise ValueError(f"Got {len(weights)} `aspect_weights` for the aspects {aspects}.")
    if thresholds is None:
        thresholds = settings.get("attribute_thresholds", RATING_MIDPOINTS)
    per_aspect = thresholds if all(isinstance(t, (list, tuple)) for t in thresholds) else [thresholds] * len(aspects)
    if len(per_aspect) != len(aspects):
        raise ValueError(f"Got {len(per_aspect)} threshold lists for the aspects {aspects}.")
    settings["attribute_weights"] = weights
    settings["attribute_thresholds"] = [validate_thresholds(t) for t in per_aspect]
    config.gaussian_reward = settings
