"""ImageRewardTrainer under DeepSpeed ZeRO-2 with `accelerate launch --num_processes 2` on CPU (gloo), against a
single-process run of the same script (`image_reward_zero_script.py`): same examples in the same global batches, so
train and eval losses agree up to the order of float reductions (1e-4 relative), and the saved model loads with σ²
per aspect."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_zero import ACCELERATE_CONFIGS, LAUNCH_TIMEOUT_S, REPO, _env, _free_port
from transformers import CLIPModel

from tests.image_models import build_clip_processor, tiny_clip_config
from tests.trainer.test_image_reward_trainer import _image, pairs_dataset
from trl_anchor.models.modeling_image_gaussian import GaussianCLIPImageRewardModel

pytestmark = [pytest.mark.distributed, pytest.mark.slow]

SCRIPT = Path(__file__).with_name("image_reward_zero_script.py")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("image_reward_workspace")
    processor = build_clip_processor(path / "tokenizer")
    torch.manual_seed(0)
    CLIPModel(tiny_clip_config(processor.tokenizer)).save_pretrained(path / "clip")
    processor.save_pretrained(path / "clip")
    pairs_dataset(8).save_to_disk(path / "train")
    pairs_dataset(4).save_to_disk(path / "eval")
    return path


def _run(command, workspace, output):
    full = [*command, str(SCRIPT), "--workspace", str(workspace), "--output", str(output)]
    result = subprocess.run(full, env=_env(), cwd=REPO, capture_output=True, text=True, timeout=LAUNCH_TIMEOUT_S)
    if result.returncode != 0:
        logs = f"{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
        pytest.fail(f"{' '.join(full)} failed ({result.returncode}):\n{logs}")
    return json.loads((output / "report.json").read_text())


def test_zero2_matches_single_process(workspace, tmp_path):
    single = _run([sys.executable], workspace, tmp_path / "single")
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file",
              str(ACCELERATE_CONFIGS / "zero2.yaml"), "--num_processes", "2", "--mixed_precision", "no",
              "--main_process_port", str(_free_port())]
    report = _run(launch, workspace, tmp_path / "zero2")
    assert report["world_size"] == 2 and report["zero_stage"] == 2
    assert report["train_losses"] == pytest.approx(single["train_losses"], rel=1e-4)
    assert report["eval_loss"] == pytest.approx(single["eval_loss"], rel=1e-4)
    assert single["train_losses"][-1] != single["train_losses"][0]  # it trained
    model = GaussianCLIPImageRewardModel.from_pretrained(tmp_path / "zero2" / "final").eval()
    processor = build_clip_processor(tmp_path / "tokenizer")
    with torch.no_grad():
        out = model(**processor(text=["a red square"], images=[_image("red")], return_tensors="pt"))
    assert out.mean.shape == out.variance.shape == (1, 2)
    assert model.config.gaussian_reward["attributes"] == ["prompt_following", "aesthetic"]
