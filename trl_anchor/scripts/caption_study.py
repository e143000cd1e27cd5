"""`trl-anchor caption-study`: BT vs Gaussian vs Gaussian with crowd-vote anchors on held-out caption contests.

Fine-tunes the packaged MiniLM-L6 on within-contest caption pairs of the train contests (three arms plus λ and
anchor-fraction ablations), evaluates every run on the same seeded caption pools of the held-out test contests
(pairwise accuracy on clearly separated pairs, soft cross-entropy and Brier on random pairs, Kendall τ-b of μ against
the crowd mean, top-10 vs rank-~1000 discrimination, partial rank correlation of σ with the vote spread given the crowd
mean) and writes `README.md`, `results.json` and figures to `--report_dir`. See `trl_anchor.studies.caption_study`.

Examples:

```bash
trl-anchor caption-study --resume false                   # the committed report in reports/caption_study
trl-anchor caption-study --contests 510 512 513 514 516 --max_steps 5 --report_dir /tmp/cs   # smoke run
```
"""

import json

from trl import TrlParser

from trl_anchor.studies.caption_study import ARMS, METRICS, CaptionStudyConfig, run_caption_study


def make_parser(prog: str | None = None) -> TrlParser:
    """`TrlParser` over `CaptionStudyConfig` (flags or `--config caption_study.yaml`)."""
    return TrlParser((CaptionStudyConfig,), prog=prog)


def main(config: CaptionStudyConfig) -> int:
    results = run_caption_study(config)
    table = {
        arm: {metric: stats["mean"] for metric, stats in results["summary"][arm].items() if metric in METRICS}
        for arm in ARMS
    }
    print(json.dumps({"anchor_lambda": results["selection"]["anchor_lambda"], "test": table}, indent=1))
    if config.report_dir is not None:
        print(f"Report written to {config.report_dir}/README.md")
    return 0


if __name__ == "__main__":
    (study_config,) = make_parser().parse_args_and_config()
    raise SystemExit(main(study_config))
