"""`trl-anchor train-images`: the VisionPrefer recipe parses to the documented settings, and the command trains a
4-aspect Gaussian image reward model on VisionPrefer-format records (images drawn here) that loads and scores."""

from pathlib import Path

import numpy as np

from trl_anchor.cli import main as cli_main
from trl_anchor.models.modeling_image_gaussian import GaussianCLIPImageRewardModel
from trl_anchor.rewards.image_scoring import score_images
from trl_anchor.scripts.train_images import make_parser
from trl_anchor.studies.image_demo.backbone import build_tiny_clip
from trl_anchor.studies.image_demo.scenes import ASPECTS, write_vision_prefer_records

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "vision_prefer" / "gaussian_4aspect_clip-vit-large.yaml"


def test_vision_prefer_recipe_parses():
    script_args, training_args, model_args = make_parser().parse_args_and_config(
        args=["--config", str(RECIPE), "--bf16", "false"]
    )
    assert training_args.aspects == list(ASPECTS)
    assert training_args.aspect_weights == [0.25] * 4
    assert training_args.reward_type == "gaussian" and training_args.anchor_lambda == 1.0
    assert training_args.rating_thresholds == [1.5, 2.5, 3.5, 4.5]
    assert training_args.remove_unused_columns is False
    assert script_args.dataset_name.endswith("records.jsonl") and script_args.rating_noise == 1.0
    assert model_args.model_name_or_path == "openai/clip-vit-large-patch14"


def test_train_images_on_vision_prefer_records_then_score(tmp_path):
    truths = write_vision_prefer_records(tmp_path / "data", num_prompts=6, seed=0)
    base = build_tiny_clip(tmp_path / "clip", hidden_size=16)
    out = tmp_path / "rm"
    code = cli_main([
        "train-images", "--config", str(RECIPE), "--model_name_or_path", str(base), "--dtype", "float32",
        "--dataset_name", str(tmp_path / "data" / "records.jsonl"), "--output_dir", str(out), "--max_steps", "2",
        "--per_device_train_batch_size", "4", "--use_cpu", "true", "--bf16", "false", "--save_strategy", "no",
        "--dataloader_num_workers", "0",
    ])
    assert code == 0
    model = GaussianCLIPImageRewardModel.from_pretrained(out)
    assert model.config.gaussian_reward["attributes"] == list(ASPECTS)
    assert len(model.config.gaussian_reward["initial_mean"]) == 4  # heads started from the ratings' marginal
    from transformers import AutoProcessor

    scores = score_images(model, AutoProcessor.from_pretrained(out), [t["prompt"] for t in truths[:3]],
                          [t["path"] for t in truths[:3]])
    assert scores.mean.shape == scores.variance.shape == (3, 4)
    assert np.isfinite(scores.mean).all() and (scores.variance > 0).all()
