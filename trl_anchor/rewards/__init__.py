"""Rewards from a (Gaussian) reward model: transforms of (μ, σ), batched scoring, and the wrappers RL trainers call
(`GaussianRewardFunction` for GRPO/RLOO, `PPORewardModel` for PPO)."""

from .normalization import NORMALIZATION_KEY, record_reward_statistics, reward_statistics
from .ppo import PPORewardModel
from .reward_function import GaussianRewardFunction
from .scoring import RewardScores, score_responses
from .transforms import RewardTransform

__all__ = [
    "NORMALIZATION_KEY",
    "GaussianRewardFunction",
    "PPORewardModel",
    "RewardScores",
    "RewardTransform",
    "record_reward_statistics",
    "reward_statistics",
    "score_responses",
]
