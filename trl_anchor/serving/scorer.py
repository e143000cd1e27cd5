"""The served reward model: loading without pickle or remote code, and scoring by the rules of
`trl_anchor.rewards.scoring`, so a served score equals a direct `score_responses` call on the same text."""

import copy
from typing import Any

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from .. import __version__
from ..models.configuration_gaussian import anchor_scale, gaussian_settings
from ..models.modeling_gaussian import GaussianRewardModel
from ..rewards.normalization import NORMALIZATION_KEY
from ..rewards.scoring import Text, _attribute_names, position_limit, score_responses, tokenize_response
from .config import OVER_LENGTH_POLICIES

# Tokenizers report `model_max_length` ≈ 1e30 when the limit is unknown.
_UNKNOWN_LENGTH = 10**9
DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def model_position_limit(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> int | None:
    """The longest sequence the model can embed: its learned position table (`score_responses`' default truncation,
    `position_limit`), the configured maximum of rotary models, or the tokenizer's `model_max_length`."""
    config = model.config.get_text_config()
    configured = (getattr(config, key, None) for key in ("max_position_embeddings", "n_positions"))
    limits = [position_limit(model), *configured]
    limits = [int(limit) for limit in limits if isinstance(limit, int) and limit > 0]
    if tokenizer.model_max_length and tokenizer.model_max_length < _UNKNOWN_LENGTH:
        limits.append(int(tokenizer.model_max_length))
    return min(limits) if limits else None


class RewardScorer:
    """A reward model and its tokenizer, scored exactly as `score_responses` scores.

    Two tokenizer copies keep fast (Rust) tokenizers out of each other's way: `count_tokens` runs on the request
    path, `score` on the batcher's worker thread, and each copy is used by one thread only.

    Args:
        model (`PreTrainedModel`): a `GaussianRewardModel` (μ and σ) or a plain sequence-classification reward model
            (μ only).
        tokenizer (`PreTrainedTokenizerBase`): the reward model's own tokenizer and chat template.
        max_tokens_per_item (`int`, *optional*): longest sequence; defaults to the model's position limit.
        over_length (`str`, defaults to `"truncate"`): `truncate` scores longer sequences with
            `score_responses(max_length=max_tokens_per_item)`; `reject` makes `check_lengths` refuse them.
        name (`str`, *optional*): the model name `/info` reports.
    """

    def __init__(
        self,
        model: PreTrainedModel,
        tokenizer: PreTrainedTokenizerBase,
        max_tokens_per_item: int | None = None,
        over_length: str = "truncate",
        name: str | None = None,
    ):
        if over_length not in OVER_LENGTH_POLICIES:
            raise ValueError(f"`over_length` must be one of {OVER_LENGTH_POLICIES}, got {over_length!r}.")
        limit = model_position_limit(model, tokenizer)
        if max_tokens_per_item is None:
            if limit is None:
                raise ValueError("The model declares no position limit; pass `max_tokens_per_item`.")
            max_tokens_per_item = limit
        elif limit is not None and max_tokens_per_item > limit:
            raise ValueError(
                f"`max_tokens_per_item`={max_tokens_per_item} exceeds the model's position limit of {limit} tokens."
            )
        self.model = model.eval()
        self.tokenizer = tokenizer
        self._request_tokenizer = copy.deepcopy(tokenizer)
        self.max_tokens_per_item = max_tokens_per_item
        self.over_length = over_length
        self.name = name or getattr(model.config, "_name_or_path", None) or type(model).__name__
        self.is_gaussian = isinstance(model, GaussianRewardModel)

    @classmethod
    def from_pretrained(
        cls, model_name_or_path: str, device: str | None = None, dtype: str = "auto", **kwargs
    ) -> "RewardScorer":
        """Load a saved reward model from safetensors only (no pickle) and never with remote code."""
        from ..models.loading import load_reward_model

        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if dtype == "auto":
            dtype = "bfloat16" if torch.device(device).type == "cuda" else "float32"
        if dtype not in DTYPES:
            raise ValueError(f"`dtype` must be 'auto' or one of {list(DTYPES)}, got {dtype!r}.")
        model, tokenizer = load_reward_model(
            model_name_or_path, device=device, dtype=DTYPES[dtype], use_safetensors=True, trust_remote_code=False
        )
        return cls(model, tokenizer, name=model_name_or_path, **kwargs)

    def count_tokens(self, responses: list[Text], prompts: list[Text | None]) -> list[int]:
        """Token counts of the sequences `score` will build (the request path's own tokenizer copy)."""
        return [
            len(tokenize_response(self._request_tokenizer, response, prompt))
            for response, prompt in zip(responses, prompts, strict=True)
        ]

    def score(self, items: list[tuple[Text, Text | None]]) -> list[tuple[float, float | None]]:
        """(μ, σ) of each (response, prompt) in one forward pass; σ is `None` for a non-Gaussian model."""
        responses = [response for response, _ in items]
        prompts = [prompt for _, prompt in items]
        scores = score_responses(
            self.model,
            self.tokenizer,
            responses,
            prompts if any(prompt is not None for prompt in prompts) else None,
            batch_size=len(items),
            max_length=self.max_tokens_per_item,
        )
        # A multi-attribute model gives one value per attribute (a list), a one-output model a float.
        means = scores.mean.tolist()
        if scores.std is None:
            return [(mean, None) for mean in means]
        return list(zip(means, scores.std.tolist(), strict=True))

    @property
    def attributes(self) -> list[str]:
        """The columns of `/score`: the attribute names of a multi-attribute model, else `["reward"]`."""
        return _attribute_names(self.model) or ["reward"]

    def info(self) -> dict[str, Any]:
        """What `/info` reports about the model."""
        settings = gaussian_settings(self.model.config) if self.is_gaussian else {}
        parameter = next(self.model.parameters())
        return {
            "model": self.name,
            "model_type": self.model.config.model_type,
            "reward_type": "gaussian" if self.is_gaussian else "scalar",
            "attributes": self.attributes,
            "anchor_thresholds": settings.get("anchor_thresholds"),
            # What μ and σ² need before they meet the thresholds (both 0 unless recorded; see `RewardScores`).
            **{f"anchor_{field}": value for field, value in anchor_scale(settings).items()},
            "reward_normalization": settings.get(NORMALIZATION_KEY),
            "variance_floor": settings.get("variance_floor"),
            "dtype": str(parameter.dtype).removeprefix("torch."),
            "device": str(parameter.device),
            "max_tokens_per_item": self.max_tokens_per_item,
            "over_length": self.over_length,
            "trl_anchor_version": __version__,
        }
