"""Procedural text-to-image data with known truth, in VisionPrefer's record format (`load_vision_prefer` reads it).

A prompt is `"a <colour> <shape> above a <colour> <shape>"`. Each prompt gets four candidate images (as VisionPrefer
gets one from each of four diffusion models), drawn with PIL from random parameters, and each image has a known true
quality per aspect on the 1–5 scale:

- prompt-following `1 + 4 × (criteria met)/5`: top colour, top shape, bottom colour, bottom shape, and the order
  (a candidate may draw the two objects the wrong way round);
- aesthetic `1 + 4 × size`: how much of the canvas the objects fill (size ∈ [0, 1]);
- fidelity `5 − 4 × noise`: per-pixel Gaussian noise of standard deviation `noise × 90` grey levels;
- harmlessness 5, or 1.5 when a black "X" mark is drawn over the scene.

Raters disagree by a known amount: a rating is `round(truth + σ·ε)`, clipped to 1–5, with σ = `low_sigma` on a
plain background and `high_sigma_factor` times that on a striped one (the ambiguity is visible in the image, so a
model can learn it). The true σ per image is what σ recovery is measured against.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

COLOURS = {"red": (220, 40, 40), "green": (40, 170, 70), "blue": (50, 70, 225), "yellow": (235, 205, 40)}
SHAPES = ("circle", "square", "triangle")
ASPECTS = ("prompt_following", "aesthetic", "fidelity", "harmlessness")
IMAGES_PER_PROMPT = 4
CANVAS = 32
LOW_SIGMA, HIGH_SIGMA_FACTOR = 0.35, 3.0  # rater σ on a plain background; × factor on a striped one


@dataclass(frozen=True)
class Scene:
    """The drawing parameters of one candidate image."""

    top: tuple[str, str]  # (colour, shape) drawn at the top
    bottom: tuple[str, str]
    size: float
    noise: float
    mark: bool
    striped: bool
    seed: int


def prompt_text(top: tuple[str, str], bottom: tuple[str, str]) -> str:
    return f"a {top[0]} {top[1]} above a {bottom[0]} {bottom[1]}"


def truth(prompt: tuple[tuple[str, str], tuple[str, str]], scene: Scene) -> np.ndarray:
    """True quality per aspect (`ASPECTS` order), on the 1–5 scale."""
    (want_top, want_bottom) = prompt
    swapped = scene.top == want_bottom and scene.bottom == want_top and want_top != want_bottom
    top, bottom = (scene.bottom, scene.top) if swapped else (scene.top, scene.bottom)
    met = sum(a == b for a, b in zip((*top, *bottom), (*want_top, *want_bottom), strict=True)) + (not swapped)
    return np.array([1 + 4 * met / 5, 1 + 4 * scene.size, 5 - 4 * scene.noise, 1.5 if scene.mark else 5.0])


def draw(scene: Scene) -> Image.Image:
    rng = np.random.default_rng(scene.seed)
    image = Image.new("RGB", (CANVAS, CANVAS), (200, 200, 200))
    pen = ImageDraw.Draw(image)
    if scene.striped:
        for x in range(0, CANVAS, 4):
            pen.rectangle((x, 0, x + 1, CANVAS), fill=(150, 150, 150))
    half = 4 + scene.size * 6  # half-width of each object, 4..10 pixels
    for (colour, shape), cy in ((scene.top, CANVAS * 0.27), (scene.bottom, CANVAS * 0.73)):
        box = (CANVAS / 2 - half, cy - half * 0.8, CANVAS / 2 + half, cy + half * 0.8)
        if shape == "circle":
            pen.ellipse(box, fill=COLOURS[colour])
        elif shape == "square":
            pen.rectangle(box, fill=COLOURS[colour])
        else:
            pen.polygon([(box[0], box[3]), (box[2], box[3]), ((box[0] + box[2]) / 2, box[1])], fill=COLOURS[colour])
    if scene.mark:
        pen.line((2, 2, CANVAS - 3, CANVAS - 3), fill=(0, 0, 0), width=3)
        pen.line((2, CANVAS - 3, CANVAS - 3, 2), fill=(0, 0, 0), width=3)
    pixels = np.asarray(image, dtype=np.float64) + rng.normal(0, 90 * scene.noise, (CANVAS, CANVAS, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _candidate(rng, prompt) -> Scene:
    def maybe_wrong(value, choices):
        return value if rng.random() < 0.6 else rng.choice([c for c in choices if c != value])

    top, bottom = prompt
    if rng.random() < 0.25:
        top, bottom = bottom, top
    return Scene(
        top=(str(maybe_wrong(top[0], list(COLOURS))), str(maybe_wrong(top[1], SHAPES))),
        bottom=(str(maybe_wrong(bottom[0], list(COLOURS))), str(maybe_wrong(bottom[1], SHAPES))),
        size=float(rng.random()), noise=float(rng.random()), mark=bool(rng.random() < 0.25),
        striped=bool(rng.random() < 0.4), seed=int(rng.integers(2**31)),
    )


def random_prompt(rng) -> tuple[tuple[str, str], tuple[str, str]]:
    return tuple((str(rng.choice(list(COLOURS))), str(rng.choice(SHAPES))) for _ in range(2))


def write_vision_prefer_records(
    directory: Path, num_prompts: int, seed: int, low_sigma: float = LOW_SIGMA,
    high_sigma_factor: float = HIGH_SIGMA_FACTOR,
    first_id: int = 0,
) -> list[dict]:
    """Draw `num_prompts` prompts × 4 images under `directory/images`, rate them, and write
    `directory/records.jsonl` in VisionPrefer's layout. Returns, per image, its prompt, path, scene, true quality per
    aspect and true rater σ (for evaluation)."""
    rng = np.random.default_rng(seed)
    (directory / "images").mkdir(parents=True, exist_ok=True)
    truths = []
    with open(directory / "records.jsonl", "w") as f:
        for p in range(first_id, first_id + num_prompts):
            prompt = random_prompt(rng)
            entries = []
            for k in range(IMAGES_PER_PROMPT):
                scene = _candidate(rng, prompt)
                path = f"images/{p}_{k}.png"
                draw(scene).save(directory / path)
                quality = truth(prompt, scene)
                sigma = low_sigma * (high_sigma_factor if scene.striped else 1.0)
                ratings = np.clip(np.rint(quality + sigma * rng.standard_normal(len(ASPECTS))), 1, 5).astype(int)
                entries.append({"image_path": path, "model": f"generator_{k}",
                                **{a: int(r) for a, r in zip(ASPECTS, ratings, strict=True)}})
                truths.append({"prompt_id": p, "prompt": prompt_text(*prompt), "path": str(directory / path),
                               "quality": quality.tolist(), "sigma": sigma, "scene": scene})
            f.write(json.dumps({"prompt_id": p, "prompt": prompt_text(*prompt), "images": entries}) + "\n")
    return truths


def procedural_generator():
    """An image generator callable for best-of-N, `(prompt, num_images, seed) → PIL images`: candidates for a
    "a <colour> <shape> above a <colour> <shape>" prompt as in the data, each carrying its true aspect quality in
    `image.info["quality"]` (a gold scorer reads it)."""

    def generate(prompt: str, num_images: int, seed: int) -> list:
        words = prompt.split()
        if len(words) != 7 or words[3] != "above":
            raise ValueError(f"Expected 'a <colour> <shape> above a <colour> <shape>', got {prompt!r}.")
        wanted = ((words[1], words[2]), (words[5], words[6]))
        rng = np.random.default_rng(seed)
        images = []
        for _ in range(num_images):
            scene = _candidate(rng, wanted)
            image = draw(scene)
            image.info["quality"] = truth(wanted, scene).tolist()
            images.append(image)
        return images

    return generate
