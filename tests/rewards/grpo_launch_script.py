"""Launched by `tests/test_reward_functions.py` with `accelerate launch` (DeepSpeed ZeRO-3, 2 CPU processes): runs
`examples/grpo_gaussian_reward.py` unchanged and records, on every rank, each call of the Gaussian reward function
(prompts, completions, returned rewards, μ, σ and quantile levels).

Usage: grpo_launch_script.py RECORD_PREFIX [example arguments...]; writes RECORD_PREFIX.rank<N>.json.
"""

import json
import os
import runpy
import sys
from pathlib import Path

from trl_anchor.rewards.reward_function import GaussianRewardFunction

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "grpo_gaussian_reward.py"


def main() -> None:
    record_prefix, example_args = sys.argv[1], sys.argv[2:]
    records = []
    original_call = GaussianRewardFunction.__call__

    def recording_call(self, prompts=None, completions=None, **kwargs):
        rewards = original_call(self, prompts=prompts, completions=completions, **kwargs)
        levels = self.last_quantile_levels
        records.append(
            {
                "prompts": prompts,
                "completions": completions,
                "rewards": rewards,
                "quantile_levels": None if levels is None else levels.tolist(),
                "deepspeed_engine": type(self._deepspeed_engine).__name__,
            }
        )
        return rewards

    GaussianRewardFunction.__call__ = recording_call
    sys.argv = [str(EXAMPLE), *example_args]
    runpy.run_path(str(EXAMPLE), run_name="__main__")
    rank = os.environ.get("RANK", "0")
    Path(f"{record_prefix}.rank{rank}.json").write_text(json.dumps(records))


if __name__ == "__main__":
    main()
