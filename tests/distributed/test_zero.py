"""DeepSpeed ZeRO-2 and ZeRO-3 for real: `accelerate launch --num_processes 2` on CPU (gloo) with the shipped
`recipes/accelerate_configs/zero{2,3}.yaml`, against a plain single-process run of the same script.

A tiny GPT-2 Gaussian reward model is built from a saved base causal LM (both heads are initialised inside the
trainer, under ZeRO-3's partitioned init), trained 4 steps with the same global batch of 4 pairs, checkpointed, saved
(ZeRO-3: the gathered 16-bit state dict) and evaluated; see `zero_train_script.py`. The ZeRO-2 run trains on
padding-free (packed) batches, so it also checks packing under DeepSpeed against the padded reference.

Tolerances: runs see the same examples in the same order and differ only in the order of float reductions, which
AdamW amplifies for near-zero gradient entries; eval losses must agree to 1e-4 relative (measured ≲ 1e-6).
Reloaded checkpoints must reproduce the in-training model's μ and σ² to 1e-5 (float32 weights on CPU).
"""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import build_tokenizer, tiny_gpt2_config
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, GPT2LMHeadModel

from trl_anchor import GaussianRewardModel
from trl_anchor.rewards.scoring import score_token_ids

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("zero_train_script.py")
ACCELERATE_CONFIGS = REPO / "recipes" / "accelerate_configs"
LAUNCH_TIMEOUT_S = 600
EVAL_LOSS_RTOL = 1e-4
RELOAD_ATOL = 1e-5
WORDS = "the quick brown fox jumps over the lazy dog a helpful answer explains the reason step by step".split()


# -------------------------------------------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    """Tokenizer, base causal LM (no reward heads) and train/eval JSONL files that every run reads."""
    path = tmp_path_factory.mktemp("zero_workspace")
    tokenizer = build_tokenizer(path / "tokenizer")
    torch.manual_seed(0)
    config = tiny_gpt2_config(tokenizer)
    config.num_labels = 2  # what a causal LM checkpoint carries; the trainer makes it a 1-output reward model
    GPT2LMHeadModel(config).save_pretrained(path / "base")
    tokenizer.save_pretrained(path / "base")
    rng = np.random.default_rng(0)
    for split, size in (("train", 32), ("eval", 16)):
        with open(path / f"{split}.jsonl", "w") as f:
            for i in range(size):
                row = {
                    "prompt": f"user {i} asks ",
                    "chosen": " ".join(rng.choice(WORDS, int(rng.integers(2, 12)))),
                    "rejected": " ".join(rng.choice(WORDS, int(rng.integers(2, 12)))),
                    "soft_label": round(float(rng.uniform(0.5, 1.0)), 3),
                    "chosen_score": float(rng.normal(1.0, 1.0)),
                    "rejected_score": float(rng.normal(-1.0, 1.0)),
                }
                f.write(json.dumps(row) + "\n")
    return path


def _env() -> dict[str, str]:
    return {
        **os.environ,
        "DS_ACCELERATOR": "cpu",  # DeepSpeed's CPU accelerator: gloo collectives, no CUDA probing
        "HF_HUB_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "WANDB_DISABLED": "true",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO / "tests"), os.environ.get("PYTHONPATH")])),
    }


def _free_port() -> int:
    with socket.socket() as sock:  # other jobs on the machine may launch too: never assume port 29500 is free
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(command: list[str], workspace: Path, output: Path, scenarios: str, extra=()) -> dict[str, dict]:
    full = command + [str(SCRIPT), "--workspace", str(workspace), "--output", str(output), "--scenarios", scenarios]
    full += list(extra)
    result = subprocess.run(full, env=_env(), cwd=REPO, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S)
    if result.returncode != 0:
        output = f"{result.stdout[-4000:]}\n{result.stderr[-8000:]}"
        pytest.fail(f"{' '.join(full)} failed ({result.returncode}):\n{output}")
    return {name: json.loads((output / f"{name}.json").read_text()) for name in scenarios.split(",")}


@pytest.fixture(scope="module")
def single_process(workspace, tmp_path_factory) -> dict[str, dict]:
    return _run([sys.executable], workspace, tmp_path_factory.mktemp("single"), "full,lora")


@pytest.fixture(scope="module")
def zero_runs(workspace, tmp_path_factory) -> dict[int, dict[str, dict]]:
    runs = {}
    # ZeRO-2 trains on padding-free batches: its match with the padded single-process run also covers packing under
    # DeepSpeed.
    for stage, scenarios, extra in ((2, "full,resume", ["--padding_free"]), (3, "full,resume,lora", [])):
        launch = [
            sys.executable, "-m", "accelerate.commands.launch",
            "--config_file", str(ACCELERATE_CONFIGS / f"zero{stage}.yaml"),
            "--num_processes", "2",
            "--mixed_precision", "no",  # CPU run in float32, so the comparison with one process is exact enough
            "--main_process_port", str(_free_port()),
        ]
        runs[stage] = _run(launch, workspace, tmp_path_factory.mktemp(f"zero{stage}"), scenarios, extra)
    return runs


# ----------------------------------------------------------------------------------------------------------- tests
@pytest.mark.parametrize("stage", [2, 3])
def test_zero_runs_two_processes_and_matches_single_process_eval_loss(zero_runs, single_process, stage):
    full = zero_runs[stage]["full"]
    assert full["world_size"] == 2
    assert full["zero_stage"] == stage
    assert full["padding_free"] is (stage == 2)
    assert len(full["train_losses"]) == 4
    reference = single_process["full"]
    assert reference["world_size"] == 1 and reference["zero_stage"] is None
    assert full["eval_loss"] == pytest.approx(reference["eval_loss"], rel=EVAL_LOSS_RTOL)
    np.testing.assert_allclose(full["train_losses"], reference["train_losses"], rtol=EVAL_LOSS_RTOL)
    # Training moved the model (otherwise the comparison would be vacuous).
    assert not np.allclose(full["after"]["mean"], full["before"]["mean"], atol=1e-4)


def _step0_start(workspace: Path) -> tuple[float, float]:
    """(μ₀, σ₀) of `init_heads_from_anchors`, recomputed with scipy: the normal whose class shares at the thresholds
    (the 25th/75th score percentiles) equal the train anchors', Φ((τ_k − μ₀)/σ₀) = cumulative share k."""
    from scipy.stats import norm

    rows = [json.loads(line) for line in (workspace / "train.jsonl").read_text().splitlines()]
    scores = np.array([r["chosen_score"] for r in rows] + [r["rejected_score"] for r in rows])
    tau = np.percentile(scores, [25, 75])
    shares = np.bincount(np.searchsorted(tau, scores, side="right"), minlength=3) / scores.size
    z = norm.ppf(np.cumsum(shares)[:2])
    std = (tau[1] - tau[0]) / (z[1] - z[0])
    return float(tau[0] - std * z[0]), float(std)


def test_zero3_initialises_both_heads_like_a_single_process(zero_runs, single_process, workspace):
    full = zero_runs[3]["full"]
    before = full["before"]
    # The fresh heads start at the train anchors' base rate, written through ZeRO-3's gathered parameters: GPT-2's
    # bias-free mean head at μ = 0 (zero weights) with μ₀ recorded as the anchors' offset, the variance head at σ₀.
    mean, std = _step0_start(workspace)
    np.testing.assert_array_equal(before["mean"], 0.0)
    np.testing.assert_allclose(np.sqrt(before["variance"]), std, rtol=1e-3)
    np.testing.assert_allclose(before["variance"], single_process["full"]["before"]["variance"], rtol=1e-6)
    settings = json.loads((Path(full["saved"]) / "config.json").read_text())["gaussian_reward"]
    assert settings["anchor_mean_offset"] == pytest.approx(mean, abs=1e-3)


@pytest.mark.parametrize("stage", [2, 3])
def test_zero_checkpoint_loads_in_plain_transformers_and_gaussian_model(zero_runs, stage):
    full = zero_runs[stage]["full"]
    saved = Path(full["saved"])
    tensors = load_file(saved / "model.safetensors")
    assert {"variance_head.weight", "variance_head.bias", "score.weight"} <= set(tensors)

    plain = AutoModelForSequenceClassification.from_pretrained(saved)
    np.testing.assert_allclose(_score(plain, full).mean, full["after"]["mean"], atol=RELOAD_ATOL)

    scores = _score(GaussianRewardModel.from_pretrained(saved), full)
    np.testing.assert_allclose(scores.mean, full["after"]["mean"], atol=RELOAD_ATOL)
    np.testing.assert_allclose(scores.variance, full["after"]["variance"], rtol=RELOAD_ATOL)
    assert not np.allclose(scores.variance, 1.0), "the trained variance head was not saved"


@pytest.mark.parametrize("stage", [2, 3])
def test_zero_resume_from_checkpoint_reaches_the_uninterrupted_model(zero_runs, stage):
    full, resumed = zero_runs[stage]["full"], zero_runs[stage]["resume"]
    assert resumed["global_step"] == 4
    assert resumed["eval_loss"] == pytest.approx(full["eval_loss"], rel=1e-5)
    np.testing.assert_allclose(resumed["after"]["mean"], full["after"]["mean"], atol=1e-5)
    np.testing.assert_allclose(resumed["after"]["variance"], full["after"]["variance"], rtol=1e-5)


def test_lora_with_zero3_uses_reentrant_checkpointing_and_saves_both_heads(zero_runs, single_process, workspace):
    from peft import PeftModel

    lora = zero_runs[3]["lora"]
    # PEFT + ZeRO-3 + gradient checkpointing needs reentrant checkpointing; TRL's RewardTrainer forces it.
    assert lora["gradient_checkpointing_kwargs"]["use_reentrant"] is True
    assert lora["eval_loss"] == pytest.approx(single_process["lora"]["eval_loss"], rel=EVAL_LOSS_RTOL)

    saved = Path(lora["saved"])
    adapter = load_file(saved / "adapter_model.safetensors")
    lora_b = [t for name, t in adapter.items() if "lora_B" in name]
    assert lora_b and all(t.abs().sum() > 0 for t in lora_b), "LoRA weights got no gradient"
    assert any("variance_head" in name for name in adapter) and any("score" in name for name in adapter)

    base = GaussianRewardModel.from_pretrained(workspace / "base")
    scores = _score(PeftModel.from_pretrained(base, saved).merge_and_unload(), lora)
    np.testing.assert_allclose(scores.mean, lora["after"]["mean"], atol=RELOAD_ATOL)
    np.testing.assert_allclose(scores.variance, lora["after"]["variance"], rtol=RELOAD_ATOL)


def _score(model, run: dict):
    """Score the probe sequences the launched run scored, in one process."""
    with torch.no_grad():
        return score_token_ids(model, run["after"]["input_ids"], model.config.pad_token_id)
