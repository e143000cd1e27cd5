"""A variance-aware reward function for `GRPOTrainer` and `RLOOTrainer` (`reward_funcs=[...]`).

TRL calls a custom reward function as `func(prompts=..., completions=..., completion_ids=..., **columns)` with the
decoded completions, and moves nothing to a device for it. `GaussianRewardFunction` therefore re-tokenizes each
(prompt, completion) with the reward model's *own* tokenizer and chat template (they may differ from the policy's),
scores in batches on the trainer's device with `trl_anchor.rewards.scoring`, and returns `RewardTransform` rewards.
"""

from types import SimpleNamespace

import numpy as np
import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from ..models.configuration_gaussian import is_gaussian_config
from ..models.loading import load_config
from ..models.modeling_gaussian import GaussianRewardModel
from .scoring import Text, score_responses
from .transforms import RewardTransform


class GaussianRewardFunction:
    """Score completions with a (Gaussian) reward model and return variance-aware rewards, one float per completion.

    After each call, `last_mean`, `last_std`, `last_rewards` (numpy arrays) and, for `random_quantile`,
    `last_quantile_levels` hold what was computed. When the trainer passes its `log_metric`/`log_extra` hooks
    (TRL ≥ 1.15), the batch means of μ and σ are logged as `rewards/<name>/mu` and `rewards/<name>/sigma` and the
    per-completion values are added to the completions table.

    Args:
        model (`PreTrainedModel` or `str`): a `GaussianRewardModel` (any σ-based transform), a plain
            sequence-classification reward model (`transform="mean"` only), or a path/Hub id to load a
            `GaussianRewardModel` and its tokenizer from.
        tokenizer (`PreTrainedTokenizerBase`, *optional*): the reward model's tokenizer; loaded from `model` when
            that is a path.
        transform (`str` or `RewardTransform`, defaults to `"mean"`): e.g. `"quantile:0.1"` or
            `"random_quantile:0.05:0.5,seed:0"`.
        batch_size (`int`, defaults to `16`): reward-model batch size.
        max_length (`int`, *optional*): keep the last `max_length` tokens of longer sequences.
        name (`str`, *optional*): the name TRL logs the reward under (`rewards/<name>/mean`); defaults to one built
            from the transform, e.g. `gaussian_reward_quantile_0.1`.
        device (`str` or `torch.device`, *optional*): where to score; defaults to the trainer's device
            (`accelerate.PartialState().device`), resolved at the first call. A model loaded partitioned under
            DeepSpeed ZeRO-3 is instead wrapped in a DeepSpeed inference engine at the first call, as TRL does for
            reward models it loads itself.
        model_init_kwargs (`dict`, *optional*): keyword arguments of `GaussianRewardModel.from_pretrained` when
            `model` is a path (e.g. `{"dtype": "bfloat16"}`).

    Example:

    ```python
    >>> from trl import GRPOConfig, GRPOTrainer
    >>> from trl_anchor import GaussianRewardFunction

    >>> reward = GaussianRewardFunction("my-gaussian-rm", transform="quantile:0.1")
    >>> trainer = GRPOTrainer(model="Qwen/Qwen2.5-0.5B-Instruct", reward_funcs=[reward], args=GRPOConfig(...),
    ...                       train_dataset=prompts)
    ```
    """

    def __init__(
        self,
        model: PreTrainedModel | str,
        tokenizer: PreTrainedTokenizerBase | None = None,
        transform: str | RewardTransform = "mean",
        batch_size: int = 16,
        max_length: int | None = None,
        name: str | None = None,
        device: str | torch.device | None = None,
        model_init_kwargs: dict | None = None,
    ):
        if isinstance(model, str):
            path = model
            model = _load_model(path, model_init_kwargs or {})
            tokenizer = tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(path)
        elif model_init_kwargs:
            raise ValueError("`model_init_kwargs` only apply when `model` is a path or Hub id to load.")
        if tokenizer is None:
            raise ValueError("Pass the reward model's own `tokenizer`; completions are re-tokenized with it.")
        self.transform = RewardTransform.parse(transform)
        if self.transform.needs_std and not isinstance(model, GaussianRewardModel):
            raise ValueError(
                f"Reward transform {str(self.transform)!r} needs σ, but {type(model).__name__} is not a "
                "GaussianRewardModel; use transform='mean' or load the model with GaussianRewardModel.from_pretrained."
            )
        self.transform = self.transform.bind(model).for_current_process()
        if batch_size < 1:
            raise ValueError(f"`batch_size` must be a positive integer, got {batch_size}.")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.max_length = max_length
        self.device = device
        self._prepared = False
        self._deepspeed_engine = None
        self.__name__ = name or "gaussian_reward_" + str(self.transform).replace(":", "_").replace(",", "_")
        self.last_mean: np.ndarray | None = None
        self.last_std: np.ndarray | None = None
        self.last_rewards: np.ndarray | None = None
        self.last_quantile_levels: np.ndarray | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.__name__!r}, transform={str(self.transform)!r})"

    def __call__(
        self, prompts: list[Text] | None = None, completions: list[Text] | None = None, **kwargs
    ) -> list[float]:
        if completions is None:
            raise ValueError("GaussianRewardFunction needs `completions` (and usually `prompts`) to score.")
        self._place_model()
        scores = score_responses(
            self.model, self.tokenizer, completions, prompts, batch_size=self.batch_size, max_length=self.max_length
        )
        levels = self.transform.quantile_levels(len(completions)) if self.transform.is_random else None
        rewards = self.transform(scores.mean, scores.std, quantile_levels=levels)
        self.last_mean, self.last_std, self.last_rewards = scores.mean, scores.std, rewards
        self.last_quantile_levels = None if levels is None else levels.numpy()
        self._log(kwargs.get("log_metric"), kwargs.get("log_extra"))
        return rewards.tolist()

    def _place_model(self) -> None:
        # TRL prepares only `PreTrainedModel` reward funcs; a callable's model is ours to put on the trainer's device.
        if self._prepared:
            return
        if _is_zero3_partitioned(self.model):
            self._deepspeed_engine = _prepare_zero3(self.model)
        else:
            if self.device is None:
                from accelerate import PartialState

                self.device = PartialState().device
            self.model.to(self.device)
        self._prepared = True

    def _log(self, log_metric, log_extra) -> None:
        prefix = f"rewards/{self.__name__}"
        if log_metric is not None:
            log_metric(f"{prefix}/mu", float(self.last_mean.mean()))
            if self.last_std is not None:
                log_metric(f"{prefix}/sigma", float(self.last_std.mean()))
        if log_extra is not None:
            log_extra(f"{self.__name__}_mu", self.last_mean.tolist())
            if self.last_std is not None:
                log_extra(f"{self.__name__}_sigma", self.last_std.tolist())
            if self.last_quantile_levels is not None:
                log_extra(f"{self.__name__}_q", self.last_quantile_levels.tolist())


_HUB_KWARGS = ("revision", "token", "cache_dir", "trust_remote_code")


def _load_model(path: str, init_kwargs: dict) -> PreTrainedModel:
    # Only a checkpoint saved as Gaussian has a trained σ; any other loads as what it is (μ only), so a σ-based
    # transform is refused below instead of running on the σ² = 1 of a fresh variance head.
    hub_kwargs = {key: init_kwargs[key] for key in _HUB_KWARGS if key in init_kwargs}
    if is_gaussian_config(load_config(path, **hub_kwargs)):
        return GaussianRewardModel.from_pretrained(path, **init_kwargs)
    return AutoModelForSequenceClassification.from_pretrained(path, **init_kwargs)


def _is_zero3_partitioned(model: PreTrainedModel) -> bool:
    # Loaded after a ZeRO-3 `TrainingArguments`, `from_pretrained` partitions the weights across ranks (zero.Init);
    # such a model only runs inside a DeepSpeed engine.
    return any(hasattr(parameter, "ds_id") for parameter in model.parameters())


def _prepare_zero3(model: PreTrainedModel):
    """Wrap a ZeRO-3-partitioned reward model in a DeepSpeed inference engine, as TRL does for reward models it
    loads. The engine registers the hooks that gather each module's weights, so the model is still called directly."""
    from accelerate.state import AcceleratorState
    from trl.models.utils import prepare_deepspeed

    # `prepare_deepspeed` reads only `accelerator.state.deepspeed_plugin`; building a second `Accelerator` here would
    # reset the trainer's shared gradient-accumulation state.
    return prepare_deepspeed(model, SimpleNamespace(state=AcceleratorState()))
