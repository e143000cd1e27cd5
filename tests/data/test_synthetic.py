import numpy as np
from scipy.stats import norm

from trl_anchor.data.synthetic import SyntheticPreferenceConfig, make_synthetic_preferences


def test_columns_and_labels():
    data = make_synthetic_preferences(SyntheticPreferenceConfig(num_train_pairs=300, num_eval_pairs=50))
    train = data["train"]
    soft = np.asarray(train["soft_label"])
    assert ((soft >= 0.5) & (soft <= 1.0)).all()  # chosen is the annotator majority
    assert set(train["chosen_anchor"]) <= {0, 1, 2}
    # the exact label is the probit probability of the true means and spreads
    z = (np.asarray(train["chosen_true_mean"]) - np.asarray(train["rejected_true_mean"])) / np.sqrt(
        np.asarray(train["chosen_true_std"]) ** 2 + np.asarray(train["rejected_true_std"]) ** 2
    )
    np.testing.assert_allclose(train["true_soft_label"], norm.cdf(z), rtol=1e-9)
    # 8 annotators' votes track the exact probability
    assert np.corrcoef(soft, np.maximum(norm.cdf(z), 1 - norm.cdf(z)))[0, 1] > 0.5


def test_anchor_frequencies_follow_the_latent_distribution():
    data = make_synthetic_preferences(SyntheticPreferenceConfig(num_train_pairs=4000, num_eval_pairs=1, seed=1))
    train = data["train"]
    mean = np.concatenate([train["chosen_true_mean"], train["rejected_true_mean"]])
    std = np.concatenate([train["chosen_true_std"], train["rejected_true_std"]])
    classes = np.concatenate([train["chosen_anchor"], train["rejected_anchor"]])
    expected_top = norm.sf((0.6 - mean) / std).mean()
    assert abs((classes == 2).mean() - expected_top) < 0.02


def test_seeded_and_held_out_frames_differ():
    config = SyntheticPreferenceConfig(num_train_pairs=20, num_eval_pairs=20, seed=3)
    first, second = make_synthetic_preferences(config), make_synthetic_preferences(config)
    assert first["train"]["chosen"] == second["train"]["chosen"]
    train_openers = {text.split(" a ")[0] for text in first["train"]["chosen"]}
    test_openers = {text.split(" a ")[0] for text in first["test"]["chosen"]}
    assert not train_openers & test_openers
