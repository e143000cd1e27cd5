"""`trl-anchor irl-sft` from the shipped recipes (tiny model, conversational `messages` demonstrations), resuming
from the command line, and `trl-anchor irl-sft-study` parsing."""

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM

from trl_anchor.cli import main as cli
from trl_anchor.scripts.irl_sft import make_parser
from trl_anchor.scripts.irl_sft_study import make_parser as make_study_parser

RECIPES = Path(__file__).resolve().parents[2] / "recipes" / "irl-sft"
TINY = [
    "--dtype", "float32", "--attn_implementation", "eager", "--bf16", "false", "--gradient_checkpointing", "false",
    "--dataset_train_split", "train", "--max_train_samples", "6", "--max_new_tokens", "4", "--max_steps", "1",
    "--reward_max_steps", "1", "--per_device_train_batch_size", "2", "--per_device_eval_batch_size", "8",
    "--gradient_accumulation_steps", "1", "--generation_batch_size", "8", "--kl_num_prompts", "2",
    "--logging_steps", "1", "--disable_tqdm", "true",
]


@pytest.fixture(scope="module")
def messages_file(tmp_path_factory) -> str:
    rows = [
        {"messages": [{"role": "user", "content": f"what is {a} plus {a}"},
                      {"role": "assistant", "content": f"it is {2 * a}"}]}
        for a in range(6)
    ]
    path = tmp_path_factory.mktemp("demos") / "demos.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in rows))
    return str(path)


@pytest.mark.parametrize("recipe", sorted(p.name for p in RECIPES.glob("*.yaml")))
def test_recipes_parse(recipe):
    script_args, config, model_args = make_parser().parse_args_and_config(
        ["--config", str(RECIPES / recipe), "--bf16", "false"]
    )
    assert model_args.model_name_or_path == "Qwen/Qwen2.5-0.5B-Instruct"
    assert script_args.dataset_name == "HuggingFaceH4/ultrachat_200k"
    assert config.mode == {"irft": "implicit", "rft": "explicit"}[recipe.split("_")[0]]
    assert config.output_dir.startswith("outputs/")


@pytest.mark.slow
def test_irft_recipe_runs_and_resumes_from_the_command_line(tmp_path, tiny_causal_lm_dir, messages_file):
    out = tmp_path / "irft"
    base = ["irl-sft", "--config", str(RECIPES / "irft_qwen2.5-0.5b.yaml"), "--model_name_or_path",
            str(tiny_causal_lm_dir), "--dataset_name", messages_file, "--output_dir", str(out), *TINY]
    assert cli([*base, "--num_rounds", "2"]) == 0
    state = json.loads((out / "irl_sft_state.json").read_text())
    assert [h["num_prompts"] for h in state["history"]] == [3, 3]  # 6 demonstrations split across 2 rounds
    samples = json.loads((out / "round-1" / "samples.json").read_text())
    assert len(samples) == 3 and all(len(row) == 1 for row in samples)  # the recipe's one sample per prompt

    with pytest.raises(ValueError, match="resumes from the rounds saved in `output_dir`"):
        cli([*base, "--num_rounds", "3", "--resume_from_checkpoint", str(tmp_path / "elsewhere")])
    assert cli([*base, "--num_rounds", "3", "--split_prompts_across_rounds", "false",
                "--resume_from_checkpoint", "true"]) == 0
    state = json.loads((out / "irl_sft_state.json").read_text())
    assert [h["round"] for h in state["history"]] == [1, 2, 3] and state["history"][2]["num_prompts"] == 6
    final = AutoModelForCausalLM.from_pretrained(out)
    round_three = AutoModelForCausalLM.from_pretrained(out / "round-3" / "policy")
    for (name, value), other in zip(final.named_parameters(), round_three.parameters(), strict=True):
        assert torch.equal(value, other), name


@pytest.mark.slow
def test_rft_recipe_runs_on_conversational_demonstrations(tmp_path, tiny_causal_lm_dir, messages_file):
    out = tmp_path / "rft"
    code = cli(["irl-sft", "--config", str(RECIPES / "rft_qwen2.5-0.5b.yaml"), "--model_name_or_path",
                str(tiny_causal_lm_dir), "--dataset_name", messages_file, "--output_dir", str(out),
                "--num_rounds", "1", "--num_samples_per_prompt", "2", *TINY])
    assert code == 0
    (metrics,) = json.loads((out / "irl_sft_state.json").read_text())["history"]
    assert metrics["num_prompts"] == 6 and metrics["reward_margin"] > metrics["reward_margin_before"]
    assert (out / "round-1" / "reward_model" / "config.json").is_file()
    assert (out / "round-1" / "best_of_n.json").is_file() and (out / "round-1" / "demo_weights.json").is_file()


def test_study_parser_reads_flags():
    (config,) = make_study_parser().parse_args_and_config(["--seeds", "0", "1", "--noise_levels", "0.4",
                                                           "--report_dir", "/tmp/x"])
    assert config.seeds == [0, 1] and config.noise_levels == [0.4] and config.report_dir == "/tmp/x"
    with pytest.raises(ValueError, match="Unknown arms"):
        make_study_parser().parse_args_and_config(["--arms", "sft", "ppo"])
