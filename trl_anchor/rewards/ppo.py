"""A variance-aware reward model for `trl.experimental.ppo.PPOTrainer` (TRL ≤ 1.12.0).

`PPOTrainer` does not call a reward model's `forward`. Its `get_reward` runs the backbone found at
`getattr(model, model.base_model_prefix)` with `output_hidden_states=True`, applies `model.score` to the last hidden
state at *every* position and reads the value at the last non-pad token. `PPORewardModel` exposes exactly that
surface over a `GaussianRewardModel`, with `score` returning the transformed reward (e.g. μ + Φ⁻¹(q)σ) per position,
so `PPOTrainer` uses it unchanged, including `prepare_deepspeed` (which reads `.config`) and `.to(device)`.

PPOTrainer was removed in TRL 1.13; on newer TRL use `trl_anchor.GaussianRewardFunction` with `GRPOTrainer` or
`RLOOTrainer`.
"""

import importlib.util

import torch
import trl
from packaging.version import Version
from torch import nn
from transformers import PreTrainedTokenizerBase
from transformers.utils import logging

from ..models.modeling_gaussian import GaussianRewardModel, reward_head
from ..models.pooling import reward_token_index
from .transforms import RewardTransform

logger = logging.get_logger(__name__)

PPO_TRL_VERSION = "1.12.0"
_FIRST_TRL_WITHOUT_PPO = Version("1.13.0.dev0")


def check_ppo_available() -> None:
    """Raise a clear `ImportError` unless the installed TRL still ships `trl.experimental.ppo.PPOTrainer`."""
    installed = Version(trl.__version__)
    if installed >= _FIRST_TRL_WITHOUT_PPO or importlib.util.find_spec("trl.experimental.ppo") is None:
        raise ImportError(
            f"PPO needs `trl.experimental.ppo.PPOTrainer`, which TRL removed in 1.13; TRL {trl.__version__} is "
            f"installed. Install TRL {PPO_TRL_VERSION} (`pip install trl=={PPO_TRL_VERSION}`, e.g. in a separate "
            "environment) to train with PPO, or use `trl_anchor.GaussianRewardFunction` as a reward function of "
            "`GRPOTrainer`/`RLOOTrainer` on this TRL."
        )


class PPORewardModel(nn.Module):
    """A `GaussianRewardModel` whose `score(hidden_states)` returns a variance-aware reward at every position, for
    `trl.experimental.ppo.PPOTrainer(reward_model=...)` on TRL 1.12.0.

    The module holds the reward model's backbone (under its `base_model_prefix`), its reward head and its variance
    head, so the wrapper's parameters are exactly the reward model's and DeepSpeed/`to()` handle it like the model.

    PPO feeds the *policy's* token ids to the reward model, so both tokenizers must share one vocabulary; the
    constructor checks this. A reward model with another tokenizer or chat template belongs in GRPO/RLOO through
    `GaussianRewardFunction`, which re-tokenizes completions.

    Args:
        reward_model (`GaussianRewardModel`): a decoder reward model (its head reads each position's hidden state).
        reward_tokenizer (`PreTrainedTokenizerBase`): the tokenizer the reward model was trained with.
        policy_tokenizer (`PreTrainedTokenizerBase`): the tokenizer PPO generates and pads with.
        transform (`str` or `RewardTransform`, defaults to `"mean"`): e.g. `"quantile:0.1"`; normalisation
            statistics are read from the reward model's config.

    Example (TRL 1.12.0):

    ```python
    >>> from trl.experimental.ppo import PPOTrainer
    >>> from trl_anchor import GaussianRewardModel, PPORewardModel

    >>> reward_model = GaussianRewardModel.from_pretrained("my-gaussian-rm")
    >>> reward = PPORewardModel(reward_model, rm_tokenizer, policy_tokenizer, transform="quantile:0.1")
    >>> trainer = PPOTrainer(args=ppo_config, processing_class=policy_tokenizer, model=policy, ref_model=None,
    ...                      reward_model=reward, value_model=value_model, train_dataset=prompts)
    ```
    """

    def __init__(
        self,
        reward_model: GaussianRewardModel,
        reward_tokenizer: PreTrainedTokenizerBase,
        policy_tokenizer: PreTrainedTokenizerBase,
        transform: str | RewardTransform = "mean",
    ):
        check_ppo_available()
        super().__init__()
        _check_decoder_reward_model(reward_model)
        check_same_vocabulary(policy_tokenizer, reward_tokenizer, reward_model)
        self.base_model_prefix = reward_model.base_model_prefix
        self.add_module(self.base_model_prefix, getattr(reward_model, self.base_model_prefix))
        self.reward_head = reward_head(reward_model)
        self.variance_head = reward_model.variance_head
        # PPOTrainer's DeepSpeed preparation sizes ZeRO-3 buckets from `config.hidden_size`.
        self.config = reward_model.config
        self.transform = RewardTransform.parse(transform).bind(reward_model).for_current_process()

    def score(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """Transformed reward at every position: `(batch, length, hidden)` → `(batch, length, 1)`, float32."""
        mean = self.reward_head(hidden_states).squeeze(-1).float()
        std = self.std_from_hidden(hidden_states) if self.transform.needs_std else None
        return self.transform(mean, std).unsqueeze(-1)

    def std_from_hidden(self, hidden_states: torch.Tensor) -> torch.Tensor:
        """σ at every position, from the same hidden state the reward head reads."""
        # The model's own variance head (softplus + floor, float64 math) applied per position; calling the module keeps
        # DeepSpeed ZeRO-3's parameter gathering working.
        return self.variance_head(hidden_states).sqrt()

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None, **kwargs) -> torch.Tensor:
        """Transformed reward of each sequence, read at its last non-pad token like the reward model does."""
        backbone = getattr(self, self.base_model_prefix)
        outputs = backbone(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True, **kwargs)
        rewards = self.score(outputs.hidden_states[-1]).squeeze(-1)
        index = reward_token_index(input_ids, self.config.get_text_config().pad_token_id).to(rewards.device)
        return rewards[torch.arange(rewards.shape[0], device=rewards.device), index]


def _check_decoder_reward_model(model: nn.Module) -> None:
    if not isinstance(model, GaussianRewardModel):
        raise TypeError(
            f"PPORewardModel wraps a GaussianRewardModel, got {type(model).__name__}; a plain reward model already "
            "works as PPOTrainer's `reward_model`."
        )
    if reward_head(model) is not getattr(model, "score", None):
        raise ValueError(
            f"{type(model).__name__} pools its hidden states in a classifier, but PPOTrainer reads a per-position "
            "`score` at the last token, which only decoder reward models (GPT-2, Llama, Qwen, ...) provide. Use "
            "`GaussianRewardFunction` with GRPOTrainer/RLOOTrainer for encoder reward models."
        )


def check_same_vocabulary(
    policy_tokenizer: PreTrainedTokenizerBase, reward_tokenizer: PreTrainedTokenizerBase, reward_model: nn.Module
) -> None:
    """Raise a `ValueError` unless token ids from `policy_tokenizer` mean the same to the reward model."""
    policy_vocab, reward_vocab = policy_tokenizer.get_vocab(), reward_tokenizer.get_vocab()
    differing = sorted(
        token
        for token in policy_vocab.keys() | reward_vocab.keys()
        if policy_vocab.get(token) != reward_vocab.get(token)
    )
    if differing:
        examples = ", ".join(f"{t!r}: {policy_vocab.get(t)} vs {reward_vocab.get(t)}" for t in differing[:5])
        raise ValueError(
            f"PPO feeds the policy's token ids straight into the reward model, but the policy and reward tokenizers "
            f"map {len(differing)} token(s) differently (policy id vs reward-model id: {examples}). Use a reward "
            "model trained with the policy's tokenizer, or train with GRPOTrainer/RLOOTrainer and "
            "`trl_anchor.GaussianRewardFunction`, which scores completions with the reward model's own tokenizer."
        )
    num_embeddings = reward_model.get_input_embeddings().num_embeddings
    if len(policy_tokenizer) > num_embeddings:
        raise ValueError(
            f"The policy tokenizer has {len(policy_tokenizer)} tokens but the reward model embeds only "
            f"{num_embeddings}; resize the reward model's embeddings or use its tokenizer for the policy."
        )
    if policy_tokenizer.eos_token != reward_tokenizer.eos_token:
        logger.warning(
            f"The policy ends responses with {policy_tokenizer.eos_token!r} but the reward model was trained on "
            f"responses ending with {reward_tokenizer.eos_token!r}; PPO reads the reward at the policy's last token."
        )
