"""A synthetic multi-attribute *text* rating set with known per-attribute mean and spread (HelpSteer2's format).

Each response is a short sentence of four word slots; the words fix the true mean μ_a and spread σ_a of every
attribute's latent rating (on HelpSteer2's five attributes, 0–4 scale):

- the quality word sets helpfulness, correctness and coherence means;
- the depth word sets complexity and verbosity means, and the spread of complexity;
- the topic sets the spread of helpfulness and correctness (people disagree about pineapple pizza);
- the register sets the spread of coherence and verbosity.

A simulated annotator draws `latent_a ~ N(μ_a, σ_a²)` independently per attribute and reports the rating
`clip(round(latent_a), 0, 4)`, i.e. the number of midpoints `k − ½` the latent value exceeds: exactly the ordinal
likelihood of `MultiAttributeRewardTrainer` with `rating_thresholds="midpoints"`. Pairs get soft labels from several
annotators comparing the combined latent rewards `wᵀ latent` (w: NVIDIA's HelpSteer2 weights).
"""

import math
from dataclasses import dataclass

import numpy as np
from datasets import Dataset, DatasetDict

from ..trainer.multi_attribute_config import HELPSTEER2_ATTRIBUTES, HELPSTEER2_WEIGHTS

# Quality word → means of (helpfulness, correctness, coherence).
QUALITY = {
    "brilliant": (3.6, 3.5, 3.7),
    "accurate": (2.9, 3.6, 3.0),
    "decent": (2.2, 2.4, 2.6),
    "rambling": (1.6, 2.2, 1.0),
    "wrong": (1.0, 0.4, 2.4),
    "useless": (0.4, 0.8, 0.8),
}
# Depth word → (complexity mean, verbosity mean, complexity spread).
DEPTH = {"terse": (0.6, 0.5, 0.3), "plain": (1.5, 1.8, 0.5), "detailed": (2.5, 2.9, 0.8), "technical": (3.4, 2.4, 1.3)}
# Topic → spread of helpfulness and correctness.
TOPIC_SPREAD = {"the weather": 0.3, "train schedules": 0.5, "coffee": 0.8, "modern art": 1.2, "pineapple pizza": 1.6}
# Register → spread of coherence and verbosity.
REGISTER_SPREAD = {"formal": 0.3, "casual": 0.7, "slangy": 1.2}
PROMPTS = ["Answer the question.", "Help me with this.", "Explain briefly.", "What do you think?"]
_FRAMES_TRAIN = ["Here is a {r} {q} and {d} reply about {t}.", "A {d}, {q} answer on {t}, written {r}."]
_FRAMES_TEST = ["This {q} reply about {t} is {d} and {r}.", "On {t}: a {r} {d} {q} response."]
MAX_RATING = 4


@dataclass
class SyntheticAttributeConfig:
    """Sizes and noise of the synthetic rating set (defaults fit a few CPU minutes with MiniLM)."""

    num_train: int = 2000
    num_test: int = 500
    num_train_pairs: int = 300
    num_test_pairs: int = 300
    num_pair_annotators: int = 8
    missing_rate: float = 0.05
    seed: int = 0


def _response(rng: np.random.Generator, held_out: bool) -> tuple[str, np.ndarray, np.ndarray]:
    # Held-out responses use other sentence frames, so the model must read the words, not memorise sentences.
    q, d = rng.choice(list(QUALITY)), rng.choice(list(DEPTH))
    t, r = rng.choice(list(TOPIC_SPREAD)), rng.choice(list(REGISTER_SPREAD))
    frame = (_FRAMES_TEST if held_out else _FRAMES_TRAIN)[rng.integers(2)]
    complexity, verbosity, complexity_spread = DEPTH[d]
    mean = np.array([*QUALITY[q], complexity, verbosity])
    std = np.array([TOPIC_SPREAD[t], TOPIC_SPREAD[t], REGISTER_SPREAD[r], complexity_spread, REGISTER_SPREAD[r]])
    return " " + frame.format(q=q, d=d, t=t, r=r), mean, std


def _rate(rng: np.random.Generator, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(rng.normal(mean, std)), 0, MAX_RATING).astype(int)


def _rated(rng, num: int, config: SyntheticAttributeConfig, held_out: bool) -> dict:
    rows: dict[str, list] = {"prompt": [], "response": []}
    for name in HELPSTEER2_ATTRIBUTES:
        rows.update({name: [], f"true_mean_{name}": [], f"true_std_{name}": []})
    for _ in range(num):
        text, mean, std = _response(rng, held_out)
        ratings = _rate(rng, mean, std)
        rows["prompt"].append(str(rng.choice(PROMPTS)))
        rows["response"].append(text)
        for a, name in enumerate(HELPSTEER2_ATTRIBUTES):
            missing = not held_out and rng.random() < config.missing_rate
            rows[name].append(None if missing else int(ratings[a]))
            rows[f"true_mean_{name}"].append(float(mean[a]))
            rows[f"true_std_{name}"].append(float(std[a]))
    return rows


def _pairs(rng, num: int, config: SyntheticAttributeConfig, held_out: bool) -> dict:
    weights = np.asarray(HELPSTEER2_WEIGHTS)
    rows: dict[str, list] = {"prompt": [], "chosen": [], "rejected": [], "soft_label": [], "true_soft_label": []}
    for _ in range(num):
        (text_a, mean_a, std_a), (text_b, mean_b, std_b) = _response(rng, held_out), _response(rng, held_out)
        draws = config.num_pair_annotators
        reward_a = rng.normal(mean_a, std_a, (draws, 5)) @ weights
        reward_b = rng.normal(mean_b, std_b, (draws, 5)) @ weights
        p_a = float((reward_a > reward_b).mean())
        gap = (mean_a - mean_b) @ weights
        z = gap / math.sqrt((std_a**2 + std_b**2) @ weights**2)
        true_p_a = 0.5 * math.erfc(-z / math.sqrt(2.0))  # Φ(z)
        a_first = p_a >= 0.5
        rows["prompt"].append(str(rng.choice(PROMPTS)))
        rows["chosen"].append(text_a if a_first else text_b)
        rows["rejected"].append(text_b if a_first else text_a)
        rows["soft_label"].append(p_a if a_first else 1.0 - p_a)
        rows["true_soft_label"].append(true_p_a if a_first else 1.0 - true_p_a)
    return rows


def make_synthetic_attribute_ratings(config: SyntheticAttributeConfig | None = None) -> DatasetDict:
    """Splits `train`/`test` (rated responses with the true `true_mean_<a>`/`true_std_<a>`) and
    `train_pairs`/`test_pairs` (preference pairs with annotator and exact soft labels).

    Example:

    ```python
    >>> from trl_anchor.data.synthetic_attributes import SyntheticAttributeConfig, make_synthetic_attribute_ratings

    >>> data = make_synthetic_attribute_ratings(SyntheticAttributeConfig(num_train=4, num_test=2, num_train_pairs=2,
    ...                                                                  num_test_pairs=2))
    >>> sorted(data), data["train"].column_names[:3]
    (['test', 'test_pairs', 'train', 'train_pairs'], ['prompt', 'response', 'helpfulness'])
    ```
    """
    config = config or SyntheticAttributeConfig()
    rng = np.random.default_rng(config.seed)
    return DatasetDict({
        "train": Dataset.from_dict(_rated(rng, config.num_train, config, held_out=False)),
        "test": Dataset.from_dict(_rated(rng, config.num_test, config, held_out=True)),
        "train_pairs": Dataset.from_dict(_pairs(rng, config.num_train_pairs, config, held_out=False)),
        "test_pairs": Dataset.from_dict(_pairs(rng, config.num_test_pairs, config, held_out=True)),
    })
