"""`trl-anchor irl-sft-study`: SFT vs IRFT vs RFT (and σ-weighted demonstrations) on a verifiable sorting task with
0/20/40% corrupted demonstrations, several seeds, equal policy updates; writes `README.md`, `results.json` and
`accuracy.png` to `--report_dir`. See `trl_anchor.studies.irl_sft_task`.

Examples:

```bash
trl-anchor irl-sft-study                                    # the committed report in reports/irl_sft
trl-anchor irl-sft-study --seeds 0 --noise_levels 0.4 --num_train 64 --warm_start_steps 20 --steps_per_round 5 \
    --report_dir /tmp/irl_sft                               # smoke run
```
"""

import json

from trl import TrlParser

from trl_anchor.studies.irl_sft_task import IRLSFTStudyConfig, run_study


def make_parser(prog: str | None = None) -> TrlParser:
    """`TrlParser` over `IRLSFTStudyConfig` (flags or `--config study.yaml`)."""
    return TrlParser((IRLSFTStudyConfig,), prog=prog)


def main(config: IRLSFTStudyConfig) -> int:
    results = run_study(config)
    table = {arm: {noise: round(entry["accuracy"], 4) for noise, entry in by_noise.items()}
             for arm, by_noise in results["summary"].items()}
    print(json.dumps({"exact_match": table, "wall_minutes": round(results["wall_seconds"] / 60, 1)}, indent=1))
    if config.report_dir is not None:
        print(f"Report written to {config.report_dir}/README.md")
    return 0


if __name__ == "__main__":
    (study_config,) = make_parser().parse_args_and_config()
    raise SystemExit(main(study_config))
