"""Anchor classes from external scores: A_k = 1{score ≥ τ_k}, so a score equal to a threshold reaches it."""

import numpy as np

from trl_anchor.anchors import classes_from_scores


def test_a_score_equal_to_a_threshold_reaches_it():
    # LLM-as-judge scores 1..10 cut at thresholds that are themselves observed scores.
    thresholds = [3.0, 7.0, 9.0]
    scores = np.arange(1, 11, dtype=float)
    expected = [sum(score >= tau for tau in thresholds) for score in scores]  # the paper's Σ_k 1{score ≥ τ_k}
    assert expected == [0, 0, 1, 1, 1, 1, 2, 2, 3, 3]
    assert classes_from_scores(scores, thresholds).tolist() == expected


def test_classes_between_and_beyond_the_thresholds():
    thresholds = [-0.5, 0.25]
    scores = [-3.0, -0.5000001, -0.5, 0.0, 0.25, 0.2500001, 8.0]
    assert classes_from_scores(scores, thresholds).tolist() == [0, 0, 1, 1, 2, 2, 2]
