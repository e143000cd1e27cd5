"""Reward models: `GaussianRewardModel` (μ and σ² on any sequence-classification backbone) and padding-free packing."""

from .modeling_gaussian import GaussianRewardModel, GaussianRewardModelOutput, VarianceHead

__all__ = ["GaussianRewardModel", "GaussianRewardModelOutput", "VarianceHead"]
