"""Resuming a run: the checkpoint must have been trained with the anchors of this run.

The anchor thresholds fix the unit of μ and σ, so continuing a checkpoint with other thresholds silently changes what
its outputs mean half-way through training. `check_resumed_anchors` compares the `gaussian_reward` record the
checkpoint's `config.json` holds with the run's and refuses a difference.
"""

import json
import os
from pathlib import Path

from transformers.trainer_utils import get_last_checkpoint

from ..models.configuration_gaussian import GAUSSIAN_CONFIG_KEY

# Settings that change what μ and σ mean (the thresholds) or which likelihood is fitted.
_RESUME_KEYS = ("reward_type", "anchor_form", "anchor_thresholds")


def check_resumed_anchors(trainer, resume_from_checkpoint: "str | os.PathLike | bool") -> None:
    """Raise a `ValueError` when the checkpoint to resume was trained with other anchors than `trainer`'s run."""
    checkpoint = resume_from_checkpoint
    if checkpoint is True:
        checkpoint = get_last_checkpoint(trainer.args.output_dir)
        if checkpoint is None:
            return  # transformers raises its own "no valid checkpoint" error
    config_file = Path(checkpoint, "config.json")
    if not config_file.is_file():
        return  # a PEFT checkpoint (adapter only) or not a checkpoint: transformers reports the latter
    stored = json.loads(config_file.read_text(encoding="utf-8")).get(GAUSSIAN_CONFIG_KEY) or {}
    current = trainer._anchor_settings(trainer.args)
    differences = [
        f"{key}: checkpoint {stored.get(key)!r}, this run {current.get(key)!r}"
        for key in _RESUME_KEYS
        if key in stored and stored.get(key) != current.get(key)
    ]
    if differences:
        raise ValueError(
            f"Cannot resume from {checkpoint}: it was trained with other anchors, which set the unit of μ and σ:\n  "
            + "\n  ".join(differences)
            + "\nResume with the checkpoint's settings, or start a new run (another output_dir)."
        )
