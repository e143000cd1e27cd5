"""`GaussianCLIPImageRewardModel`: fused CLIP text–image features → μ ∈ R^A, σ² ∈ R^A, reusing the text models' heads.

Expected values are computed here from CLIP's own encoders with plain torch (cosine similarity, softplus), not with
the model's fusion or heads.
"""

import json

import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import CLIPModel

from tests.image_models import tiny_clip_config
from trl_anchor.models.modeling_gaussian import Float32Linear, GaussianRewardModelOutput, VarianceHead
from trl_anchor.models.modeling_image_gaussian import CLIPImageRewardModel, GaussianCLIPImageRewardModel

ASPECTS = ["prompt_following", "aesthetic", "fidelity", "harmlessness"]


@pytest.fixture
def model(processor):
    torch.manual_seed(0)
    model = GaussianCLIPImageRewardModel.from_config(tiny_clip_config(processor.tokenizer), aspects=ASPECTS)
    with torch.no_grad():  # a trained-looking variance head, so σ² depends on the input
        model.variance_head.weight.normal_(0, 0.5)
    return model.eval()


def _inputs(processor, n=3):
    colours = [(255, 0, 0), (0, 128, 255), (30, 200, 40)][:n]
    prompts = ["a red circle", "a blue square above a circle", "green"][:n]
    images = [Image.new("RGB", (40, 30), c) for c in colours]
    return processor(text=prompts, images=images, return_tensors="pt", padding=True)


def _clip_embeddings(model, inputs):
    clip = model.clip
    text = clip.text_model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).pooler_output
    image = clip.vision_model(pixel_values=inputs["pixel_values"]).pooler_output
    return clip.text_projection(text).double(), clip.visual_projection(image).double()


def test_config_records_aspects_weights_thresholds(model):
    settings = model.config.gaussian_reward
    assert settings["attributes"] == ASPECTS
    assert settings["attribute_weights"] == [0.25] * 4
    assert settings["attribute_thresholds"] == [[1.5, 2.5, 3.5, 4.5]] * 4
    assert model.config.num_labels == 4 and model.config.id2label[1] == "aesthetic"


def test_reuses_the_text_models_heads(model, processor):
    assert type(model.variance_head) is VarianceHead and type(model.score) is Float32Linear
    fresh = GaussianCLIPImageRewardModel.from_config(model.config)
    out = fresh(**_inputs(processor))
    assert isinstance(out, GaussianRewardModelOutput)
    torch.testing.assert_close(out.variance, torch.ones(3, 4))  # a fresh variance head gives σ² = 1


def test_mean_and_variance_match_a_hand_computation(model, processor):
    inputs = _inputs(processor)
    with torch.no_grad():
        out = model(**inputs)
        t, v = _clip_embeddings(model, inputs)
    t, v = t / t.norm(dim=-1, keepdim=True), v / v.norm(dim=-1, keepdim=True)
    features = torch.cat([t, v, t * v], dim=-1)
    mean = features @ model.score.weight.double().T + model.score.bias.double()
    raw = features @ model.variance_head.weight.double().T + model.variance_head.bias.double()
    variance = torch.log1p(torch.exp(raw)) + model.config.gaussian_reward["variance_floor"]
    assert out.mean.shape == out.variance.shape == (3, 4)
    torch.testing.assert_close(out.mean.double(), mean, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.variance.double(), variance, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(out.std, out.variance.sqrt())


def test_clip_score_is_a_linear_direction_of_the_features(model, processor):
    inputs = _inputs(processor)
    p = model.config.projection_dim
    with torch.no_grad():
        model.score.weight.zero_()
        model.score.weight[0, 2 * p :] = 1.0
        model.score.bias.zero_()
        out = model(**inputs)
        t, v = _clip_embeddings(model, inputs)
    torch.testing.assert_close(out.mean[:, 0].double(), F.cosine_similarity(t, v, dim=-1), rtol=1e-5, atol=1e-6)


def test_save_load_round_trip(model, processor, tmp_path):
    inputs = _inputs(processor)
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == ["CLIPImageRewardModel"]
    loaded = GaussianCLIPImageRewardModel.from_pretrained(tmp_path).eval()
    assert loaded.config.gaussian_reward == model.config.gaussian_reward
    with torch.no_grad():
        expected, got = model(**inputs), loaded(**inputs)
        plain = CLIPImageRewardModel.from_pretrained(tmp_path).eval()(**inputs)
    torch.testing.assert_close(got.mean, expected.mean, rtol=0, atol=0)
    torch.testing.assert_close(got.variance, expected.variance, rtol=0, atol=0)
    torch.testing.assert_close(plain.logits, expected.mean, rtol=0, atol=0)  # plain class: μ without trl_anchor


def test_overrides_when_reloading(model, tmp_path):
    model.save_pretrained(tmp_path)
    loaded = GaussianCLIPImageRewardModel.from_pretrained(
        tmp_path, aspect_weights=[1, 0, 0, 0], thresholds=[[1, 2, 3, 4]] * 3 + [[0.5, 1, 2, 9]]
    )
    assert loaded.config.gaussian_reward["attribute_weights"] == [1.0, 0.0, 0.0, 0.0]
    assert loaded.config.gaussian_reward["attribute_thresholds"][3] == [0.5, 1.0, 2.0, 9.0]
    with pytest.raises(ValueError, match="strictly increasing"):
        GaussianCLIPImageRewardModel.from_pretrained(tmp_path, thresholds=[1, 3, 2, 4])
    with pytest.raises(ValueError, match="3 `aspect_weights`"):
        GaussianCLIPImageRewardModel.from_pretrained(tmp_path, aspect_weights=[1, 2, 3])


def test_loads_a_clip_checkpoint_with_fresh_heads(processor, tmp_path):
    torch.manual_seed(1)
    clip = CLIPModel(tiny_clip_config(processor.tokenizer))
    clip.save_pretrained(tmp_path)
    model = GaussianCLIPImageRewardModel.from_pretrained(tmp_path, aspects=["aesthetic", "fidelity"])
    for name, tensor in clip.state_dict().items():
        torch.testing.assert_close(model.clip.state_dict()[name], tensor, rtol=0, atol=0)
    out = model(**_inputs(processor))
    torch.testing.assert_close(out.variance, torch.ones(3, 2))
    assert out.mean.shape == (3, 2)
    # Both heads were created, not loaded: the trainer starts them at the ratings' marginal.
    assert model.fresh_heads == {"mean", "variance"}
    model.save_pretrained(tmp_path / "gaussian")
    assert GaussianCLIPImageRewardModel.from_pretrained(tmp_path / "gaussian").fresh_heads == set()


def test_scalar_model_without_aspects(processor):
    model = GaussianCLIPImageRewardModel.from_config(tiny_clip_config(processor.tokenizer))
    out = model(**_inputs(processor))
    assert out.mean.shape == out.variance.shape == (3,)
    assert "attributes" not in model.config.gaussian_reward


def test_bf16_keeps_float32_heads_and_finite_outputs(model, processor, tmp_path):
    model.save_pretrained(tmp_path)
    loaded = GaussianCLIPImageRewardModel.from_pretrained(tmp_path, dtype=torch.bfloat16).eval()
    assert loaded.clip.text_projection.weight.dtype == torch.bfloat16
    assert loaded.score.weight.dtype == loaded.variance_head.weight.dtype == torch.float32
    inputs = _inputs(processor)
    inputs["pixel_values"] = inputs["pixel_values"].to(torch.bfloat16)
    with torch.no_grad():
        out = loaded(**inputs)
    assert out.mean.dtype == out.variance.dtype == torch.float32
    assert torch.isfinite(out.mean).all() and (out.variance > 0).all()


def test_needs_both_text_and_image(model, processor):
    inputs = _inputs(processor)
    with pytest.raises(ValueError, match="pixel_values"):
        model(input_ids=inputs["input_ids"])


def test_weights_without_aspects_are_rejected(processor):
    with pytest.raises(ValueError, match="pass `aspects"):
        GaussianCLIPImageRewardModel.from_config(tiny_clip_config(processor.tokenizer), aspect_weights=[1.0])
