"""Image best-of-N: a procedural generator with known truth, a tiny Gaussian CLIP reward model, risk-aware selection
and the gold curves. Expected values come from numpy on the returned pool (argmax of hand-combined μ, pool means)."""

import numpy as np
import pytest
import torch

from tests.image_models import tiny_clip_config
from trl_anchor.models.modeling_image_gaussian import GaussianCLIPImageRewardModel
from trl_anchor.pipelines.best_of_n.images import diffusers_generator, image_best_of_n
from trl_anchor.studies.image_demo.scenes import ASPECTS, procedural_generator

PROMPTS = [
    "a red circle above a blue square", "a green triangle above a yellow circle", "a blue square above a red square"
]


@pytest.fixture(scope="module")
def model(processor):
    torch.manual_seed(0)
    model = GaussianCLIPImageRewardModel.from_config(tiny_clip_config(processor.tokenizer), aspects=list(ASPECTS))
    with torch.no_grad():
        model.variance_head.weight.normal_(0, 0.5)
    return model.eval()


def gold(prompts, images):
    return [float(np.mean(image.info["quality"])) for image in images]


def test_selection_and_curves(model, processor):
    result = image_best_of_n(PROMPTS, procedural_generator(), model, processor, num_samples=6,
                             policies=["mean", "lcb:1.0", "random", "oracle"], gold=gold, seed=3, batch_size=4)
    assert result.mean.shape == result.std.shape == (3, 6, 4) and result.gold.shape == (3, 6)
    combined = result.mean.mean(-1)  # the recorded aspect weights are 1/4 each
    np.testing.assert_array_equal(result.chosen["mean"], combined.argmax(1))
    lcb = combined - np.sqrt((result.std**2).sum(-1) / 16)
    np.testing.assert_array_equal(result.chosen["lcb:1.0"], lcb.argmax(1))
    np.testing.assert_allclose(result.curves["oracle"][-1], result.gold.max(1).mean())
    np.testing.assert_allclose(result.curves["random"], np.full(6, result.gold.mean()))
    for policy in ("mean", "lcb:1.0"):  # n = 1 is the pool mean; n = N is the chosen image's gold
        assert result.curves[policy][0] == pytest.approx(result.gold.mean())
        chosen_gold = result.gold[np.arange(3), result.chosen[policy]].mean()
        assert result.curves[policy][-1] == pytest.approx(chosen_gold)
    assert [image.info["quality"] for image in result.chosen_images("oracle")] == [
        result.images[p][k].info["quality"] for p, k in enumerate(result.gold.argmax(1))
    ]
    again = image_best_of_n(PROMPTS, procedural_generator(), model, processor, num_samples=6, gold=gold, seed=3)
    np.testing.assert_array_equal(again.gold, result.gold)  # seeded generation


def test_generator_count_is_checked(model, processor):
    with pytest.raises(ValueError, match="gave 2 images for prompt 0; asked for 3"):
        image_best_of_n(PROMPTS, lambda prompt, n, seed: procedural_generator()(prompt, 2, seed), model, processor, 3)


def test_diffusers_generator_calls_the_pipeline_seeded():
    calls = []

    class StubPipeline:  # diffusers' call shape: pipe(prompt, num_images_per_prompt=, generator=, ...).images
        device = "cpu"

        def __call__(self, prompt, num_images_per_prompt, generator, **kwargs):
            calls.append((prompt, num_images_per_prompt, kwargs))
            draws = torch.rand(num_images_per_prompt, generator=generator)
            return type("Output", (), {"images": draws.tolist()})()

    generate = diffusers_generator(StubPipeline(), num_inference_steps=4)
    assert generate("a cat", 3, 7) == generate("a cat", 3, 7) != generate("a cat", 3, 8)
    assert calls[0] == ("a cat", 3, {"num_inference_steps": 4})
