"""The explicit reward of `IRLSFTTrainer`: the reward update of RFT (Li et al., 2024, Algorithm 1) with
`AnchorGaussianRewardTrainer`, reward scores of the round's pairs, and best-of-N selection with a `RewardTransform`.

Algorithm 1 ascends the gradient of the demonstrations' likelihood, `(1/β)·[∇r(x, y_demo; θ) − ∇r(x, ỹ; θ)]` with
ỹ ~ π_t (the ML-IRL gradient). With a Bradley–Terry reward this is the gradient of `log σ(r(x, y_demo) − r(x, ỹ))`
where the pair is not yet separated, so the reward step trains an ordinary preference reward model on
(demonstration ≻ sample) pairs, as the authors' code does; a Gaussian reward model fits the same pairs with the probit
likelihood `Φ((μ_demo − μ_sample) / sqrt(σ_demo² + σ_sample²))` and also returns σ.
"""

from dataclasses import dataclass

import numpy as np
from datasets import Dataset, concatenate_datasets
from transformers import PreTrainedTokenizerBase

from ..models.modeling_gaussian import GaussianRewardModel
from ..rewards.scoring import score_responses
from ..rewards.transforms import RewardTransform
from .irl_sft_data import RoundPairs, anchor_rows
from .reward_config import AnchorGaussianRewardConfig
from .reward_trainer import AnchorGaussianRewardTrainer


@dataclass
class PairScores:
    """Reward-model scores of a round: each demonstration once (`demo_*`) and each pair's sample (`sample_*`)."""

    demo_mean: np.ndarray
    demo_std: np.ndarray | None
    sample_mean: np.ndarray
    sample_std: np.ndarray | None
    demo_index: np.ndarray

    @property
    def margin(self) -> float:
        """Mean reward margin r(demonstration) − r(sample) over the pairs."""
        return float(np.mean(self.demo_mean[self.demo_index] - self.sample_mean))

    @property
    def accuracy(self) -> float:
        """Fraction of pairs whose demonstration gets the higher reward."""
        return float(np.mean(self.demo_mean[self.demo_index] > self.sample_mean))


def score_pairs(model, tokenizer, demonstrations: Dataset, round_pairs: RoundPairs, batch_size: int) -> PairScores:
    """Score every demonstration and every paired sample with the reward model and its tokenizer."""
    demos = score_responses(
        model, tokenizer, demonstrations["completion"], demonstrations["prompt"], batch_size=batch_size
    )
    pairs = round_pairs.pairs
    samples = score_responses(model, tokenizer, pairs["rejected"], pairs["prompt"], batch_size=batch_size)
    return PairScores(demos.mean, demos.std, samples.mean, samples.std, np.asarray(pairs["demo_index"], dtype=int))


def reward_dataset(demonstrations: Dataset, round_pairs: RoundPairs, anchor_top_class: int | None) -> Dataset:
    """The reward step's training rows: the round's pairs, plus one anchor row per demonstration when anchored."""
    pairs = round_pairs.pairs.select_columns(["prompt", "chosen", "rejected"])
    if anchor_top_class is None:
        return pairs
    n = len(pairs)
    pairs = pairs.add_column("soft_label", [1.0] * n)
    for column in ("chosen_anchor", "rejected_anchor"):
        pairs = pairs.add_column(column, [None] * n)
    pairs = pairs.add_column("anchor_weight", [0.0] * n)
    anchors = anchor_rows(demonstrations, anchor_top_class)
    return concatenate_datasets([pairs.cast(anchors.features), anchors])


def train_reward_model(
    model_path: str, tokenizer: PreTrainedTokenizerBase, dataset: Dataset, config: AnchorGaussianRewardConfig
):
    """Run the reward step from `model_path` (the previous round's reward model or the initial one); returns the
    trained model (the trainer saves it, with the tokenizer, to `config.output_dir`)."""
    trainer = AnchorGaussianRewardTrainer(
        model=model_path, args=config, train_dataset=dataset, processing_class=tokenizer
    )
    trainer.train()
    trainer.save_model(config.output_dir)
    model = trainer.accelerator.unwrap_model(trainer.model)
    del trainer
    return model


def load_reward_model(path: str, reward_type: str):
    """A reward model saved by the reward step (a fresh head on a causal-LM checkpoint when `path` is one)."""
    if reward_type == "gaussian":
        return GaussianRewardModel.from_pretrained(path)
    from transformers import AutoModelForSequenceClassification

    return AutoModelForSequenceClassification.from_pretrained(path, num_labels=1)


def best_of_n(
    model,
    tokenizer: PreTrainedTokenizerBase,
    demonstrations: Dataset,
    samples: list[list[str]],
    transform: RewardTransform,
    include_demonstration: bool,
    batch_size: int,
) -> tuple[list, np.ndarray]:
    """Per prompt, the candidate with the highest transformed reward.

    Candidates are the prompt's samples, preceded by the demonstration when `include_demonstration` (so a tie keeps
    the demonstration). Returns the winners (in the dataset's completion format) and a mask of the prompts whose
    winner is the demonstration.
    """
    from trl.data_utils import is_conversational

    from .irl_sft_data import as_completion

    conversational = is_conversational(demonstrations[0])
    prompts, candidates, owners, is_demo = [], [], [], []
    for index, (example, texts) in enumerate(zip(demonstrations, samples, strict=True)):
        options = ([example["completion"]] if include_demonstration else []) + [
            as_completion(text, conversational) for text in texts
        ]
        prompts += [example["prompt"]] * len(options)
        candidates += options
        owners += [index] * len(options)
        is_demo += [include_demonstration and k == 0 for k in range(len(options))]
    scores = score_responses(model, tokenizer, candidates, prompts, batch_size=batch_size)
    rewards = transform(scores.mean, scores.std).astype(np.float64)
    owners, is_demo = np.asarray(owners), np.asarray(is_demo)
    winners, demo_won = [], np.zeros(len(demonstrations), dtype=bool)
    for index in range(len(demonstrations)):
        rows = np.flatnonzero(owners == index)
        best = rows[int(np.argmax(rewards[rows]))]
        winners.append(candidates[best])
        demo_won[index] = is_demo[best]
    return winners, demo_won
