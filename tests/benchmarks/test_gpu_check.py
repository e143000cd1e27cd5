"""The prepared GPU check runs end to end: `benchmarks/gpu_check.sh --smoke` executes the same code as on a GPU with
tiny sizes on the CPU, and its JSON and markdown report are consistent."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow  # one subprocess run of ~20 s CPU time (imports, three tiny trainers, scoring)


@pytest.fixture(scope="module")
def smoke_report(tmp_path_factory) -> tuple[dict, str]:
    output_dir = tmp_path_factory.mktemp("gpu_check")
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    completed = subprocess.run(
        ["bash", str(REPO / "benchmarks" / "gpu_check.sh"), "--smoke", str(output_dir)],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    report = json.loads((output_dir / "gpu_check.json").read_text())
    return report, (output_dir / "gpu_check.md").read_text()


def test_every_section_is_measured(smoke_report):
    report, _ = smoke_report
    assert report["smoke"] is True and report["sizes"]["models"] == ["tiny"]
    trainers = [row["trainer"] for row in report["training"]]
    assert trainers == [
        "TRL RewardTrainer (BT), padded",
        "AnchorGaussianRewardTrainer, padded",
        "AnchorGaussianRewardTrainer, padding-free",
    ]
    rounds, steps = report["sizes"]["rounds"], report["sizes"]["steps"]
    for row in report["training"]:
        assert row["timed_steps"] == rounds * (steps - 1)  # the first step of every round is warm-up
        assert row["median_step_s"] > 0 and row["peak_memory_gib"] is None  # no GPU memory on the CPU
    for section in ("reward_function", "best_of_n"):
        assert len(report[section]) == 1
    assert report["reward_function"][0]["completions"] == report["sizes"]["completions"]
    assert report["best_of_n"][0]["completions"] == report["sizes"]["bon_prompts"] * report["sizes"]["bon_samples"]


def test_ratios_come_from_the_measured_rows(smoke_report):
    report, markdown = smoke_report
    rows = {row["trainer"]: row for row in report["training"]}
    trl, padded = rows["TRL RewardTrainer (BT), padded"], rows["AnchorGaussianRewardTrainer, padded"]
    free = rows["AnchorGaussianRewardTrainer, padding-free"]
    # All three see the same pairs: the same real tokens; packing removes padding positions.
    assert trl["real_tokens_per_step"] == padded["real_tokens_per_step"] == free["real_tokens_per_step"]
    assert free["positions_per_step"] < padded["positions_per_step"] == trl["positions_per_step"]
    summary = report["summary"][0]
    assert summary["step_time_vs_trl"] == pytest.approx(padded["median_step_s"] / trl["median_step_s"])
    assert summary["padding_free_tokens_per_s_ratio"] == pytest.approx(
        free["real_tokens_per_s"] / padded["real_tokens_per_s"]
    )
    bon = report["best_of_n"][0]
    assert bon["pipeline_vs_bare"] == pytest.approx(bon["pipeline_s"] / bon["bare_s"])
    # The pipeline scored the same completions as the one-at-a-time loop: equal μ up to bf16 rounding, far below how
    # much μ differs between completions.
    assert bon["max_abs_mean_difference_vs_naive"] < 0.05 * bon["mean_std_across_completions"]
    reward = report["reward_function"][0]
    assert reward["completions_per_s"] == pytest.approx(reward["completions"] / reward["reward_function_s"])
    ratio = summary["step_time_vs_trl"]
    assert f"| tiny | AnchorGaussianRewardTrainer / TRL RewardTrainer step time | {ratio:.3g} |" in markdown
    assert "### GRPO reward function" in markdown and "### Best-of-N scoring" in markdown
