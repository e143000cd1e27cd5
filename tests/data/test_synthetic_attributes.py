"""The synthetic multi-attribute rating set follows its generating model (checked against scipy)."""

import numpy as np
from scipy.stats import norm

from trl_anchor.data.synthetic_attributes import (
    SyntheticAttributeConfig,
    _rate,
    make_synthetic_attribute_ratings,
)


def test_ratings_follow_the_midpoint_ordinal_model():
    rng = np.random.default_rng(1)
    mean, std = np.full(5, 2.3), np.array([0.3, 0.6, 0.8, 1.2, 1.6])
    ratings = np.stack([_rate(rng, mean, std) for _ in range(20000)])
    edges = np.array([-np.inf, 0.5, 1.5, 2.5, 3.5, np.inf])
    for a in range(5):
        expected = norm.cdf((edges[1:] - 2.3) / std[a]) - norm.cdf((edges[:-1] - 2.3) / std[a])
        observed = np.bincount(ratings[:, a], minlength=5) / len(ratings)
        np.testing.assert_allclose(observed, expected, atol=0.012)


def test_splits_truth_columns_and_missing_ratings():
    data = make_synthetic_attribute_ratings(SyntheticAttributeConfig(num_train=400, num_test=50, num_train_pairs=5,
                                                                     num_test_pairs=200, missing_rate=0.1))
    train, test = data["train"], data["test"]
    missing = sum(r is None for r in train["helpfulness"])
    assert 20 < missing < 65 and all(r is not None for r in test["helpfulness"])  # held-out ratings are complete
    # The spreads depend on the words: the topic sets helpfulness' σ.
    pizza = [s for t, s in zip(test["response"], test["true_std_helpfulness"], strict=True) if "pineapple" in t]
    assert pizza and set(pizza) == {1.6}
    # Held-out sentences use other frames than training ones.
    assert not set(r.split()[0] for r in train["response"]) & set(r.split()[0] for r in test["response"])
    pairs = data["test_pairs"]
    assert all(p >= 0.5 for p in pairs["soft_label"])
    # Annotator soft labels scatter around the exact probability (8 annotators: variance p(1-p)/8 on average).
    gap = np.asarray(pairs["soft_label"]) - np.asarray(pairs["true_soft_label"])
    assert abs(gap.mean()) < 0.1 and np.corrcoef(pairs["soft_label"], pairs["true_soft_label"])[0, 1] > 0.5
