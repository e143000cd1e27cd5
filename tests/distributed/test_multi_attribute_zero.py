"""MultiAttributeRewardTrainer under DeepSpeed ZeRO-2 (padding-free) and ZeRO-3 with `accelerate launch
--num_processes 2` on CPU (gloo), against a single-process run of the same script (`multi_attribute_zero_script.py`).

The runs see the same examples in the same order (sequential sampling, same global batch) and differ only in the
order of float reductions: eval losses must agree to 1e-4 relative. The ZeRO-3 checkpoint (gathered 16-bit state
dict) must load in plain transformers with one μ per attribute and in trl-anchor with σ² per attribute.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import build_tokenizer, tiny_gpt2_config
from test_zero import ACCELERATE_CONFIGS, LAUNCH_TIMEOUT_S, REPO, WORDS, _env, _free_port
from transformers import AutoModelForSequenceClassification, GPT2LMHeadModel

from trl_anchor import GaussianRewardModel

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

SCRIPT = Path(__file__).with_name("multi_attribute_zero_script.py")
ATTRIBUTES = ["helpfulness", "correctness", "verbosity"]


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("multi_attribute_workspace")
    tokenizer = build_tokenizer(path / "tokenizer")
    torch.manual_seed(0)
    config = tiny_gpt2_config(tokenizer)
    config.num_labels = 2
    GPT2LMHeadModel(config).save_pretrained(path / "base")
    tokenizer.save_pretrained(path / "base")
    rng = np.random.default_rng(0)
    for split, size in (("train", 12), ("eval", 8)):
        with open(path / f"{split}.jsonl", "w") as f:
            for i in range(size):
                row = {"prompt": f"user {i} asks ", "response": " ".join(rng.choice(WORDS, int(rng.integers(2, 12))))}
                # No missing ratings here: each process normalises by the ratings it sees (as each process of the
                # scalar trainer normalises its anchors), so only complete ratings make one and two processes equal.
                row.update({a: int(rng.integers(0, 5)) for a in ATTRIBUTES})
                f.write(json.dumps(row) + "\n")
    with open(path / "pairs.jsonl", "w") as f:
        for i in range(4):
            row = {"prompt": f"user {i} asks ", "chosen": " ".join(rng.choice(WORDS, 5)),
                   "rejected": " ".join(rng.choice(WORDS, 3)), "soft_label": 0.8}
            f.write(json.dumps(row) + "\n")
    return path


def _run(command, workspace, output, extra=()):
    full = [*command, str(SCRIPT), "--workspace", str(workspace), "--output", str(output), *extra]
    result = subprocess.run(full, env=_env(), cwd=REPO, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S)
    if result.returncode != 0:
        logs = f"{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
        pytest.fail(f"{' '.join(full)} failed ({result.returncode}):\n{logs}")
    return json.loads((output / "report.json").read_text())


def test_zero2_and_zero3_match_single_process(workspace, tmp_path):
    single = _run([sys.executable], workspace, tmp_path / "single")
    for stage, extra in ((2, ["--padding_free"]), (3, [])):
        launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                  str(ACCELERATE_CONFIGS / f"zero{stage}.yaml"), "--num_processes", "2", "--mixed_precision", "no",
                  "--main_process_port", str(_free_port())]
        report = _run(launch, workspace, tmp_path / f"zero{stage}", extra)
        assert report["world_size"] == 2 and report["zero_stage"] == stage
        assert report["padding_free"] == (stage == 2)
        assert report["eval_loss"] == pytest.approx(single["eval_loss"], rel=1e-4)
    saved = tmp_path / "zero3" / "final"
    plain = AutoModelForSequenceClassification.from_pretrained(saved).eval()
    gaussian = GaussianRewardModel.from_pretrained(saved).eval()
    ids = torch.tensor([[5, 6, 7, 8]])
    assert plain.config.id2label == dict(enumerate(ATTRIBUTES))
    torch.testing.assert_close(plain(input_ids=ids).logits, gaussian(input_ids=ids).mean)
    assert gaussian(input_ids=ids).variance.shape == (1, 3)
