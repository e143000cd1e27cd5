"""A pluralistic synthetic *text* preference set with known mean and spread of human reward per response.

Each response is a short sentence whose wording fixes its true reward distribution: quality words set the mean μ and
the topic sets the spread σ (people agree about the weather, not about pineapple pizza). Simulated annotators draw
`r ~ N(μ, σ²)` per response, so a pair's soft label is the fraction of annotators preferring the first response, and a
coarse two-threshold rating of one more draw ("bad" / "fine" / "good") gives each response an anchor class. Because the
truth is known, a trained reward model's σ can be checked against it.
"""

from dataclasses import dataclass

import numpy as np
import torch
from datasets import Dataset, DatasetDict

from ..losses import gaussian_preference_log_probs

QUALITY_WORDS = {
    "brilliant": 1.6,
    "insightful": 1.1,
    "clear": 0.6,
    "decent": 0.2,
    "vague": -0.2,
    "sloppy": -0.6,
    "confusing": -1.1,
    "useless": -1.6,
}
# Topic → spread σ of human reward. Divisive topics get a large σ whatever the quality.
TOPIC_SPREAD = {
    "the weather": 0.15,
    "gardening": 0.25,
    "train schedules": 0.35,
    "coffee": 0.6,
    "jazz": 0.9,
    "modern art": 1.2,
    "pineapple pizza": 1.5,
    "tabs versus spaces": 1.8,
}
PROMPTS = [
    "Write a short opinion piece.",
    "Give me your honest take.",
    "Explain your view in one sentence.",
    "What do you think about this?",
]
_OPENERS = ["Here is", "This is", "I wrote", "Consider"]
_CLOSERS = ["for you.", "as requested.", "in brief.", "today."]


@dataclass
class SyntheticPreferenceConfig:
    """Sizes and noise of the synthetic preference set (defaults fit the 10-minute CPU quickstart)."""

    num_train_pairs: int = 1200
    num_eval_pairs: int = 400
    num_annotators: int = 8
    thresholds: tuple[float, float] = (-0.6, 0.6)
    seed: int = 0


def _response(rng: np.random.Generator, held_out: bool) -> tuple[str, float, float]:
    # Two quality words average into μ; held-out responses use other sentence frames than training ones, so the
    # model must read the words, not memorise sentences.
    words = rng.choice(list(QUALITY_WORDS), size=2, replace=True)
    topic = rng.choice(list(TOPIC_SPREAD))
    opener = _OPENERS[rng.integers(2, 4) if held_out else rng.integers(0, 2)]
    closer = _CLOSERS[rng.integers(2, 4) if held_out else rng.integers(0, 2)]
    text = f"{opener} a {words[0]} and {words[1]} answer about {topic} {closer}"
    mean = float(np.mean([QUALITY_WORDS[w] for w in words]))
    return text, mean, TOPIC_SPREAD[topic]


def _pairs(rng: np.random.Generator, num_pairs: int, config: SyntheticPreferenceConfig, held_out: bool) -> dict:
    rows = {key: [] for key in (
        "prompt", "chosen", "rejected", "soft_label", "chosen_anchor", "rejected_anchor",
        "chosen_true_mean", "rejected_true_mean", "chosen_true_std", "rejected_true_std",
    )}
    thresholds = np.asarray(config.thresholds)
    for _ in range(num_pairs):
        (text_a, mu_a, sd_a), (text_b, mu_b, sd_b) = _response(rng, held_out), _response(rng, held_out)
        votes_a = rng.normal(mu_a, sd_a, config.num_annotators) > rng.normal(mu_b, sd_b, config.num_annotators)
        p_a = float(votes_a.mean())
        # Chosen is the majority side; exact ties keep the draw order.
        a_first = p_a >= 0.5
        response_a, response_b = (text_a, mu_a, sd_a), (text_b, mu_b, sd_b)
        first, second = (response_a, response_b) if a_first else (response_b, response_a)
        rows["prompt"].append(str(rng.choice(PROMPTS)))
        rows["chosen"].append(" " + first[0])
        rows["rejected"].append(" " + second[0])
        rows["soft_label"].append(p_a if a_first else 1.0 - p_a)
        for side, (_, mu, sd) in (("chosen", first), ("rejected", second)):
            rows[f"{side}_anchor"].append(int(np.searchsorted(thresholds, rng.normal(mu, sd))))
            rows[f"{side}_true_mean"].append(mu)
            rows[f"{side}_true_std"].append(sd)
    return rows


def make_synthetic_preferences(config: SyntheticPreferenceConfig | None = None) -> DatasetDict:
    """Train and held-out ("test") splits in the trainer's column spec, plus the true μ/σ of every response.

    Example:

    ```python
    >>> from trl_anchor.data.synthetic import SyntheticPreferenceConfig, make_synthetic_preferences

    >>> data = make_synthetic_preferences(SyntheticPreferenceConfig(num_train_pairs=8, num_eval_pairs=4))
    >>> sorted(data), data["train"].column_names[:4]
    (['test', 'train'], ['prompt', 'chosen', 'rejected', 'soft_label'])
    ```
    """
    config = config or SyntheticPreferenceConfig()
    rng = np.random.default_rng(config.seed)
    splits = {
        "train": _pairs(rng, config.num_train_pairs, config, held_out=False),
        "test": _pairs(rng, config.num_eval_pairs, config, held_out=True),
    }
    for rows in splits.values():
        rows["true_soft_label"] = _true_probability(rows)
    return DatasetDict({name: Dataset.from_dict(rows) for name, rows in splits.items()})


def _true_probability(rows: dict) -> list[float]:
    """Exact P(chosen ≻ rejected) under the generating model (the infinite-annotator soft label)."""
    tensors = [torch.tensor(rows[key], dtype=torch.float64) for key in (
        "chosen_true_mean", "chosen_true_std", "rejected_true_mean", "rejected_true_std"
    )]
    log_p, _ = gaussian_preference_log_probs(tensors[0], tensors[1] ** 2, tensors[2], tensors[3] ** 2)
    return log_p.exp().tolist()
