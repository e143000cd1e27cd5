"""The 7B–8B recipes say what they are: the paper's reference-code settings (global batch 64, weight decay 1e-4,
Skywork-Reward-V2 anchors) and a pad token distinct from the model's EOS token, so the reward is trained at the EOS."""

from pathlib import Path

import pytest
import yaml

from trl_anchor.scripts.train import make_parser

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
# recipe → (the model's EOS token, a dedicated pad token in its vocabulary)
EIGHT_B = {
    "llama-3.1-8b": ("<|eot_id|>", "<|finetune_right_pad_id|>"),
    "qwen2.5-7b": ("<|im_end|>", "<|endoftext|>"),
}


@pytest.mark.parametrize("name", sorted(EIGHT_B))
def test_eight_b_recipe_matches_the_reference_settings(name):
    recipe = RECIPES / name / "gaussian_anchor.yaml"
    _, training_args, _ = make_parser().parse_args_and_config(args=["--config", str(recipe), "--bf16", "false"])
    eos, pad = EIGHT_B[name]
    assert training_args.pad_token == pad and training_args.pad_token != eos
    launch = yaml.safe_load((RECIPES / "accelerate_configs" / "zero3.yaml").read_text())
    global_batch = (
        training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps * launch["num_processes"]
    )
    assert global_batch == 64
    assert training_args.weight_decay == pytest.approx(1e-4)
    text = recipe.read_text()
    assert "Skywork/Skywork-Reward-V2-Llama-3.1-8B" in text and "published" not in text


def test_recipes_readme_lists_the_differences_from_the_reference_code():
    readme = (RECIPES / "README.md").read_text()
    assert "published" not in readme
    section = readme.split("Differences from the paper's reference code", 1)[1]
    for topic in ("padding-free", "max_length", "pad token"):
        assert topic in section, topic
