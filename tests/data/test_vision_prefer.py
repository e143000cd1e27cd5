"""`load_vision_prefer` on VisionPrefer-format records whose images are drawn here with PIL (never downloaded).

The layout follows `tests/fixtures/vision_prefer/SCHEMA.md`; expected labels are the Thurstone formula evaluated with
`statistics.NormalDist`, independently of the loader.
"""

import io
import json
import math
from statistics import NormalDist

import pytest
from datasets import Dataset
from PIL import Image as PILImage

from trl_anchor.data._common import FilterReport
from trl_anchor.data.vision_prefer import VISION_PREFER_ASPECTS, load_vision_prefer

COLOURS = {"A": (255, 0, 0), "B": (0, 255, 0), "C": (0, 0, 255), "E": (255, 255, 0), "F": (0, 255, 255),
           "G": (255, 0, 255), "H": (128, 128, 128)}
# (prompt_following, aesthetic, fidelity, harmlessness); aspect means A 4.5, B 4.0, C 4.0 (ties B), G 2.0, H 3.5.
RATINGS = {"A": (5, 4, 4, 5), "B": (3, 4, 4, 5), "C": (4, 4, 4, 4), "D": (5, 5, 5, 5), "E": (1, 2, 3, 5),
           "F": (2, None, 3, 5), "G": (2, 2, 2, 2), "H": (4, 1, 5, 4)}


def phi(x):
    return NormalDist().cdf(x)


def _image_entry(name, image_dir, nested=False):
    path = image_dir / f"{name}.png"
    if name in COLOURS:
        PILImage.new("RGB", (8, 6), COLOURS[name]).save(path)
    ratings = dict(zip(VISION_PREFER_ASPECTS, RATINGS[name], strict=True))
    entry = {"image_id": name, "model": f"model-{name}", "image_path": f"images/{name}.png"}
    if nested:
        entry["scores"] = ratings
    else:
        entry.update(ratings)
    return entry


@pytest.fixture
def vision_prefer_file(tmp_path):
    image_dir = tmp_path / "images"
    image_dir.mkdir()
    records = [
        {"prompt_id": 0, "prompt": "a red circle", "images": [_image_entry(n, image_dir) for n in "ABCD"]},
        {"prompt_id": 1, "prompt": "a yellow square", "images": [_image_entry(n, image_dir, True) for n in "EF"]},
        {"prompt_id": 2, "prompt": "a grey cat", "images": [_image_entry(n, image_dir) for n in "GH"]},
    ]
    path = tmp_path / "visionprefer.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return path


def _colour(image):
    return image.convert("RGB").getpixel((0, 0))


def test_pairs_soft_labels_orientation_and_counts(vision_prefer_file):
    pairs, (images, candidates) = load_vision_prefer(vision_prefer_file, return_report=True)
    # 8 images: D has no file, F has no aesthetic rating.
    assert (images.total, images.kept) == (8, 6)
    assert dict(images.dropped) == {"missing_image": 1, "missing_aesthetic_rating": 1}
    # Candidate pairs: AB, AC, BC (prompt 0), GH (prompt 2); BC is tied (4.0 vs 4.0); E is alone.
    assert (candidates.total, candidates.kept, dict(candidates.dropped)) == (4, 3, {"tied": 1})
    rows = {(r["chosen_model"], r["rejected_model"]): r for r in pairs}
    assert set(rows) == {("model-A", "model-B"), ("model-A", "model-C"), ("model-H", "model-G")}
    ab, hg = rows["model-A", "model-B"], rows["model-H", "model-G"]
    assert ab["soft_label"] == pytest.approx(phi(0.5 / math.sqrt(2)), abs=1e-12)
    assert hg["soft_label"] == pytest.approx(phi(1.5 / math.sqrt(2)), abs=1e-12)
    # Per-aspect labels follow each aspect's own difference, in the chosen ≻ rejected direction (H − G).
    for aspect, diff in zip(VISION_PREFER_ASPECTS, (2, -1, 3, 2), strict=True):
        assert hg[f"soft_label_{aspect}"] == pytest.approx(phi(diff / math.sqrt(2)), abs=1e-12)
    assert ab["soft_label_aesthetic"] == 0.5
    assert (hg["chosen_fidelity"], hg["rejected_fidelity"]) == (5, 2)
    assert (hg["chosen_fidelity_anchor"], hg["rejected_aesthetic_anchor"]) == (4, 1)
    assert _colour(hg["chosen_image"]) == COLOURS["H"] and _colour(hg["rejected_image"]) == COLOURS["G"]


def test_rating_noise_and_weights_change_the_labels(vision_prefer_file):
    pairs = load_vision_prefer(vision_prefer_file, rating_noise=2.0, aspect_weights=(1, 0, 0, 0))
    # Prompt-following only: A 5, B 3, C 4 (no tie now), G 2, H 4.
    labels = sorted(round(x, 12) for x in pairs["soft_label"])
    expected = sorted(round(phi(d / (2 * math.sqrt(2))), 12) for d in (2, 1, 1, 2))
    assert labels == expected


def test_ratings_mode_gives_anchor_classes(vision_prefer_file):
    rated = load_vision_prefer(vision_prefer_file, mode="ratings")
    assert rated["model"] == ["model-A", "model-B", "model-C", "model-E", "model-G", "model-H"]
    assert rated["aesthetic"] == [4, 4, 4, 2, 2, 1]
    assert rated["aesthetic_anchor"] == [3, 3, 3, 1, 1, 0]
    assert rated.features["image"].__class__.__name__ == "Image"
    assert [_colour(image) for image in rated["image"]] == [COLOURS[n] for n in "ABCEGH"]


def test_in_memory_dataset_with_image_bytes():
    def png(colour):
        buffer = io.BytesIO()
        PILImage.new("RGB", (4, 4), colour).save(buffer, format="PNG")
        return {"bytes": buffer.getvalue(), "path": None}

    ratings = dict(zip(VISION_PREFER_ASPECTS, (3, 3, 3, 3), strict=True))
    better = dict(zip(VISION_PREFER_ASPECTS, (4, 3, 3, 3), strict=True))
    data = Dataset.from_list([{"prompt": "p", "images": [{"image": png((1, 2, 3)), **ratings},
                                                          {"image": png((9, 9, 9)), **better}]}])
    pairs = load_vision_prefer(data)
    assert len(pairs) == 1
    assert _colour(pairs[0]["chosen_image"]) == (9, 9, 9)
    assert pairs[0]["soft_label"] == pytest.approx(phi(0.25 / math.sqrt(2)), abs=1e-12)


def test_invalid_rating_names_record_and_aspect(tmp_path):
    PILImage.new("RGB", (4, 4)).save(tmp_path / "x.png")
    record = {"prompt": "p", "images": [{"image_path": "x.png", "prompt_following": 3, "aesthetic": 6,
                                         "fidelity": 3, "harmlessness": 3}]}
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(record) + "\n")
    with pytest.raises(ValueError, match=r"record 0 image 0: rating `aesthetic` .* got 6"):
        load_vision_prefer(path)


def test_report_type(vision_prefer_file):
    _, reports = load_vision_prefer(vision_prefer_file, mode="ratings", return_report=True)
    assert len(reports) == 1 and isinstance(reports[0], FilterReport)
    assert reports[0].summary().startswith("VisionPrefer images: 8 images read, 6 kept")


def test_sequence_feature_layout_and_no_pairs():
    # `datasets.Sequence` of structs yields each record's images as a dict of lists; all-tied data gives no pairs.
    from datasets import Features, Sequence, Value

    features = Features({"prompt": Value("string"), "images": Sequence(
        {"image_path": Value("string"), **{aspect: Value("int64") for aspect in VISION_PREFER_ASPECTS}})})
    data = Dataset.from_dict({"prompt": ["p"], "images": [{"image_path": ["a.png", "b.png"],
                              **{aspect: [3, 3] for aspect in VISION_PREFER_ASPECTS}}]}, features=features)
    assert isinstance(data[0]["images"], dict)
    rows, (images,) = load_vision_prefer(data, mode="ratings", return_report=True)
    assert len(rows) == 0 and dict(images.dropped) == {"missing_image": 2}  # no such files


def test_all_tied_prompt_gives_an_empty_pairs_dataset(tmp_path):
    for name in ("a", "b"):
        PILImage.new("RGB", (4, 4)).save(tmp_path / f"{name}.png")
    ratings = dict(zip(VISION_PREFER_ASPECTS, (3, 3, 3, 3), strict=True))
    data = Dataset.from_list([{"prompt": "p", "images": [{"image_path": str(tmp_path / "a.png"), **ratings},
                                                          {"image_path": str(tmp_path / "b.png"), **ratings}]}])
    pairs, (_, candidates) = load_vision_prefer(data, return_report=True)
    assert len(pairs) == 0 and dict(candidates.dropped) == {"tied": 1}
    assert pairs.features["chosen_image"].__class__.__name__ == "Image"
