"""`ImageRewardTrainer`: multi-aspect Gaussian and scalar BT image reward models on PIL images drawn here.

The toy signal is learnable from pixels and words: `prompt_following` is 5 when the image's colour is the one the
prompt names and 1 otherwise; `aesthetic` is 4 for red and 2 for blue images. Expected loss values come from scipy's
normal CDF and a hand-written logistic, not from `trl_anchor.losses`.
"""

import math

import numpy as np
import pytest
import torch
from datasets import Dataset
from PIL import Image
from scipy.stats import norm

from tests.image_models import tiny_clip_config
from trl_anchor.models.modeling_image_gaussian import CLIPImageRewardModel, GaussianCLIPImageRewardModel
from trl_anchor.rewards.image_scoring import score_images
from trl_anchor.trainer.image_reward_config import ImageRewardConfig
from trl_anchor.trainer.image_reward_trainer import ImageRewardTrainer

ASPECTS = ["prompt_following", "aesthetic"]
COLOURS = {"red": (230, 20, 20), "blue": (20, 40, 230)}


def _image(colour: str, shade: int = 0) -> Image.Image:
    r, g, b = COLOURS[colour]
    image = Image.new("RGB", (36, 36), (r, g + shade, b))
    image.paste((255, 255, 255), (4 + shade % 5, 4, 14 + shade % 5, 14))  # a white square that moves
    return image


def _ratings(prompt_colour: str, colour: str) -> dict[str, int]:
    return {"prompt_following": 5 if prompt_colour == colour else 1, "aesthetic": 4 if colour == "red" else 2}


def ratings_dataset(n: int = 11) -> Dataset:
    rows = {"prompt": [], "image": [], **{a: [] for a in ASPECTS}}
    for i in range(n):
        prompt_colour, colour = ("red", "blue")[i % 2], ("red", "blue")[(i // 2) % 2]
        rows["prompt"].append(f"a {prompt_colour} square")
        rows["image"].append(_image(colour, shade=i))
        for aspect, value in _ratings(prompt_colour, colour).items():
            rows[aspect].append(value)
    return Dataset.from_dict(rows)


def pairs_dataset(n: int = 9) -> Dataset:
    rows = {"prompt": [], "chosen_image": [], "rejected_image": [], "soft_label": [],
            **{f"soft_label_{a}": [] for a in ASPECTS},
            **{f"{side}_{a}": [] for side in ("chosen", "rejected") for a in ASPECTS}}
    for i in range(n):
        colour = ("red", "blue")[i % 2]
        other = "blue" if colour == "red" else "red"
        chosen, rejected = _ratings(colour, colour), _ratings(colour, other)
        rows["prompt"].append(f"a {colour} square")
        rows["chosen_image"].append(_image(colour, shade=i))
        rows["rejected_image"].append(_image(other, shade=i))
        rows["soft_label"].append(0.9)
        for a in ASPECTS:
            rows[f"soft_label_{a}"].append(float(norm.cdf((chosen[a] - rejected[a]) / math.sqrt(2))))
            rows[f"chosen_{a}"].append(chosen[a])
            rows[f"rejected_{a}"].append(rejected[a])
    return Dataset.from_dict(rows)


def tiny_model(processor, reward_type="gaussian"):
    torch.manual_seed(0)
    config = tiny_clip_config(processor.tokenizer)
    if reward_type == "bt":
        config.num_labels = 1
        return CLIPImageRewardModel(config)
    return GaussianCLIPImageRewardModel.from_config(config, aspects=ASPECTS)


def make_args(tmp_path, **overrides) -> ImageRewardConfig:
    settings = dict(output_dir=str(tmp_path), aspects=ASPECTS, per_device_train_batch_size=4, max_steps=12,
                    learning_rate=3e-3, logging_steps=1, save_strategy="no", report_to="none", use_cpu=True, seed=0)
    return ImageRewardConfig(**{**settings, **overrides})


def _losses(trainer) -> list[float]:
    return [log["loss"] for log in trainer.state.log_history if "loss" in log]


def test_gaussian_training_lowers_the_loss_and_learns_the_signal(processor, tmp_path):
    model = tiny_model(processor)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    # 10 rated images + 9 pairs = 19 rows in batches of 4: mixed batches and a last partial batch of 3 every epoch.
    trainer = ImageRewardTrainer(model, make_args(tmp_path, max_steps=30), train_dataset=ratings_dataset(10),
                                 preference_dataset=pairs_dataset(9), processing_class=processor)
    assert len(trainer.train_dataset) % 4 == 3
    trainer.train()
    losses = _losses(trainer)
    assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.2
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert any(k.startswith("clip.vision_model") for k in changed) and any(k.startswith("clip.text") for k in changed)
    assert "variance_head.weight" in changed and "score.weight" in changed
    # `aesthetic` depends on the colour alone (4 red, 2 blue): learnt on unseen shades. `prompt_following` needs the
    # prompt–colour match, which 30 steps of a tiny CLIP do not learn: it is left as disagreement (larger σ).
    scores = score_images(model, processor, ["a red square", "a blue square"] * 2,
                          [_image("red", 7), _image("blue", 7), _image("red", 20), _image("blue", 20)])
    aesthetic = scores.mean[:, 1]
    assert aesthetic[[0, 2]].min() > aesthetic[[1, 3]].max() + 1.0
    assert scores.std[:, 1].max() < scores.std[:, 0].min()
    metrics = trainer.evaluate(pairs_dataset(6))
    assert {"eval_rating_loss", "eval_pair_loss", *(f"eval_sigma/{a}" for a in ASPECTS)} <= metrics.keys()
    settings = model.config.gaussian_reward
    assert settings["reward_type"] == "gaussian" and settings["attributes"] == ASPECTS
    assert len(settings["initial_mean"]) == 2  # heads started from the ratings' marginal, per aspect


def test_heads_start_at_the_ratings_marginal(processor, tmp_path):
    # Aspect 2 ("aesthetic") is rated 4 or 2, half each, on a grid with thresholds 1.5..4.5: the fitted normal must
    # put its mass 50/50 on classes 2 and 4 up to the smoothing of a normal — check the mean is 3 by symmetry.
    model = tiny_model(processor)
    ratings = ratings_dataset(12)
    ImageRewardTrainer(model, make_args(tmp_path), train_dataset=ratings, processing_class=processor)
    assert float(model.score.weight.abs().max()) == 0.0 and float(model.variance_head.weight.abs().max()) == 0.0
    assert model.score.bias[1].item() == pytest.approx(3.0, abs=1e-3)
    assert model.score.bias[0].item() == pytest.approx(3.0, abs=1e-3)  # ratings 5 and 1, half each
    # σ₀ from the smoothed shares (half a pseudo-rating per class) and scipy: the normal with μ = 3 whose class
    # probabilities best match them (a grid search of the cross-entropy).
    shares = (np.array([0, 6, 0, 6, 0]) + 0.5) / 14.5
    grid = np.linspace(0.3, 3.0, 2701)
    edges = np.array([-np.inf, 1.5, 2.5, 3.5, 4.5, np.inf])
    probs = np.diff(norm.cdf((edges[None, :] - 3.0) / grid[:, None]), axis=1)
    best = grid[np.argmin(-(shares * np.log(probs)).sum(1))]
    assert model.config.gaussian_reward["initial_std"][1] == pytest.approx(best, abs=2e-3)


def test_bt_arm_trains_a_scalar_reward_on_the_same_pairs(processor, tmp_path):
    model = tiny_model(processor, "bt")
    trainer = ImageRewardTrainer(model, make_args(tmp_path, reward_type="bt", max_steps=20),
                                 train_dataset=pairs_dataset(), processing_class=processor)
    trainer.train()
    losses = _losses(trainer)
    assert np.mean(losses[-4:]) < np.mean(losses[:4])
    assert trainer.evaluate(pairs_dataset(6))["eval_pair_accuracy"] == 1.0
    assert model.config.image_reward["reward_type"] == "bt"
    with pytest.raises(ValueError, match="image pairs"):
        ImageRewardTrainer(tiny_model(processor, "bt"), make_args(tmp_path, reward_type="bt"),
                           train_dataset=ratings_dataset(), processing_class=processor)


def _batch(trainer, dataset):
    rows = [dataset[i] for i in range(len(dataset))]
    return trainer._prepare_inputs(trainer.data_collator(rows))


def test_loss_matches_scipy_and_weights_act_as_copies(processor, tmp_path):
    model = tiny_model(processor)
    with torch.no_grad():
        model.variance_head.weight.normal_(0, 0.5)
        model.score.weight.normal_(0, 1.0)
        model.score.bias.copy_(torch.tensor([3.0, 2.5]))
    args = make_args(tmp_path, init_heads_from_anchors=False)
    trainer = ImageRewardTrainer(model, args, train_dataset=ratings_dataset(2), processing_class=processor)
    rated = trainer._prepare_dataset(ratings_dataset(2), processor, args, "x")
    pairs = trainer._prepare_dataset(pairs_dataset(2), processor, args, "x")
    rows = _batch(trainer, rated)
    model.eval()
    with torch.no_grad():
        out = model(input_ids=rows["input_ids"], attention_mask=rows["attention_mask"],
                    pixel_values=rows["pixel_values"])
        loss = trainer.compute_loss(model, rows).item()
    mu, sd = out.mean.double().numpy(), out.std.double().numpy()
    edges = np.array([-np.inf, 1.5, 2.5, 3.5, 4.5, np.inf])
    ratings = rows["ratings"].numpy()
    nll = -np.log(norm.cdf((edges[ratings] - mu) / sd) - norm.cdf((edges[ratings - 1] - mu) / sd))
    assert loss == pytest.approx(nll.mean(), rel=1e-5)
    # Pairs: per aspect -p log Φ(z) - (1-p) log Φ(-z); plus the rating term of both images of each pair.
    batch = _batch(trainer, pairs)
    with torch.no_grad():
        loss = trainer.compute_loss(model, batch).item()
        out = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                    pixel_values=batch["pixel_values"])
    mu, var = out.mean.double().numpy(), out.variance.double().numpy()
    z = (mu[:2] - mu[2:]) / np.sqrt(var[:2] + var[2:])
    p = batch["soft_labels"].numpy()
    pair = -(p * norm.logcdf(z) + (1 - p) * norm.logcdf(-z)).mean(1).mean()
    ratings = batch["ratings"].numpy()
    sd = np.sqrt(var)
    rating = -np.log(norm.cdf((edges[ratings] - mu) / sd) - norm.cdf((edges[ratings - 1] - mu) / sd)).mean()
    assert loss == pytest.approx(pair + rating, rel=1e-5)
    # A weight of 2 is the row twice; a weight of 0 (with a garbage label) is the row absent.
    doubled = rated.map(lambda row, i: {"weight": 2.0 if i == 0 else 1.0}, with_indices=True)
    copies = rated.select([0, 0, 1])
    zeroed = rated.map(lambda row, i: {"weight": 0.0 if i == 0 else 1.0, "ratings": [5, 5] if i == 0 else
                                       row["ratings"]}, with_indices=True)
    with torch.no_grad():
        assert trainer.compute_loss(model, _batch(trainer, doubled)).item() == pytest.approx(
            trainer.compute_loss(model, _batch(trainer, copies)).item(), rel=1e-5)
        assert trainer.compute_loss(model, _batch(trainer, zeroed)).item() == pytest.approx(
            trainer.compute_loss(model, _batch(trainer, rated.select([1]))).item(), rel=1e-5)


def test_bt_loss_matches_a_hand_logistic_with_hard_labels(processor, tmp_path):
    model = tiny_model(processor, "bt").eval()
    args = make_args(tmp_path, reward_type="bt", hard_labels=True)
    trainer = ImageRewardTrainer(model, args, train_dataset=pairs_dataset(3), processing_class=processor)
    batch = _batch(trainer, trainer.train_dataset)
    with torch.no_grad():
        loss = trainer.compute_loss(model, batch).item()
        r = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                  pixel_values=batch["pixel_values"]).logits[:, 0].double().numpy()
    assert loss == pytest.approx(np.mean(np.log1p(np.exp(-(r[:3] - r[3:])))), rel=1e-5)


def test_save_and_load_round_trip_after_training(processor, tmp_path):
    model = tiny_model(processor)
    trainer = ImageRewardTrainer(model, make_args(tmp_path, max_steps=3), train_dataset=pairs_dataset(),
                                 processing_class=processor)
    trainer.train()
    trainer.save_model(str(tmp_path / "saved"))
    loaded = GaussianCLIPImageRewardModel.from_pretrained(tmp_path / "saved").eval()
    batch = _batch(trainer, trainer.train_dataset.select(range(3)))
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values")}
    with torch.no_grad():
        expected, got = model.eval()(**inputs), loaded(**inputs)
    torch.testing.assert_close(got.mean, expected.mean)
    torch.testing.assert_close(got.variance, expected.variance)
    assert loaded.config.gaussian_reward["attributes"] == ASPECTS
    assert loaded.config.gaussian_reward["attribute_thresholds"] == [[1.5, 2.5, 3.5, 4.5]] * 2


def test_lora_on_the_clip_backbone_trains_and_saves_the_heads(processor, tmp_path):
    from peft import LoraConfig, PeftModel

    base = tiny_model(processor)
    base.save_pretrained(tmp_path / "base")
    peft_config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], modules_to_save=["score"])
    trainer = ImageRewardTrainer(base, make_args(tmp_path, max_steps=4), train_dataset=pairs_dataset(),
                                 processing_class=processor, peft_config=peft_config)
    trainer.train()
    trainer.save_model(str(tmp_path / "adapter"))
    batch = _batch(trainer, trainer.train_dataset.select(range(3)))
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values")}
    with torch.no_grad():
        trained = trainer.model.eval()(**inputs)
        fresh = GaussianCLIPImageRewardModel.from_pretrained(tmp_path / "base").eval()
        untrained = fresh(**inputs)
        reloaded = PeftModel.from_pretrained(fresh, tmp_path / "adapter").eval()(**inputs)
    assert not torch.allclose(trained.variance, untrained.variance)  # the variance head trained under LoRA
    torch.testing.assert_close(reloaded.mean, trained.mean)
    torch.testing.assert_close(reloaded.variance, trained.variance)


def test_bf16_keeps_heads_in_float32(processor, tmp_path):
    tiny_model(processor).save_pretrained(tmp_path / "base")
    model = GaussianCLIPImageRewardModel.from_pretrained(tmp_path / "base", dtype=torch.bfloat16)
    assert model.clip.vision_model.embeddings.patch_embedding.weight.dtype == torch.bfloat16
    trainer = ImageRewardTrainer(model, make_args(tmp_path, bf16=True, max_steps=3), train_dataset=pairs_dataset(),
                                 processing_class=processor)
    trainer.train()
    assert model.score.weight.dtype == torch.float32 and model.variance_head.weight.dtype == torch.float32
    assert all(math.isfinite(loss) for loss in _losses(trainer))


def test_bad_input_names_the_column_and_row(processor, tmp_path):
    bad = ratings_dataset(3).map(lambda row, i: {"aesthetic": 7 if i == 2 else row["aesthetic"]}, with_indices=True)
    with pytest.raises(ValueError, match=r"`aesthetic`.*1\.\.5.*row 2 has 7"):
        ImageRewardTrainer(tiny_model(processor), make_args(tmp_path), train_dataset=bad, processing_class=processor)
    with pytest.raises(ValueError, match=r"no column\(s\) \['aesthetic'\]"):
        ImageRewardTrainer(tiny_model(processor), make_args(tmp_path),
                           train_dataset=ratings_dataset(3).remove_columns("aesthetic"), processing_class=processor)
    labels = pairs_dataset(3).map(lambda row, i: {"soft_label": 1.5 if i == 1 else 0.9}, with_indices=True)
    with pytest.raises(ValueError, match=r"`soft_label`.*row 1 has 1\.5"):
        ImageRewardTrainer(tiny_model(processor), make_args(tmp_path), train_dataset=labels,
                           processing_class=processor)
