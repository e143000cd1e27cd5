"""`score_images`: batched (prompt, image) scoring with per-aspect μ/σ, and `RewardTransform` on its output."""

import math

import numpy as np
import pytest
import torch
from PIL import Image

from tests.image_models import tiny_clip_config
from trl_anchor.models.modeling_image_gaussian import CLIPImageRewardModel, GaussianCLIPImageRewardModel
from trl_anchor.rewards.image_scoring import score_images
from trl_anchor.rewards.transforms import RewardTransform

ASPECTS = ["prompt_following", "aesthetic", "fidelity", "harmlessness"]
PROMPTS = ["a red circle above a blue square", "blue", "a green triangle", "two yellow stars", "circle"]
COLOURS = [(255, 0, 0), (0, 0, 255), (0, 200, 0), (250, 250, 0), (90, 40, 10)]


@pytest.fixture(scope="module")
def model(processor):
    torch.manual_seed(0)
    model = GaussianCLIPImageRewardModel.from_config(tiny_clip_config(processor.tokenizer), aspects=ASPECTS)
    with torch.no_grad():
        model.variance_head.weight.normal_(0, 0.5)
    return model


@pytest.fixture(scope="module")
def images():
    # Different sizes: the processor resizes and crops them.
    return [Image.new("RGB", (40 + 3 * i, 30 + 5 * i), colour) for i, colour in enumerate(COLOURS)]


def _one_at_a_time(model, processor, prompts, images):
    means, variances = [], []
    for prompt, image in zip(prompts, images, strict=True):
        with torch.no_grad():
            out = model.eval()(**processor(text=[prompt], images=[image], return_tensors="pt"))
        means.append(out.mean[0].numpy())
        variances.append(out.variance[0].numpy())
    return np.stack(means), np.stack(variances)


def test_batched_scores_equal_single_forward_passes(model, processor, images):
    # batch_size 2 over 5 items: padded batches (pad token = EOS) and a last partial batch.
    scores = score_images(model, processor, PROMPTS, images, batch_size=2)
    assert scores.attributes == ASPECTS
    assert scores.mean.shape == scores.variance.shape == (5, 4)
    mean, variance = _one_at_a_time(model, processor, PROMPTS, images)
    np.testing.assert_allclose(scores.mean, mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scores.variance, variance, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scores.std, np.sqrt(variance), rtol=1e-5)
    assert len({tuple(row.round(6)) for row in scores.mean}) == 5  # the inputs really differ


def test_image_paths_score_like_pil_images(model, processor, images, tmp_path):
    paths = []
    for i, image in enumerate(images[:2]):
        paths.append(tmp_path / f"{i}.png")
        image.save(paths[-1])
    from_paths = score_images(model, processor, PROMPTS[:2], [str(p) for p in paths])
    from_pil = score_images(model, processor, PROMPTS[:2], images[:2])
    np.testing.assert_allclose(from_paths.mean, from_pil.mean, rtol=0, atol=0)


def test_reward_transform_with_aspect_weights(model, processor, images):
    scores = score_images(model, processor, PROMPTS, images)
    # Weights recorded in the config (1/4 each), bound unchanged from the model.
    lcb = RewardTransform.parse("lcb:1.0").bind(model)
    expected = [
        0.25 * sum(m) - math.sqrt(sum(0.25**2 * v for v in var))
        for m, var in zip(scores.mean.tolist(), scores.variance.tolist(), strict=True)
    ]
    np.testing.assert_allclose(lcb(scores.mean, scores.std), expected, rtol=1e-6)
    # Explicit weights: aesthetic only, so the reward is that aspect's 10% quantile μ_aes + Φ⁻¹(0.1)·σ_aes.
    quantile = RewardTransform.parse("quantile:0.1,weights:0:1:0:0").bind(model)
    expected = scores.mean[:, 1] - 1.2815515655446004 * np.sqrt(scores.variance[:, 1])
    np.testing.assert_allclose(quantile(scores.mean, scores.std), expected, rtol=1e-6)


def test_plain_model_scores_without_variance(model, processor, images, tmp_path):
    model.save_pretrained(tmp_path)
    plain = CLIPImageRewardModel.from_pretrained(tmp_path)
    scores = score_images(plain, processor, PROMPTS, images, batch_size=3)
    assert scores.variance is None
    np.testing.assert_allclose(scores.mean, score_images(model, processor, PROMPTS, images).mean, atol=1e-6)


def test_long_prompts_are_truncated_and_logged(model, processor, images, caplog):
    long_prompt = " ".join(["a red circle above a blue square"] * 20)
    scores = score_images(model, processor, [long_prompt], images[:1])
    assert np.isfinite(scores.mean).all()
    assert "1/1 prompts exceed" in caplog.text


def test_mismatched_lengths_raise(model, processor, images):
    with pytest.raises(ValueError, match="2 prompts for 1 images"):
        score_images(model, processor, PROMPTS[:2], images[:1])


def test_bf16_model_scores_close_to_float32(model, processor, images, tmp_path):
    model.save_pretrained(tmp_path)
    bf16 = GaussianCLIPImageRewardModel.from_pretrained(tmp_path, dtype=torch.bfloat16)
    low = score_images(bf16, processor, PROMPTS, images, batch_size=2)
    full = score_images(model, processor, PROMPTS, images)
    assert np.isfinite(low.mean).all() and (low.variance > 0).all()
    # bf16 encoders round the features (~3 significant digits); the float32 heads add no further rounding.
    np.testing.assert_allclose(low.mean, full.mean, atol=0.02)  # measured max 0.006
    np.testing.assert_allclose(low.variance, full.variance, rtol=0.03)  # measured max 0.009
