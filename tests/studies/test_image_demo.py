"""The image demo: the procedural scenes' known truth (hand-worked), the metrics on a hand-made pool, and a smoke run
of `trl-anchor image-demo` that writes the report, the figure and the README table."""

import json

import numpy as np
import pytest
from PIL import Image

from trl_anchor.scripts.image_demo import README_END, README_START, ImageDemoArguments, main
from trl_anchor.studies.image_demo.report import _pair_accuracy, expected_calibration_error
from trl_anchor.studies.image_demo.scenes import Scene, draw, procedural_generator, truth, write_vision_prefer_records

PROMPT = (("red", "circle"), ("blue", "square"))


def _scene(**overrides):
    settings = dict(top=("red", "circle"), bottom=("blue", "square"), size=0.5, noise=0.0, mark=False,
                    striped=False, seed=0)
    return Scene(**{**settings, **overrides})


def test_truth_is_the_documented_function_of_the_scene():
    assert truth(PROMPT, _scene()).tolist() == [5.0, 3.0, 5.0, 5.0]
    # Swapped order: every object right but upside down → 4 of 5 criteria; noise 0.5 → fidelity 3; a mark → 1.5.
    swapped = _scene(top=("blue", "square"), bottom=("red", "circle"), noise=0.5, mark=True, size=1.0)
    assert truth(PROMPT, swapped).tolist() == [1 + 4 * 4 / 5, 5.0, 3.0, 1.5]
    wrong = _scene(top=("green", "circle"), bottom=("blue", "triangle"), size=0.0)
    assert truth(PROMPT, wrong).tolist() == [1 + 4 * 3 / 5, 1.0, 5.0, 5.0]


def test_drawing_shows_the_scene():
    image = np.asarray(draw(_scene(size=1.0)))
    assert tuple(image[8, 16]) == (220, 40, 40) and tuple(image[23, 16]) == (50, 70, 225)  # red top, blue bottom
    noisy = np.asarray(draw(_scene(size=1.0, noise=1.0))).astype(float)
    assert np.abs(noisy - image).mean() > 30


def test_ratings_scatter_more_on_striped_backgrounds(tmp_path):
    truths = write_vision_prefer_records(tmp_path, num_prompts=150, seed=0)
    records = [json.loads(line) for line in (tmp_path / "records.jsonl").read_text().splitlines()]
    ratings = np.array([[entry["fidelity"] for entry in r["images"]] for r in records]).reshape(-1)
    quality = np.array([t["quality"][2] for t in truths])
    striped = np.array([t["scene"].striped for t in truths])
    error = ratings - quality
    assert error[striped].std() > 2 * error[~striped].std()  # σ 1.05 vs 0.35, rounding and clipping included
    assert Image.open(truths[0]["path"]).size == (32, 32)


def test_metrics_on_a_hand_made_pool():
    pairs = np.array([[0, 1], [0, 2], [1, 2]])
    assert _pair_accuracy(np.array([3.0, 2.0, 1.0]), np.array([1.0, 2.0, 2.0]), pairs) == 0.0  # tie 1–2 skipped
    predicted, target = np.array([0.05, 0.15, 0.85, 0.95]), np.array([0.0, 0.0, 1.0, 1.0])
    # bins 0, 1, 8, 9, one item each: mean |p − t| = (0.05 + 0.15 + 0.15 + 0.05) / 4
    assert expected_calibration_error(predicted, target) == pytest.approx(0.1)


def test_procedural_generator_is_seeded_and_carries_the_truth():
    generate = procedural_generator()
    prompt = "a red circle above a blue square"
    first, again = generate(prompt, 3, 5), generate(prompt, 3, 5)
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(first, again, strict=True))
    assert all(len(image.info["quality"]) == 4 for image in first)
    with pytest.raises(ValueError, match="Expected 'a <colour>"):
        generate("a cat", 1, 0)


@pytest.mark.slow
def test_image_demo_smoke(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{README_START}\nold\n{README_END}\nrest\n")
    args = ImageDemoArguments(output_dir=str(tmp_path / "out"), report_dir=str(tmp_path / "report"),
                              num_train_prompts=8, num_test_prompts=4, max_steps=2, update_readme=str(readme))
    results = main(args)
    assert set(results) == {"bt", "gaussian", "gaussian_anchors"}
    assert "sigma_spearman" not in results["bt"] and "sigma_spearman" in results["gaussian_anchors"]
    for name in ("README.md", "results.json", "best_worst.png"):
        assert (tmp_path / "report" / name).is_file()
    assert "| pair accuracy: combined |" in readme.read_text() and "old" not in readme.read_text()
