"""`trl-anchor train-attributes`: the HelpSteer2 recipe parses to the documented settings, and the command trains a
5-attribute Gaussian reward model on HelpSteer2-format files whose μ loads in plain transformers."""

from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from tests.conftest import tiny_gpt2_config
from trl_anchor import GaussianRewardFunction, GaussianRewardModel
from trl_anchor.cli import main as cli_main
from trl_anchor.scripts.train_attributes import make_parser

ROOT = Path(__file__).resolve().parents[2]
RECIPE = ROOT / "recipes" / "helpsteer2" / "gaussian_5attr_llama-3.1-8b.yaml"
FIXTURES = ROOT / "tests" / "fixtures" / "helpsteer2"


def test_helpsteer2_recipe_parses():
    script_args, training_args, model_args = make_parser().parse_args_and_config(
        args=["--config", str(RECIPE), "--bf16", "false"]
    )
    assert training_args.attributes == ["helpfulness", "correctness", "coherence", "complexity", "verbosity"]
    assert training_args.attribute_weights == [0.65, 0.8, 0.45, 0.55, -0.4]
    assert training_args.loss_type == "ordinal" and training_args.rating_thresholds == "midpoints"
    assert script_args.dataset_name == script_args.preference_dataset == "nvidia/HelpSteer2"
    assert script_args.pad_token == "<|finetune_right_pad_id|>"
    assert model_args.model_name_or_path == "meta-llama/Llama-3.1-8B-Instruct"


def test_train_attributes_on_helpsteer2_files_then_plain_transformers_and_grpo(tokenizer, tmp_path):
    torch.manual_seed(0)
    base = tmp_path / "base"
    from transformers import GPT2LMHeadModel

    GPT2LMHeadModel(tiny_gpt2_config(tokenizer)).save_pretrained(base)
    tokenizer.save_pretrained(base)
    out = tmp_path / "rm"
    code = cli_main([
        "train-attributes", "--model_name_or_path", str(base), "--dataset_name", str(FIXTURES / "train.jsonl"),
        "--preference_dataset", str(FIXTURES / "preference.jsonl"), "--output_dir", str(out), "--max_steps", "2",
        "--per_device_train_batch_size", "4", "--report_to", "none", "--use_cpu", "true", "--save_strategy", "no",
        "--dtype", "float32",
    ])
    assert code == 0
    plain = AutoModelForSequenceClassification.from_pretrained(out)
    assert plain.config.num_labels == 5 and plain.config.id2label[1] == "correctness"
    gaussian = GaussianRewardModel.from_pretrained(out)
    ids = torch.tensor([[5, 6, 7]])
    torch.testing.assert_close(plain(input_ids=ids).logits, gaussian(input_ids=ids).mean)
    reward = GaussianRewardFunction(str(out), AutoTokenizer.from_pretrained(out), transform="quantile:0.1")
    assert reward.transform.weights == (0.65, 0.8, 0.45, 0.55, -0.4)
    assert len(reward(prompts=["Hi"], completions=[" Hello"])) == 1
