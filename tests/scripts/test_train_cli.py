import json
from pathlib import Path

import pytest
import yaml
from huggingface_hub import ModelCard

from trl_anchor.cli import main as cli
from trl_anchor.models.loading import load_reward_model
from trl_anchor.models.modeling_gaussian import GaussianRewardModel
from trl_anchor.scripts.train import make_parser
from trl_anchor.scripts.utils import DatasetArguments, load_preference_data, resolve_model_path, run_adapter

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
QUICKSTART = RECIPES / "quickstart" / "gaussian_minilm.yaml"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
# Quickstart-sized overrides: a couple of optimizer steps on a tiny GPT-2 instead of minutes on MiniLM.
SMALL = [
    "--dataset_kwargs",
    '{"num_train_pairs": 24, "num_eval_pairs": 8}',
    "--max_steps",
    "2",
    "--per_device_train_batch_size",
    "8",
    "--logging_steps",
    "1",
]


def test_quickstart_recipe_trains_and_writes_card(tmp_path, tiny_causal_lm_dir):
    out = tmp_path / "gauss"
    code = cli(
        [
            "train",
            "--config",
            str(QUICKSTART),
            "--model_name_or_path",
            str(tiny_causal_lm_dir),
            "--output_dir",
            str(out),
            "--eval_strategy",
            "steps",
            "--eval_steps",
            "2",
            *SMALL,
        ]
    )
    assert code == 0
    config = json.loads((out / "config.json").read_text())
    assert config["gaussian_reward"]["anchor_thresholds"] == [-0.6, 0.6]
    assert config["gaussian_reward"]["anchor_lambda"] == 1.0 and config["gaussian_reward"]["anchor_form"] == "class"
    model, _ = load_reward_model(str(out))
    assert isinstance(model, GaussianRewardModel)
    card = ModelCard.load(out / "README.md")
    assert card.data.pipeline_tag == "text-classification" and card.data.datasets is None
    # An adapter's evaluation split has no Hub dataset id: its results are in the card text, not in model-index.
    assert card.data.eval_results is None
    metrics = {r["metric"]: r["value"] for r in card.data.to_dict()["trl_anchor_local_results"]}
    assert {"Pairwise accuracy", "Brier score", "Expected calibration error", "Anchor accuracy"} <= set(metrics)
    assert "trl-anchor `synthetic` dataset" in card.text and "| max_steps | 2 |" in card.text


def _write_jsonl(path: Path, n: int) -> Path:
    rows = [
        {
            "prompt": "the cartoon cat",
            "chosen": "a helpful answer step by step",
            "rejected": "rude and wrong",
            "soft_label": 0.9 - 0.05 * (i % 4),
        }
        for i in range(n)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_bt_arm_from_local_file_recipe(tmp_path, tiny_causal_lm_dir):
    data = _write_jsonl(tmp_path / "prefs.jsonl", 16)
    recipe = tmp_path / "bt.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "model_name_or_path": str(tiny_causal_lm_dir),
                "dataset_name": str(data),
                "reward_type": "bt",
                "output_dir": str(tmp_path / "bt"),
                "max_steps": 2,
                "per_device_train_batch_size": 8,
                "bf16": False,
                "gradient_checkpointing": False,
                "report_to": "none",
                "save_strategy": "no",
                "learning_rate": 1e-3,
            }
        )
    )
    assert cli(["train", "--config", str(recipe)]) == 0
    model, _ = load_reward_model(str(tmp_path / "bt"))
    assert not isinstance(model, GaussianRewardModel)
    card = ModelCard.load(tmp_path / "bt" / "README.md")
    assert "Bradley–Terry" in card.text and card.data.datasets is None  # a local file is not a Hub dataset


# PPO and GRPO recipes drive the example scripts; IRL-SFT, HelpSteer2 and VisionPrefer recipes `trl-anchor irl-sft`,
# `trl-anchor train-attributes` and `trl-anchor train-images`: their own tests parse them.
OTHER_COMMANDS = {"accelerate_configs", "ppo", "grpo", "irl-sft", "helpsteer2", "vision_prefer"}
TRAIN_RECIPES = sorted(p for p in RECIPES.rglob("*.yaml") if not OTHER_COMMANDS & set(p.relative_to(RECIPES).parts))


@pytest.mark.parametrize("recipe", TRAIN_RECIPES, ids=lambda p: str(p.relative_to(RECIPES)))
def test_recipes_parse(recipe):
    # bf16 is switched off only because this machine has no bf16-capable accelerator.
    script_args, training_args, model_args = make_parser().parse_args_and_config(
        ["--config", str(recipe), "--bf16", "false"]
    )
    assert model_args.model_name_or_path and training_args.output_dir.startswith("outputs/")
    assert script_args.dataset_adapter or script_args.dataset_name
    assert training_args.reward_type in ("gaussian", "bt")


def test_data_sources(tmp_path, caption_data_dir, minilm_dir):
    data = load_preference_data(DatasetArguments(dataset_name=str(_write_jsonl(tmp_path / "d.jsonl", 3))))
    assert list(data) == ["train"] and data["train"].num_rows == 3
    splits = run_adapter(
        "caption_contest", str(caption_data_dir), contests=[538, 636], pairs_per_contest=3, test_size=0.5
    )
    assert {"train", "test"} <= set(splits) and "chosen_anchor_counts" in splits["train"].column_names
    assert set(
        load_preference_data(
            DatasetArguments(dataset_adapter="synthetic", dataset_kwargs='{"num_train_pairs": 4, "num_eval_pairs": 2}')
        )
    ) == {"train", "test"}
    # Any adapter module `trl_anchor.data.<name>` with `load_<name>(source, ...)` resolves by name.
    multipref = FIXTURES / "multipref" / "train.jsonl"
    data = load_preference_data(DatasetArguments(dataset_adapter="multipref", dataset_path=str(multipref)))
    assert list(data) == ["train"] and "soft_label" in data["train"].column_names
    with pytest.raises(ValueError, match="Unknown dataset adapter 'nope'"):
        run_adapter("nope")
    with pytest.raises(ValueError, match="either `dataset_name` or `dataset_adapter`"):
        DatasetArguments(dataset_name="x", dataset_adapter="synthetic")
    with pytest.raises(ValueError, match="JSON object"):
        DatasetArguments(dataset_kwargs="{oops")
    assert resolve_model_path("sentence-transformers/all-MiniLM-L6-v2") == str(minilm_dir)
    assert resolve_model_path("org/other") == "org/other"


def test_missing_split_is_named(tmp_path, tiny_causal_lm_dir):
    data = _write_jsonl(tmp_path / "prefs.jsonl", 4)
    with pytest.raises(ValueError, match="evaluation split 'test' is not in the dataset"):
        cli(
            [
                "train",
                "--model_name_or_path",
                str(tiny_causal_lm_dir),
                "--dataset_name",
                str(data),
                "--output_dir",
                str(tmp_path / "o"),
                "--eval_strategy",
                "steps",
                "--bf16",
                "false",
                "--report_to",
                "none",
            ]
        )


@pytest.mark.slow
@pytest.mark.distributed
def test_train_under_accelerate_launch(tmp_path, tiny_causal_lm_dir):
    import subprocess
    import sys

    out = tmp_path / "ddp"
    command = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--num_processes",
        "2",
        "--cpu",
        "-m",
        "trl_anchor.cli",
        "train",
        "--config",
        str(QUICKSTART),
        "--model_name_or_path",
        str(tiny_causal_lm_dir),
        "--output_dir",
        str(out),
        *SMALL,
        "--per_device_train_batch_size",
        "4",
    ]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert (out / "model.safetensors").is_file()
    assert (
        completed.stderr.count("Model and model card saved") + completed.stdout.count("Model and model card saved")
        == 1
    )
    assert ModelCard.load(out / "README.md").data.pipeline_tag == "text-classification"
