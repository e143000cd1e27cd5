"""`trl-anchor multi-attribute-demo`: Gaussian-ordinal vs MSE multi-attribute reward models, offline, on a CPU.

Trains both arms of `MultiAttributeRewardTrainer` on the same synthetic HelpSteer2-format ratings and pairs
(`trl_anchor.data.synthetic_attributes`, whose true per-attribute means and spreads are known) with the packaged
all-MiniLM-L6-v2, then prints and writes a side-by-side table: per-attribute μ correlation with held-out ratings,
ordinal NLL and class calibration (the MSE arm with one constant σ_a, its train RMSE), recovery of the true
per-response spread σ_a (the MSE arm has none), and the accuracy of the combined reward `wᵀμ` (NVIDIA's HelpSteer2
weights) on held-out pairs.

    trl-anchor multi-attribute-demo --output_dir outputs/multi_attribute_demo
"""

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

ARMS = ("ordinal", "mse")


@dataclass
class MultiAttributeDemoArguments:
    output_dir: str = field(default="outputs/multi_attribute_demo", metadata={"help": "Models, table and JSON."})
    model_name_or_path: str | None = field(
        default=None, metadata={"help": "Backbone; default the packaged all-MiniLM-L6-v2."}
    )
    arms: list[str] = field(default_factory=lambda: list(ARMS), metadata={"help": f"Arms to train, of {ARMS}."})
    num_train: int = field(default=1000, metadata={"help": "Synthetic rated train responses."})
    num_test: int = field(default=300, metadata={"help": "Synthetic rated held-out responses."})
    num_train_pairs: int = field(default=150, metadata={"help": "Synthetic train preference pairs."})
    num_test_pairs: int = field(default=200, metadata={"help": "Synthetic held-out preference pairs."})
    num_train_epochs: float = field(default=4.0, metadata={"help": "Epochs per arm."})
    max_steps: int = field(default=-1, metadata={"help": "If > 0, overrides num_train_epochs (smoke runs)."})
    per_device_train_batch_size: int = field(default=16, metadata={"help": "Rows per step."})
    learning_rate: float = field(default=5e-5, metadata={"help": "AdamW learning rate of the backbone."})
    head_learning_rate: float = field(default=3e-3, metadata={"help": "Learning rate of the fresh heads."})
    max_length: int = field(default=64, metadata={"help": "Max tokens per prompt+response."})
    seed: int = field(default=0, metadata={"help": "Seed for data, heads and batching."})


def _train_arm(arm, data, backbone, args):
    from transformers import AutoTokenizer

    from trl_anchor.trainer.multi_attribute_config import MultiAttributeRewardConfig
    from trl_anchor.trainer.multi_attribute_trainer import MultiAttributeRewardTrainer

    config = MultiAttributeRewardConfig(
        output_dir=str(Path(args.output_dir) / arm),
        loss_type=arm,
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
        seed=args.seed,
    )
    trainer = MultiAttributeRewardTrainer(
        backbone, config, train_dataset=data["train"], preference_dataset=data["train_pairs"],
        processing_class=AutoTokenizer.from_pretrained(backbone),
    )
    trainer.train()
    return trainer.model.eval(), trainer.processing_class


def main(args: MultiAttributeDemoArguments) -> dict[str, dict[str, float]]:
    from trl_anchor.data.synthetic_attributes import SyntheticAttributeConfig, make_synthetic_attribute_ratings
    from trl_anchor.pipelines.attribute_cards import build_attribute_model_card
    from trl_anchor.pipelines.multi_attribute_evaluation import (
        comparison_table,
        evaluate_multi_attribute,
        residual_std,
    )
    from trl_anchor.scripts.quickstart import _backbone
    from trl_anchor.trainer.multi_attribute_config import HELPSTEER2_ATTRIBUTES

    unknown = [arm for arm in args.arms if arm not in ARMS]
    if unknown:
        raise ValueError(f"Unknown arms {unknown}; choose from {list(ARMS)}.")
    backbone = _backbone(args)
    data = make_synthetic_attribute_ratings(SyntheticAttributeConfig(
        num_train=args.num_train, num_test=args.num_test, num_train_pairs=args.num_train_pairs,
        num_test_pairs=args.num_test_pairs, seed=args.seed,
    ))
    # Held-out pairs are scored against the exact (infinite-annotator) preference probability.
    test_pairs = data["test_pairs"].remove_columns("soft_label").rename_column("true_soft_label", "soft_label")
    attributes = list(HELPSTEER2_ATTRIBUTES)
    output_dir = Path(args.output_dir)
    results = {}
    for arm in args.arms:
        model, tokenizer = _train_arm(arm, data, backbone, args)
        sigma = None
        if arm == "mse":  # a regression model's constant σ_a: its RMSE on (a slice of) the train ratings
            reference = data["train"].select(range(min(500, len(data["train"]))))
            sigma = residual_std(model, tokenizer, reference, attributes, max_length=args.max_length)
        results[arm] = evaluate_multi_attribute(
            model, tokenizer, data["test"], test_pairs, residual_std=sigma, max_length=args.max_length
        )
        model.save_pretrained(output_dir / arm / "model")
        tokenizer.save_pretrained(output_dir / arm / "model")
        settings = model.config.gaussian_reward if arm == "ordinal" else model.config.attribute_reward
        card = build_attribute_model_card(f"multi-attribute-{arm}-minilm", settings, metrics=results[arm],
                                          eval_dataset="synthetic multi-attribute ratings (held out)")
        card.save(output_dir / arm / "model" / "README.md")
    table = comparison_table(results, attributes)
    print(f"\nHeld-out comparison on {len(data['test'])} rated responses and {len(test_pairs)} pairs:\n")
    print(table)
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "results.md").write_text(table + "\n")
    summary = {"args": asdict(args), "results": results}
    (output_dir / "results.json").write_text(json.dumps(summary, indent=2))
    return results


def make_parser(prog: str | None = None):
    from trl import TrlParser

    return TrlParser((MultiAttributeDemoArguments,), prog=prog)


if __name__ == "__main__":
    (parsed,) = make_parser().parse_args_and_config()
    main(parsed)
