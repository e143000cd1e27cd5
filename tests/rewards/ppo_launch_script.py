"""Launched by `tests/test_ppo.py` with `accelerate launch` (DeepSpeed ZeRO-3, 2 CPU processes): runs
`examples/ppo_gaussian_reward.py` unchanged and records, on every rank, each reward PPOTrainer's `get_reward` returns
for the reward model, with the token ids it was computed on.

Usage: ppo_launch_script.py RECORD_PREFIX [example arguments...]; writes RECORD_PREFIX.rank<N>.json.
"""

import json
import os
import runpy
import sys
from pathlib import Path

from trl.experimental.ppo import ppo_trainer

from trl_anchor.rewards.ppo import PPORewardModel

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "ppo_gaussian_reward.py"


def main() -> None:
    record_prefix, example_args = sys.argv[1], sys.argv[2:]
    records = []
    original_get_reward = ppo_trainer.get_reward

    def recording_get_reward(model, query_responses, pad_token_id, context_length):
        result = original_get_reward(model, query_responses, pad_token_id, context_length)
        # Under DeepSpeed the reward model arrives wrapped in its engine (`.module`).
        if isinstance(getattr(model, "module", model), PPORewardModel):
            records.append(
                {
                    "query_responses": query_responses.tolist(),
                    "context_length": context_length,
                    "scores": result[1].float().tolist(),
                    "engine": type(model).__name__,
                }
            )
        return result

    ppo_trainer.get_reward = recording_get_reward
    sys.argv = [str(EXAMPLE), *example_args]
    runpy.run_path(str(EXAMPLE), run_name="__main__")
    rank = os.environ.get("RANK", "0")
    Path(f"{record_prefix}.rank{rank}.json").write_text(json.dumps(records))


if __name__ == "__main__":
    main()
