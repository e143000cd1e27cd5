"""Variance-aware rewards: the scalar an RL algorithm or a best-of-N selector maximises, from a Gaussian reward
model's mean μ and standard deviation σ.

One `RewardTransform` serves PPO (`trl_anchor.rewards.ppo`), GRPO/RLOO (`trl_anchor.rewards.reward_function`),
best-of-N and the CLI, so every consumer computes, say, the 10% quantile the same way. Kinds:

| spec                        | reward                                   |
|-----------------------------|------------------------------------------|
| `mean`                      | μ                                        |
| `quantile:<q>`              | μ + Φ⁻¹(q)·σ, 0 < q < 1                  |
| `random_quantile:<lo>:<hi>` | μ + Φ⁻¹(q)·σ with q ~ U(lo, hi) per sample |
| `lcb:<κ>`                   | μ − κ·σ, κ ≥ 0                           |
| `variance_penalty:<β>`      | μ − β·σ², β ≥ 0                          |
| `expected_class`            | E[anchor class] = Σ_j j·π_j(μ, σ), 0…K   |
| `p_top`                     | P(top anchor class) = π_K(μ, σ)          |

`expected_class` and `p_top` read the anchor thresholds τ the model was trained with (`bind(model)`) and the class
probabilities π_j of `trl_anchor.losses.ordinal_log_probs`: for crowd-vote anchors, the expected vote (minus one) and
P(funny). Unlike μ they use σ: a response with an uncertain reward has a lower expected class when it sits above the
top threshold and a higher one below it.

Options follow the kind, comma-separated: `normalize` standardises μ and σ with statistics recorded in the reward
model's config (`record_reward_statistics`) before the kind is applied, so κ, β and clipping bounds are in units of
the reward's spread over a reference set; `clip:<c>` or `clip:<lo>:<hi>` clips the final reward; `seed:<n>` makes
`random_quantile` draws reproducible. Example: `"quantile:0.1,normalize,clip:5"`.

Multi-attribute reward models (μ, σ ∈ R^A, e.g. HelpSteer2's five attributes) are first combined into one Gaussian
reward `r = Σ_a w_a μ_a` with `σ_r² = Σ_a w_a² σ_a²` (attributes independent given the response), then the kind is
applied to (r, σ_r). The option `weights:<w_1>:…:<w_A>` sets w (colon-separated like `clip`, since commas separate
options); without it `bind(model)` takes the weights recorded in the model's config (`attribute_weights`). Example:
`"quantile:0.1,weights:0.65:0.8:0.45:0.55:-0.4"`: the 10% quantile of NVIDIA's HelpSteer2 combination.
"""

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch

from ..anchors import validate_thresholds
from ..losses import ordinal_log_probs
from ..models.configuration_gaussian import (
    GAUSSIAN_CONFIG_KEY,
    anchor_scale,
    attribute_record,
    gaussian_settings,
    is_gaussian_config,
)
from .normalization import NORMALIZATION_KEY, check_statistics

# Parameters of each kind, in the order the spec string lists them.
_KIND_PARAMS: dict[str, tuple[str, ...]] = {
    "mean": (),
    "quantile": ("q",),
    "random_quantile": ("q_low", "q_high"),
    "lcb": ("kappa",),
    "variance_penalty": ("beta",),
    "expected_class": (),
    "p_top": (),
}
# Kinds computed from the anchor class probabilities: they need the model's anchor thresholds.
_ANCHOR_KINDS = ("expected_class", "p_top")
_ALL_PARAMS = tuple(dict.fromkeys(p for params in _KIND_PARAMS.values() for p in params))
_SPEC_GRAMMAR = (
    "<kind>[,normalize][,clip:<c>|clip:<low>:<high>][,seed:<int>][,weights:<w1>:…:<wA>] with <kind> one of `mean`, "
    "`quantile:<q>`, `random_quantile:<low>:<high>`, `lcb:<kappa>`, `variance_penalty:<beta>`, `expected_class`, "
    "`p_top`"
)
# Data-parallel ranks offset the seed by a prime, as TRL's online trainers do for their local seeds, so ranks draw
# independent quantile levels.
_PROCESS_SEED_STRIDE = 100003

Array = torch.Tensor | np.ndarray


@dataclass
class RewardTransform:
    """A reward computed from a Gaussian reward model's (μ, σ); see the module docstring for the kinds and options.

    Args:
        kind (`str`, defaults to `"mean"`): `mean`, `quantile`, `random_quantile`, `lcb` or `variance_penalty`.
        q (`float`, *optional*): quantile level of `quantile`, in (0, 1).
        q_low, q_high (`float`, *optional*): bounds of the uniform quantile level of `random_quantile`,
            0 < q_low < q_high < 1.
        kappa (`float`, *optional*): number of standard deviations `lcb` subtracts, κ ≥ 0.
        beta (`float`, *optional*): weight of the variance `variance_penalty` subtracts, β ≥ 0.
        normalize (`bool`, defaults to `False`): standardise μ and σ with the reward statistics recorded in the model
            config before applying the kind; call `bind(model)` to load them.
        clip (`float` or `(low, high)`, *optional*): clip the final reward to [−c, c] or [low, high].
        seed (`int`, *optional*): seed of the quantile-level generator of `random_quantile`; without it the levels
            come from torch's global generator (which `transformers.set_seed` seeds).
        normalization (`dict`, *optional*): `{"mean": m, "std": s}` used by `normalize`; filled by `bind`.
        weights (`tuple[float]`, *optional*): attribute weights w of a multi-attribute model; μ and σ with a last
            dimension of size A are combined into `wᵀμ` and `sqrt(Σ w_a² σ_a²)` first. `bind` fills them from the
            model's config.
        thresholds (`list[float]`, *optional*): anchor thresholds τ of `expected_class` and `p_top`; filled by `bind`
            from the model's `config.gaussian_reward["anchor_thresholds"]`.
        group_variance (`float`, *optional*, defaults to `0.0`): `s²` of a model trained with anchor groups
            (`trl_anchor.trainer.anchor_groups`): `expected_class` and `p_top` read the classes of N(μ, σ² + s²), a
            response of a new group; filled by `bind`.
        mean_offset (`float`, *optional*, defaults to `0.0`): `anchor_mean_offset` μ₀ of a model whose mean head
            has no bias (`trl_anchor.trainer.head_init`): `expected_class` and `p_top` read the classes of
            N(μ + μ₀, σ²); filled by `bind`.

    Example:

    ```python
    >>> import torch
    >>> from trl_anchor import RewardTransform

    >>> transform = RewardTransform.parse("quantile:0.1")
    >>> transform(torch.tensor([1.0, 1.0]), torch.tensor([0.0, 2.0]))
    tensor([ 1.0000, -1.5631])
    >>> str(RewardTransform(kind="lcb", kappa=1.0, clip=5.0))
    'lcb:1.0,clip:-5.0:5.0'
    ```
    """

    kind: str = "mean"
    q: float | None = None
    q_low: float | None = None
    q_high: float | None = None
    kappa: float | None = None
    beta: float | None = None
    normalize: bool = False
    clip: float | tuple[float, float] | None = None
    seed: int | None = None
    normalization: dict[str, float] | None = None
    weights: tuple[float, ...] | None = None
    thresholds: list[float] | None = None
    group_variance: float = 0.0
    mean_offset: float = 0.0
    _generator: torch.Generator | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self):
        if self.kind not in _KIND_PARAMS:
            raise ValueError(f"Unknown reward transform kind {self.kind!r}; expected one of {list(_KIND_PARAMS)}.")
        self._check_params()
        if self.clip is not None:
            self.clip = _as_clip_bounds(self.clip)
        if self.seed is not None:
            if self.kind != "random_quantile":
                raise ValueError(f"`seed` only applies to kind 'random_quantile', not {self.kind!r}.")
            self._generator = torch.Generator().manual_seed(int(self.seed))
        if self.normalization is not None:
            self.normalization = check_statistics(self.normalization, "`normalization`")
        if self.weights is not None:
            self.weights = tuple(float(w) for w in self.weights)
            if not self.weights or not all(math.isfinite(w) for w in self.weights):
                raise ValueError(f"`weights` must be finite numbers, at least one, got {self.weights}.")
        if self.thresholds is not None:
            self.thresholds = validate_thresholds(self.thresholds)
        if not (0 <= self.group_variance < math.inf) or (self.group_variance and not self.needs_thresholds):
            raise ValueError(
                f"`group_variance` must be finite and ≥ 0, and only applies to 'expected_class' / 'p_top'; got "
                f"{self.group_variance} for {self.kind!r}."
            )
        if not math.isfinite(self.mean_offset) or (self.mean_offset and not self.needs_thresholds):
            raise ValueError(
                f"`mean_offset` must be finite, and only applies to 'expected_class' / 'p_top'; got "
                f"{self.mean_offset} for {self.kind!r}."
            )
        if self.needs_thresholds and self.normalize:
            raise ValueError(f"`normalize` does not apply to {self.kind!r}: the anchor thresholds fix its scale.")
        if self.needs_thresholds and self.weights is not None:
            # A weighted sum of attributes has no anchor thresholds of its own to read classes from.
            raise ValueError(f"{self.kind!r} reads one anchored reward; it does not combine attribute weights.")

    def _check_params(self) -> None:
        expected = _KIND_PARAMS[self.kind]
        for name in _ALL_PARAMS:
            value = getattr(self, name)
            if name in expected and value is None:
                raise ValueError(f"Reward transform kind {self.kind!r} needs `{name}`.")
            if name not in expected and value is not None:
                raise ValueError(f"`{name}` does not apply to reward transform kind {self.kind!r}.")
            if value is not None and not math.isfinite(value):
                raise ValueError(f"`{name}` must be finite, got {value}.")
        if self.kind == "quantile" and not 0.0 < self.q < 1.0:
            raise ValueError(f"Quantile level `q` must lie strictly between 0 and 1, got {self.q}.")
        if self.kind == "random_quantile" and not 0.0 < self.q_low < self.q_high < 1.0:
            raise ValueError(
                f"Random quantile levels need 0 < q_low < q_high < 1, got q_low={self.q_low}, q_high={self.q_high}."
            )
        if self.kind == "lcb" and self.kappa < 0:
            raise ValueError(
                f"`kappa` must be ≥ 0 (μ − κσ is a lower bound), got {self.kappa}; an optimistic reward is a quantile "
                "with q > 0.5."
            )
        if self.kind == "variance_penalty" and self.beta < 0:
            raise ValueError(f"`beta` must be ≥ 0, got {self.beta}.")

    # --------------------------------------------------------------------------------------------------- parsing
    @classmethod
    def parse(cls, spec: "str | RewardTransform") -> "RewardTransform":
        """Build a transform from a spec string such as `"random_quantile:0.05:0.5,seed:0"` (a transform passes
        through unchanged)."""
        if isinstance(spec, RewardTransform):
            return spec
        if not isinstance(spec, str) or not spec.strip():
            raise ValueError(f"A reward transform spec must be a non-empty string ({_SPEC_GRAMMAR}), got {spec!r}.")
        try:
            return cls(**_parse_spec(spec))
        except ValueError as error:
            raise ValueError(f"Invalid reward transform {spec!r}: {error} Expected {_SPEC_GRAMMAR}.") from None

    def __str__(self) -> str:
        parts = [":".join([self.kind, *(repr(float(getattr(self, p))) for p in _KIND_PARAMS[self.kind])])]
        if self.normalize:
            parts.append("normalize")
        if self.clip is not None:
            parts.append(f"clip:{self.clip[0]!r}:{self.clip[1]!r}")
        if self.seed is not None:
            parts.append(f"seed:{self.seed}")
        if self.weights is not None:
            parts.append(":".join(["weights", *(repr(w) for w in self.weights)]))
        return ",".join(parts)

    # ---------------------------------------------------------------------------------------------- properties
    @property
    def needs_std(self) -> bool:
        """Whether the reward depends on σ (every kind but `mean`)."""
        return self.kind != "mean"

    @property
    def needs_thresholds(self) -> bool:
        """Whether the reward needs the model's anchor thresholds (`expected_class`, `p_top`; see `bind`)."""
        return self.kind in _ANCHOR_KINDS

    @property
    def is_random(self) -> bool:
        return self.kind == "random_quantile"

    # ------------------------------------------------------------------------------------------- normalisation
    def bind(self, model_or_config: Any) -> "RewardTransform":
        """Load what the reward model's config records: the attribute weights of a multi-attribute model (unless
        given), the anchor thresholds, group variance and mean offset (`expected_class`, `p_top`) and, with
        `normalize`, the normalisation statistics."""
        config = getattr(model_or_config, "config", model_or_config)
        transform = self._bind_weights(config)
        if transform.needs_thresholds and transform.thresholds is None:
            thresholds = _recorded_thresholds(config, str(transform))
            transform = replace(transform, thresholds=thresholds, **anchor_scale(gaussian_settings(config)))
        if not transform.normalize:
            return transform
        return transform._bind_normalization(config)

    def _bind_weights(self, config: Any) -> "RewardTransform":
        settings = attribute_record(config) or {}
        attributes = settings.get("attributes")
        if attributes is None or len(attributes) == 1:  # one output: μ and σ are already the reward's
            if self.weights is not None:
                raise ValueError(
                    f"Reward transform {str(self)!r} has attribute weights, but the model has one output."
                )
            return self
        if self.needs_thresholds:
            raise ValueError(
                f"Reward transform {str(self)!r} reads the anchor classes of one reward; the model rates "
                f"{len(attributes)} attributes {attributes}."
            )
        if self.weights is None:
            weights = settings.get("attribute_weights")
            if weights is None:
                raise ValueError(
                    f"The model rates {len(attributes)} attributes {attributes} and its config records no "
                    "`attribute_weights`; add `weights:<w1>:…` to the reward transform."
                )
            return replace(self, weights=tuple(weights))
        if len(self.weights) != len(attributes):
            raise ValueError(
                f"Got {len(self.weights)} weights for the model's {len(attributes)} attributes {attributes}."
            )
        return self

    def _bind_normalization(self, config: Any) -> "RewardTransform":
        recorded = gaussian_settings(config).get(NORMALIZATION_KEY) if is_gaussian_config(config) else None
        if recorded is None:
            raise ValueError(
                f"Reward transform {str(self)!r} normalises rewards, but `config.{GAUSSIAN_CONFIG_KEY}` has no "
                f"{NORMALIZATION_KEY!r} record. Score a reference set of responses and call "
                "`trl_anchor.record_reward_statistics(model, scores.mean)` (and save the model) first."
            )
        return replace(self, normalization=recorded)

    def for_process(self, process_index: int) -> "RewardTransform":
        """The transform a data-parallel rank should use: seeded draws get an independent stream per rank."""
        if self.seed is None or process_index == 0:
            return self
        return replace(self, seed=self.seed + _PROCESS_SEED_STRIDE * process_index)

    def for_current_process(self) -> "RewardTransform":
        """`for_process` with this process's data-parallel rank (0 outside `accelerate launch`/torchrun)."""
        if self.seed is None:
            return self
        from accelerate import PartialState

        return self.for_process(PartialState().process_index)

    # ------------------------------------------------------------------------------------------------ applying
    def quantile_levels(self, num_samples: int) -> torch.Tensor:
        """Draw `num_samples` quantile levels q ~ U(q_low, q_high) (float64, CPU, so a seed reproduces them on any
        device)."""
        if not self.is_random:
            raise ValueError(f"Reward transform {str(self)!r} has no random quantile levels to draw.")
        uniform = torch.rand(num_samples, generator=self._generator, dtype=torch.float64)
        return self.q_low + (self.q_high - self.q_low) * uniform

    def __call__(self, mean: Array, std: Array | None = None, *, quantile_levels: Array | None = None) -> Array:
        """The reward for each sample: a torch tensor for tensor inputs, a numpy array for array inputs.

        `mean` and `std` broadcast together; `random_quantile` uses one level per index of the first dimension (one
        per sequence for per-position `(batch, length)` inputs), drawn here unless `quantile_levels` is given.
        """
        if not isinstance(mean, torch.Tensor):
            std = None if std is None else _to_tensor(std)
            levels = None if quantile_levels is None else _to_tensor(quantile_levels)
            return self(_to_tensor(mean), std, quantile_levels=levels).numpy()
        dtype = torch.promote_types(mean.dtype, torch.float32)
        mean = mean.to(dtype)
        if std is not None:
            std = std.to(device=mean.device, dtype=dtype)
            _check_std(std)
        elif self.needs_std:
            raise ValueError(
                f"Reward transform {str(self)!r} needs the standard deviation σ, which a non-Gaussian reward model "
                "does not predict; use `mean` or a GaussianRewardModel."
            )
        if self.weights is not None:
            mean, std = self._combine(mean, std)
        if self.normalize:
            mean, std = self._standardize(mean, std)
        reward = self._apply_kind(mean, std, quantile_levels)
        if self.clip is not None:
            reward = reward.clamp(self.clip[0], self.clip[1])
        return reward

    def _combine(self, mean: torch.Tensor, std: torch.Tensor | None):
        # r = wᵀμ; σ_r² = Σ w_a² σ_a² treats the attributes' noise as independent given the response.
        if mean.shape[-1:] != (len(self.weights),):
            raise ValueError(
                f"Reward transform {str(self)!r} combines {len(self.weights)} attributes, but μ has shape "
                f"{tuple(mean.shape)} (the attributes must be its last dimension)."
            )
        weights = torch.tensor(self.weights, dtype=mean.dtype, device=mean.device)
        combined_std = None if std is None else (std.square() * weights.square()).sum(-1).sqrt()
        return mean @ weights, combined_std

    def _standardize(self, mean: torch.Tensor, std: torch.Tensor | None):
        if self.normalization is None:
            raise ValueError(
                f"Reward transform {str(self)!r} normalises rewards but holds no statistics; call "
                "`transform.bind(reward_model)` to load those recorded in its config."
            )
        center, scale = self.normalization["mean"], self.normalization["std"]
        return (mean - center) / scale, None if std is None else std / scale

    def _apply_kind(self, mean, std, quantile_levels) -> torch.Tensor:
        if quantile_levels is not None and not self.is_random:
            raise ValueError(f"`quantile_levels` only apply to 'random_quantile', not {str(self)!r}.")
        if self.kind == "mean":
            return mean
        if self.needs_thresholds:
            return self._anchor_reward(mean, std)
        if self.kind == "quantile":
            return mean + _standard_normal_quantile(torch.tensor(self.q, dtype=torch.float64), mean) * std
        if self.kind == "random_quantile":
            return mean + self._random_z(mean, quantile_levels) * std
        if self.kind == "lcb":
            return mean - self.kappa * std
        return mean - self.beta * std.square()

    def _anchor_reward(self, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        if self.thresholds is None:
            raise ValueError(
                f"Reward transform {str(self)!r} needs the anchor thresholds; call `transform.bind(reward_model)` to "
                "load those recorded in its config."
            )
        std = std if self.group_variance == 0 else torch.sqrt(std.square() + self.group_variance)
        # μ + μ₀ against τ is μ against τ − μ₀; shifting the float64 thresholds keeps a bf16 μ from rounding μ₀.
        thresholds = torch.tensor(self.thresholds, dtype=torch.float64) - self.mean_offset
        probs = ordinal_log_probs(mean, std, thresholds).exp()
        if self.kind == "p_top":
            return probs[..., -1].to(mean.dtype)
        classes = torch.arange(probs.shape[-1], dtype=probs.dtype, device=probs.device)
        return (probs * classes).sum(-1).to(mean.dtype)

    def _random_z(self, mean: torch.Tensor, quantile_levels: Array | None) -> torch.Tensor:
        num_samples = mean.shape[0] if mean.dim() > 0 else 1
        if quantile_levels is None:
            quantile_levels = self.quantile_levels(num_samples)
        levels = torch.as_tensor(quantile_levels, dtype=torch.float64).reshape(-1)
        if levels.numel() != num_samples:
            raise ValueError(f"Got {levels.numel()} quantile levels for {num_samples} samples.")
        if not bool(((levels > 0) & (levels < 1)).all()):
            raise ValueError("Quantile levels must lie strictly between 0 and 1.")
        z = _standard_normal_quantile(levels, mean)
        return z.reshape(num_samples, *([1] * (mean.dim() - 1))) if mean.dim() > 0 else z.reshape(())


def _check_std(std: torch.Tensor) -> None:
    # A negative or NaN σ is a broken model or a mix-up with μ; `lcb` would otherwise return μ + κ|σ|.
    bad = ~((std >= 0) & torch.isfinite(std))
    if bool(bad.any()):
        index = bad.flatten().nonzero()[0].item()
        raise ValueError(
            f"σ must be finite and ≥ 0; {int(bad.sum())} value(s) are not (first at flat index {index}: "
            f"{std.flatten()[index].item()})."
        )


def _standard_normal_quantile(levels: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    # Φ⁻¹ in float64 then cast: the levels are exact user inputs and ndtri is cheap.
    return torch.special.ndtri(levels.to(torch.float64)).to(device=like.device, dtype=like.dtype)


def _to_tensor(values: Any) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values, dtype=np.float64))


def _as_clip_bounds(clip: float | tuple[float, float] | list[float]) -> tuple[float, float]:
    if isinstance(clip, (int, float)):
        if not clip > 0:
            raise ValueError(f"A symmetric `clip` must be positive, got {clip}.")
        return (-float(clip), float(clip))
    low, high = (float(bound) for bound in clip)
    if not low < high:
        raise ValueError(f"`clip` bounds need low < high, got ({low}, {high}).")
    return (low, high)


def _parse_number(text: str, what: str, kind=float):
    try:
        return kind(text)
    except ValueError:
        raise ValueError(f"{what} must be a number, got {text!r}.") from None


def _parse_spec(spec: str) -> dict[str, Any]:
    head, *options = [part.strip() for part in spec.split(",")]
    kind, *args = head.split(":")
    if kind not in _KIND_PARAMS:
        raise ValueError(f"unknown kind {kind!r}.")
    names = _KIND_PARAMS[kind]
    if len(args) != len(names):
        wanted = ", ".join(names) or "none"
        raise ValueError(f"kind {kind!r} takes {len(names)} parameter(s) ({wanted}), got {len(args)}.")
    kwargs: dict[str, Any] = {"kind": kind}
    kwargs.update({name: _parse_number(arg, f"`{name}`") for name, arg in zip(names, args, strict=True)})
    for option in options:
        key, *values = option.split(":")
        if key == "normalize" and not values:
            kwargs["normalize"] = True
        elif key == "clip" and len(values) in (1, 2):
            bounds = [_parse_number(value, "`clip`") for value in values]
            kwargs["clip"] = bounds[0] if len(bounds) == 1 else tuple(bounds)
        elif key == "seed" and len(values) == 1:
            kwargs["seed"] = _parse_number(values[0], "`seed`", int)
        elif key == "weights" and values:
            kwargs["weights"] = tuple(_parse_number(value, "`weights`") for value in values)
        else:
            raise ValueError(f"unknown option {option!r}.")
    return kwargs


def _recorded_thresholds(config: Any, spec: str) -> list[float]:
    thresholds = gaussian_settings(config).get("anchor_thresholds") if is_gaussian_config(config) else None
    if thresholds is None:
        raise ValueError(
            f"Reward transform {spec!r} needs anchor thresholds, but `config.{GAUSSIAN_CONFIG_KEY}` records none: the "
            "model was trained without anchors. Use `mean`, `quantile:<q>` or `lcb:<kappa>`."
        )
    return list(thresholds)
