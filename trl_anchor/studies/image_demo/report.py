"""Held-out metrics, table and best/worst figure of the image demo (`trl-anchor image-demo`).

Every metric is computed against the known truth of `scenes`: per-aspect pairwise accuracy against the true quality
of each aspect (the BT arm's one scalar stands in for every aspect), accuracy of the combined reward against the true
aspect mean, calibration of P(chosen ≻ rejected) against the held-out pairs' soft labels (the labelling rule of the
training pairs, `load_vision_prefer`), and σ recovery as the Spearman correlation of the predicted σ (averaged over
aspects) with the true rater σ of each image.
"""

from itertools import combinations

import numpy as np
import torch
from scipy.stats import spearmanr

from ...rewards.image_scoring import score_images
from .scenes import ASPECTS, HIGH_SIGMA_FACTOR


def expected_calibration_error(predicted: np.ndarray, target: np.ndarray, bins: int = 10) -> float:
    """Soft-label ECE: Σ_bins (n_b/n) |mean predicted − mean target| over equal-width bins of the prediction."""
    index = np.minimum((predicted * bins).astype(int), bins - 1)
    return float(sum(
        (index == b).mean() * abs(predicted[index == b].mean() - target[index == b].mean())
        for b in range(bins) if (index == b).any()
    ))


def evaluate_arm(model, processor, truths: list[dict], test_pairs, weights) -> dict[str, float]:
    """Metrics of one trained arm on the held-out images (`truths`) and pairs (`test_pairs`, from
    `load_vision_prefer` on the held-out records)."""
    scores = score_images(model, processor, [t["prompt"] for t in truths], [t["path"] for t in truths])
    mean = scores.mean if scores.mean.ndim == 2 else np.repeat(scores.mean[:, None], len(ASPECTS), axis=1)
    quality = np.array([t["quality"] for t in truths])
    by_prompt: dict[int, list[int]] = {}
    for i, t in enumerate(truths):
        by_prompt.setdefault(t["prompt_id"], []).append(i)
    pairs = np.array([pair for group in by_prompt.values() for pair in combinations(group, 2)])
    results = {}
    for a, aspect in enumerate(ASPECTS):
        results[f"accuracy/{aspect}"] = _pair_accuracy(mean[:, a], quality[:, a], pairs)
    reward = mean @ np.asarray(weights) if scores.mean.ndim == 2 else scores.mean
    results["accuracy/combined"] = _pair_accuracy(reward, quality @ np.asarray(weights), pairs)
    index = {t["path"]: i for i, t in enumerate(truths)}
    chosen = np.array([index[p["path"]] for p in test_pairs.cast_column("chosen_image", _undecoded())["chosen_image"]])
    rejected = np.array([
        index[p["path"]] for p in test_pairs.cast_column("rejected_image", _undecoded())["rejected_image"]
    ])
    gap = torch.tensor(reward[chosen] - reward[rejected], dtype=torch.float64)
    if scores.variance is None:
        predicted = torch.sigmoid(gap).numpy()
    else:
        reward_variance = scores.variance @ np.asarray(weights) ** 2
        predicted = torch.special.ndtr(gap / np.sqrt(reward_variance[chosen] + reward_variance[rejected])).numpy()
    predicted = np.clip(predicted, 1e-12, 1 - 1e-12)
    target = np.asarray(test_pairs["soft_label"])
    results["soft_ce"] = float(-(target * np.log(predicted) + (1 - target) * np.log(1 - predicted)).mean())
    results["soft_ce_floor"] = float(-(target * np.log(target) + (1 - target) * np.log1p(-target)).mean())
    results["ece"] = expected_calibration_error(predicted, target)
    if scores.variance is not None:
        sigma = np.sqrt(scores.variance).mean(1)
        results["sigma_spearman"] = float(spearmanr(sigma, [t["sigma"] for t in truths]).statistic)
        striped = np.array([t["scene"].striped for t in truths])
        results["sigma_ratio_striped_plain"] = float(sigma[striped].mean() / sigma[~striped].mean())
    return results, reward


def _pair_accuracy(predicted: np.ndarray, true: np.ndarray, pairs: np.ndarray) -> float:
    differ = true[pairs[:, 0]] != true[pairs[:, 1]]
    agree = np.sign(predicted[pairs[:, 0]] - predicted[pairs[:, 1]]) == np.sign(true[pairs[:, 0]] - true[pairs[:, 1]])
    return float(agree[differ].mean())


def _undecoded():
    from datasets import Image

    return Image(decode=False)


def comparison_table(results: dict[str, dict[str, float]]) -> str:
    arms = list(results)
    rows = [f"accuracy/{a}" for a in (*ASPECTS, "combined")] + ["soft_ce", "ece", "sigma_spearman",
                                                                "sigma_ratio_striped_plain"]
    names = {"soft_ce": "pair soft-label CE (floor {floor:.3f})", "ece": "pair ECE",
             "sigma_spearman": "σ vs true rater σ (Spearman)",
             "sigma_ratio_striped_plain": f"σ striped / plain (true {HIGH_SIGMA_FACTOR:g})"}
    floor = next(iter(results.values()))["soft_ce_floor"]
    lines = ["| metric | " + " | ".join(arms) + " |", "|---" * (len(arms) + 1) + "|"]
    for row in rows:
        label = names.get(row, row.replace("accuracy/", "pair accuracy: ")).format(floor=floor)
        cells = [f"{results[arm][row]:.3f}" if row in results[arm] else "—" for arm in arms]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def best_worst_figure(truths: list[dict], reward: np.ndarray, path, num_prompts: int = 6) -> None:
    """Per held-out prompt (the first `num_prompts`), its best- and worst-scored image with the true aspect means."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    by_prompt: dict[int, list[int]] = {}
    for i, t in enumerate(truths):
        by_prompt.setdefault(t["prompt_id"], []).append(i)
    groups = list(by_prompt.values())[:num_prompts]
    figure, axes = plt.subplots(2, len(groups), figsize=(2.3 * len(groups), 6.2))
    for column, group in enumerate(groups):
        ranked = sorted(group, key=lambda i: reward[i])
        for row, (label, i) in enumerate((("best", ranked[-1]), ("worst", ranked[0]))):
            axis = axes[row, column]
            with Image.open(truths[i]["path"]) as image:
                axis.imshow(image.convert("RGB").resize((128, 128), Image.NEAREST))
            axis.set_xticks([])
            axis.set_yticks([])
            axis.set_xlabel(f"{label}: r={reward[i]:.2f}\ntrue mean {np.mean(truths[i]['quality']):.2f}", fontsize=8)
        axes[0, column].set_title(truths[group[0]]["prompt"].replace(" above ", "\nabove "), fontsize=8)
    figure.tight_layout(h_pad=2.5)
    figure.savefig(path, dpi=110)
    plt.close(figure)
