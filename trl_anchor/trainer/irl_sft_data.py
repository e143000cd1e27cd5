"""Data of `IRLSFTTrainer`: demonstrations in TRL's prompt-completion format, the (demonstration ≻ sample) pairs of
each round, and the variance-aware demonstration weights.

Demonstrations are `prompt` + `completion` rows, standard (strings) or conversational (message lists), as for
`trl.SFTTrainer`; a `messages` column is split into the conversation before the last assistant turn (the prompt) and
that turn (the completion).
"""

from dataclasses import dataclass

import numpy as np
import torch
from datasets import Dataset
from transformers.utils import logging
from trl.data_utils import is_conversational

logger = logging.get_logger(__name__)


def prepare_demonstrations(dataset: Dataset) -> Dataset:
    """Validate demonstrations and return them as `prompt` + `completion` columns (other columns are dropped)."""
    if not isinstance(dataset, Dataset):
        raise ValueError(f"`train_dataset` must be a map-style `datasets.Dataset`, got {type(dataset).__name__}.")
    if len(dataset) == 0:
        raise ValueError("`train_dataset` is empty.")
    columns = dataset.column_names
    if "messages" in columns and "prompt" not in columns:
        dataset = dataset.map(_split_messages, with_indices=True, remove_columns=columns, desc="Splitting messages")
        columns = dataset.column_names
    missing = [name for name in ("prompt", "completion") if name not in columns]
    if missing:
        raise ValueError(
            f"`train_dataset` needs `prompt` and `completion` columns (or `messages`); missing {missing}, "
            f"columns: {columns}."
        )
    dataset = dataset.select_columns(["prompt", "completion"])
    conversational = is_conversational(dataset[0])
    for row, example in enumerate(dataset):
        if is_conversational(example) != conversational:
            raise ValueError(f"Row {row} of `train_dataset` mixes standard and conversational formats.")
        if not completion_text(example["completion"]).strip():
            raise ValueError(f"Row {row} of `train_dataset` has an empty `completion`.")
    return dataset


def _split_messages(example, index):
    messages = example["messages"]
    if not messages or messages[-1].get("role") != "assistant":
        raise ValueError(f"Row {index} of `train_dataset`: `messages` must end with an assistant turn.")
    return {"prompt": messages[:-1], "completion": messages[-1:]}


def completion_text(completion) -> str:
    """The text of a completion: the string itself, or the content of a conversational completion's messages."""
    if isinstance(completion, str):
        return completion
    return "".join(message["content"] for message in completion)


def as_completion(text: str, conversational: bool):
    """A generated text in the dataset's format."""
    return [{"role": "assistant", "content": text}] if conversational else text


def round_prompt_indices(num_prompts: int, num_rounds: int, round_index: int, split: bool) -> np.ndarray:
    """Indices of the demonstrations a round uses: all of them, or the round's slice of T near-equal slices."""
    if not split:
        return np.arange(num_prompts)
    if num_prompts < num_rounds:
        raise ValueError(
            f"`split_prompts_across_rounds` needs at least one prompt per round: {num_prompts} prompts for "
            f"{num_rounds} rounds."
        )
    return np.array_split(np.arange(num_prompts), num_rounds)[round_index]


@dataclass
class RoundPairs:
    """The (demonstration ≻ sample) pairs of a round.

    `pairs` holds `prompt`/`chosen`/`rejected` (TRL's preference format) and `demo_index` (the row of the
    demonstration in the round's slice); `num_identical` samples reproduced their demonstration exactly and made no
    pair (a pair of identical responses has no gradient in any pairwise loss).
    """

    pairs: Dataset
    num_samples: int
    num_identical: int

    @property
    def num_pairs(self) -> int:
        return len(self.pairs)


def build_pairs(demonstrations: Dataset, samples: list[list[str]]) -> RoundPairs:
    """One pair per sample that differs from its demonstration: chosen = demonstration, rejected = sample."""
    if len(samples) != len(demonstrations):
        raise ValueError(f"Got samples for {len(samples)} prompts and {len(demonstrations)} demonstrations.")
    conversational = is_conversational(demonstrations[0])
    columns = {"prompt": [], "chosen": [], "rejected": [], "demo_index": []}
    num_identical = num_samples = 0
    for index, (example, texts) in enumerate(zip(demonstrations, samples, strict=True)):
        demo = completion_text(example["completion"])
        for text in texts:
            num_samples += 1
            if text == demo:
                num_identical += 1
                continue
            columns["prompt"].append(example["prompt"])
            columns["chosen"].append(example["completion"])
            columns["rejected"].append(as_completion(text, conversational))
            columns["demo_index"].append(index)
    if num_identical:
        logger.info(f"{num_identical}/{num_samples} samples reproduce their demonstration exactly and make no pair.")
    return RoundPairs(Dataset.from_dict(columns), num_samples=num_samples, num_identical=num_identical)


def anchor_rows(demonstrations: Dataset, top_class: int) -> Dataset:
    """Rows that give every demonstration the top anchor class and nothing else.

    The anchor columns of `AnchorGaussianRewardTrainer` label both responses of a pair, and a policy sample has no
    anchor, so each demonstration is paired with itself: identical responses give a constant pairwise term (no
    gradient, `soft_label` 0.5), leaving only the anchor likelihood of the demonstration.
    """
    n = len(demonstrations)
    return Dataset.from_dict(
        {
            "prompt": demonstrations["prompt"],
            "chosen": demonstrations["completion"],
            "rejected": demonstrations["completion"],
            "soft_label": [0.5] * n,
            "chosen_anchor": [top_class] * n,
            "rejected_anchor": [top_class] * n,
            "anchor_weight": [1.0] * n,
        }
    )


def demonstration_weights(
    demo_mean: np.ndarray,
    demo_std: np.ndarray,
    sample_mean: np.ndarray,
    sample_std: np.ndarray,
    demo_index: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Variance-aware weights of the demonstrations that have pairs.

    For demonstration d with pairs against samples k, the Gaussian reward model's probability that d beats them is
    `p_d = mean_k Φ((μ_d − μ_k) / sqrt(σ_d² + σ_k²))` — the preference likelihood the model is trained with. A low μ_d
    pulls p_d towards 0; a high σ_d pulls a confident p_d ≈ 1 towards 1/2. Returns `(p, w)` per demonstration (NaN
    for demonstrations without pairs) with `w = p / mean(p)`, so the weights redistribute the demonstrations' say
    without changing the total.
    """
    demo_index = np.asarray(demo_index)
    scale = np.sqrt(demo_std[demo_index] ** 2 + np.asarray(sample_std) ** 2)
    z = torch.as_tensor((demo_mean[demo_index] - np.asarray(sample_mean)) / scale, dtype=torch.float64)
    pair_prob = torch.special.ndtr(z).numpy()
    counts = np.bincount(demo_index, minlength=len(demo_mean))
    sums = np.bincount(demo_index, weights=pair_prob, minlength=len(demo_mean))
    prob = np.full(len(demo_mean), np.nan)
    has_pairs = counts > 0
    prob[has_pairs] = sums[has_pairs] / counts[has_pairs]
    weights = np.full(len(demo_mean), np.nan)
    mean_prob = prob[has_pairs].mean() if has_pairs.any() else np.nan
    if mean_prob > 0:
        weights[has_pairs] = prob[has_pairs] / mean_prob
    else:  # every pair prefers the sample with certainty: no demonstration is more trustworthy than another
        weights[has_pairs] = 1.0
    return prob, weights


def resample_by_weight(dataset: Dataset, weights: np.ndarray, seed: int) -> Dataset:
    """Resample rows with probabilities proportional to `weights`, keeping the size (systematic resampling).

    TRL's `DPOTrainer` and `SFTTrainer` take no per-example loss weights; training on rows drawn with probability
    ∝ w optimises the weighted objective in expectation. Systematic resampling keeps row i `⌊n·w_i/Σw⌋` or one more
    times, the least noisy unbiased scheme.
    """
    weights = np.asarray(weights, dtype=np.float64)
    if len(weights) != len(dataset):
        raise ValueError(f"Got {len(weights)} weights for {len(dataset)} rows.")
    if not np.all(np.isfinite(weights)) or (weights < 0).any() or weights.sum() <= 0:
        raise ValueError("Resampling weights must be finite, ≥ 0 and not all zero.")
    n = len(dataset)
    cumulative = np.cumsum(weights / weights.sum())
    positions = (np.random.default_rng(seed).random() + np.arange(n)) / n
    indices = np.minimum(np.searchsorted(cumulative, positions, side="right"), n - 1)
    return dataset.select(indices)
