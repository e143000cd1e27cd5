"""`trl-anchor` command line: `trl-anchor <command> [--config recipe.yaml] [--flag value ...]`.

Each command lives in `trl_anchor.scripts.<name>` and follows TRL's script layout: `make_parser(prog)` returns a
`trl.TrlParser` over the command's dataclasses (so `--config` YAML files work as with `trl reward`) and `main(...)`
receives the parsed dataclasses. Scripts are imported lazily so `trl-anchor --help` stays fast. Under
`accelerate launch` use the module form: `accelerate launch -m trl_anchor.cli train --config recipe.yaml`.
"""

import importlib
import sys

COMMANDS = {
    "quickstart": ("trl_anchor.scripts.quickstart", "train BT / Gaussian / Gaussian+anchors on an offline default"),
    "train": ("trl_anchor.scripts.train", "train a (Gaussian or BT) reward model from a YAML recipe"),
    "evaluate": ("trl_anchor.scripts.evaluate", "calibration, accuracy and σ diagnostics of a reward model"),
    "label-anchors": ("trl_anchor.scripts.label_anchors", "score a preference dataset with an external reward model"),
    "bon": ("trl_anchor.scripts.bon", "best-of-N: generate, score, select, evaluate with a gold reward"),
    "simulate": ("trl_anchor.scripts.simulate", "identifiability simulation study"),
    "serve": ("trl_anchor.scripts.serve", "serve a reward model over HTTP (OpenRLHF /get_reward, μ/σ /score)"),
    "caption-study": (
        "trl_anchor.scripts.caption_study",
        "real-vote study: BT vs Gaussian vs Gaussian+vote anchors on held-out caption contests",
    ),
    "train-attributes": (
        "trl_anchor.scripts.train_attributes",
        "train a multi-attribute (HelpSteer2) Gaussian or MSE reward model from a YAML recipe",
    ),
    "multi-attribute-demo": (
        "trl_anchor.scripts.multi_attribute_demo",
        "multi-attribute (HelpSteer2-format) Gaussian-ordinal vs MSE reward models on an offline synthetic set",
    ),
    "train-images": (
        "trl_anchor.scripts.train_images",
        "train a multi-aspect Gaussian (or BT) image reward model on VisionPrefer-format data from a YAML recipe",
    ),
    "image-demo": (
        "trl_anchor.scripts.image_demo",
        "image reward models (BT vs Gaussian vs Gaussian+aspect anchors) on drawn VisionPrefer-format data",
    ),
    "irl-sft": ("trl_anchor.scripts.irl_sft", "reward learning from SFT demonstrations: IRFT (implicit) or RFT"),
    "irl-sft-study": (
        "trl_anchor.scripts.irl_sft_study",
        "SFT vs IRFT vs RFT on a verifiable sorting task with noisy demonstrations",
    ),
}


def _usage() -> str:
    width = max(len(name) for name in COMMANDS)
    lines = ["usage: trl-anchor <command> [--config FILE.yaml] [options]", "", "commands:"]
    lines += [f"  {name.ljust(width)}  {help_text}" for name, (_, help_text) in COMMANDS.items()]
    lines += ["", "Run `trl-anchor <command> --help` for the options of a command."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"trl-anchor: unknown command {name!r}.\n\n{_usage()}", file=sys.stderr)
        return 2
    script = importlib.import_module(COMMANDS[name][0])
    parser = script.make_parser(prog=f"trl-anchor {name}")
    parsed = parser.parse_args_and_config(args=rest)
    result = script.main(*parsed)
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    raise SystemExit(main())
