"""`trl-anchor irl-sft` under `accelerate launch --num_processes 2` with the shipped ZeRO-2 configuration on CPU
(gloo): the main process samples, scores and writes each round's shared files, both ranks read them and train the
round's reward model and policy, and the run ends with one state file and a saved final policy."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, GPT2Config, GPT2LMHeadModel

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    sys.path.insert(0, str(REPO / "tests" / "trainer"))
    from test_irl_sft import WORDS, char_tokenizer

    path = tmp_path_factory.mktemp("irl_sft_launch")
    tokenizer = char_tokenizer()
    torch.manual_seed(0)
    config = GPT2Config(n_layer=1, n_head=2, n_embd=32, n_positions=32, vocab_size=len(tokenizer), bos_token_id=0,
                        eos_token_id=0, pad_token_id=0)
    GPT2LMHeadModel(config).save_pretrained(path / "policy")
    tokenizer.save_pretrained(path / "policy")
    rows = [{"prompt": w + ">", "completion": w[::-1]} for w in WORDS]
    (path / "demos.jsonl").write_text("\n".join(json.dumps(row) for row in rows))
    return path


def test_explicit_round_on_two_zero2_processes(workspace, tmp_path):
    output = tmp_path / "run"
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(REPO / "recipes" / "accelerate_configs" / "zero2.yaml"),
        "--num_processes", "2", "--mixed_precision", "no", "--main_process_port", str(_free_port()),
        "-m", "trl_anchor.cli", "irl-sft",
        "--model_name_or_path", str(workspace / "policy"), "--dataset_name", str(workspace / "demos.jsonl"),
        "--output_dir", str(output), "--mode", "explicit", "--num_rounds", "1", "--num_samples_per_prompt", "2",
        "--demo_weighting", "gaussian", "--max_new_tokens", "4", "--max_steps", "2", "--reward_max_steps", "2",
        "--per_device_train_batch_size", "2", "--per_device_eval_batch_size", "8", "--learning_rate", "5e-3",
        "--reward_learning_rate", "5e-3", "--bf16", "false", "--gradient_checkpointing", "false",
        "--kl_num_prompts", "4", "--report_to", "none", "--disable_tqdm", "true", "--dtype", "float32",
        "--use_cpu", "true",  # on CPU, what makes `args.world_size` count both processes for DeepSpeed's batch check
    ]
    env = {**os.environ, "DS_ACCELERATOR": "cpu", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "WANDB_DISABLED": "true"}
    result = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True, timeout=900)
    if result.returncode != 0:
        pytest.fail(f"launch failed ({result.returncode}):\n{result.stdout[-4000:]}\n{result.stderr[-8000:]}")
    (metrics,) = json.loads((output / "irl_sft_state.json").read_text())["history"]
    assert metrics["num_prompts"] == 8 and metrics["num_pairs"] > 0
    assert metrics["reward_margin"] > metrics["reward_margin_before"] and metrics["demo_weight_count"] > 0
    for shared in ("samples.json", "demo_weights.json", "best_of_n.json"):
        assert (output / "round-1" / shared).is_file(), shared
    trained = AutoModelForCausalLM.from_pretrained(output)
    initial = AutoModelForCausalLM.from_pretrained(workspace / "policy")
    assert any(not torch.equal(a, b) for a, b in zip(trained.parameters(), initial.parameters(), strict=True))
