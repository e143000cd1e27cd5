"""`ImageRewardFunction`: the (prompts, images) → rewards call of diffusion RL code. Expected rewards are computed
here from the model's own forward pass with numpy (w-weighted μ, √(Σ w² σ²)), not with `RewardTransform`."""

import numpy as np
import pytest
import torch
from PIL import Image

from tests.image_models import tiny_clip_config
from trl_anchor.models.modeling_image_gaussian import GaussianCLIPImageRewardModel
from trl_anchor.rewards.image_reward_function import ImageRewardFunction, to_pil_images

ASPECTS = ["prompt_following", "aesthetic", "fidelity"]
WEIGHTS = [0.5, 0.3, 0.2]
PROMPTS = ["a red circle", "a blue square", "green", "a yellow star", "circle"]


@pytest.fixture(scope="module")
def model(processor):
    torch.manual_seed(0)
    model = GaussianCLIPImageRewardModel.from_config(
        tiny_clip_config(processor.tokenizer), aspects=ASPECTS, aspect_weights=WEIGHTS
    )
    with torch.no_grad():
        model.variance_head.weight.normal_(0, 0.5)
    return model.eval()


@pytest.fixture(scope="module")
def pixels():
    return torch.rand(len(PROMPTS), 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _forward(model, processor, prompts, images):
    with torch.no_grad():
        out = model(**processor(text=prompts, images=images, return_tensors="pt", padding=True))
    return out.mean.double().numpy(), out.variance.double().numpy()


def test_lcb_rewards_match_a_hand_computation_and_tensor_input_equals_pil(model, processor, pixels):
    reward_fn = ImageRewardFunction(model, processor, transform="lcb:1.0", batch_size=2)
    rewards = reward_fn(PROMPTS, pixels)  # a diffusers-style (B, 3, H, W) tensor in [0, 1]
    assert isinstance(rewards, list) and len(rewards) == len(PROMPTS) and all(isinstance(r, float) for r in rewards)
    images = [Image.fromarray((p.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)) for p in pixels]
    mean, variance = _forward(model, processor, PROMPTS, images)
    w = np.array(WEIGHTS)
    expected = mean @ w - np.sqrt(variance @ w**2)
    np.testing.assert_allclose(rewards, expected, rtol=1e-5, atol=1e-6)
    assert reward_fn(PROMPTS, images) == pytest.approx(rewards, rel=1e-6)
    assert reward_fn.last_mean.shape == (len(PROMPTS), 3)


def test_aspect_weights_in_the_spec_override_the_recorded_ones(model, processor, pixels):
    rewards = ImageRewardFunction(model, processor, transform="mean,weights:0:1:0")(PROMPTS, pixels)
    mean, _ = _forward(model, processor, PROMPTS, to_pil_images(pixels))
    np.testing.assert_allclose(rewards, mean[:, 1], rtol=1e-5, atol=1e-6)


def test_ddpo_shape_and_bad_tensors(model, processor, pixels):
    reward_fn = ImageRewardFunction(model, processor)
    rewards, metadata = reward_fn.as_ddpo_reward()(pixels[:2], PROMPTS[:2], [{}, {}])
    assert rewards.shape == (2,) and rewards.dtype == torch.float32 and metadata == {}
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        reward_fn(PROMPTS, pixels * 2 - 1)
    with pytest.raises(ValueError, match="4-dimensional"):
        reward_fn(PROMPTS[:1], pixels[0])
