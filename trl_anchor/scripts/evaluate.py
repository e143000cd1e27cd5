"""`trl-anchor evaluate`: calibration, accuracy and σ diagnostics of one or more reward models.

```bash
# one model on a preference dataset: evaluation.json, evaluation.md and three PNGs in --output_dir
trl-anchor evaluate --model_name_or_path outputs/gaussian-minilm --dataset_name data/test.jsonl --output_dir eval
# compare arms (BT and Gaussian) on the same data: one sub-directory per model plus comparison.md/json
trl-anchor evaluate --model_name_or_path outputs/bt outputs/gaussian --dataset_adapter synthetic --output_dir cmp
# RewardBench (v1) format file with prompt, chosen, rejected, subset rows
trl-anchor evaluate --model_name_or_path outputs/gaussian-minilm --rewardbench_file reward-bench.jsonl --output_dir rb
# multi-attribute models (train-attributes): per-attribute metrics on HelpSteer2's rated validation split, and the
# combined reward wᵀμ on its preference pairs
trl-anchor evaluate --model_name_or_path outputs/helpsteer2-gaussian --dataset_adapter helpsteer2 \
    --dataset_split validation --preference_dataset nvidia/HelpSteer2 --output_dir eval
# ... and on RewardBench by wᵀμ (the recorded weights, or --attribute_weights), results added to the model's card
trl-anchor evaluate --model_name_or_path outputs/helpsteer2-gaussian --rewardbench_file reward-bench.jsonl \
    --attribute_weights 0.65 0.8 0.45 0.55 -0.4 --update_model_card --output_dir rb
```

`--update_model_card` adds the results to each model's `README.md` (`model-index`). Multi-attribute models are routed
to `trl_anchor.scripts.evaluate_attributes` (see there for the data it reads, how RewardBench combines the attributes,
and what it refuses).
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..anchors import parse_numbers, parse_thresholds
from .utils import DatasetArguments, accept_number_lists


@dataclass
class EvaluateArguments(DatasetArguments):
    """Which models to evaluate on which data, and where the results go."""

    model_name_or_path: list[str] = field(
        default_factory=list,
        metadata={"help": "One or more reward models (directories or Hub ids); several are compared side by side."},
    )
    dataset_split: str = field(
        default="test", metadata={"help": "Split to evaluate (a dataset with a single split uses that one)."}
    )
    max_samples: int | None = field(default=None, metadata={"help": "Evaluate only the first N pairs."})
    rewardbench_file: str | None = field(
        default=None,
        metadata={
            "help": "A local RewardBench-format file (prompt, chosen, rejected, subset): per-subset accuracy "
            "and the leaderboard's section scores."
        },
    )
    rewardbench_format: str = field(
        default="auto",
        metadata={
            "help": "How RewardBench turns are scored: 'chat' (chat template), 'text' (prompt + newline + response "
            "+ EOS, as the text adapters train) or 'auto' (chat when the tokenizer has a template, as the official "
            "script).",
            "choices": ["auto", "chat", "text"],
        },
    )
    include_prior_sets: bool = field(
        default=True, metadata={"help": "Include the RewardBench prior sets (0.5 weight) in the score when present."}
    )
    output_dir: str = field(default="evaluation", metadata={"help": "Where results and figures are written."})
    batch_size: int = field(default=16, metadata={"help": "Scoring batch size."})
    max_length: int | None = field(default=None, metadata={"help": "Truncate longer sequences (keeping their end)."})
    anchor_thresholds: list[float] | None = field(
        default=None, metadata={"help": "Anchor thresholds for anchor accuracy (default: those the model records)."}
    )
    disagreement_columns: list[str] | None = field(
        default=None,
        metadata={"help": "Two columns (chosen, rejected) of per-response reference spreads to correlate σ with."},
    )
    disagreement_mean_columns: list[str] | None = field(
        default=None,
        metadata={"help": "Two columns (chosen, rejected) of the true means: adds the partial Spearman of σ with the "
                  "reference spread given them (vote counts use the crowd's mean vote automatically)."},
    )
    use_margin: bool = field(default=False, metadata={"help": "Subtract the `margin` column inside the probability."})
    num_bins: int = field(default=10, metadata={"help": "Probability bins of the ECE and reliability diagram."})
    plots: bool = field(default=True, metadata={"help": "Write the PNG figures."})
    update_model_card: bool = field(
        default=False, metadata={"help": "Add the results to each model's README.md (model-index)."}
    )
    card_dataset_id: str | None = field(
        default=None, metadata={"help": "Dataset id recorded in the model card (default: the dataset name/adapter)."}
    )
    preference_dataset: str | None = field(
        default=None,
        metadata={"help": "Multi-attribute models: a HelpSteer2 preference subset (Hub id or file) whose pairs of the "
                  "evaluated split score the combined reward wᵀμ (a `<split>_pairs` split of the data is used "
                  "without it)."},
    )
    attribute_weights: list[float] | None = field(
        default=None,
        metadata={"help": "Multi-attribute models: the weights w of the combined reward wᵀμ, one per attribute, on "
                  "preference pairs and `--rewardbench_file` (default: those the model records)."},
    )
    reference_split: str = field(
        default="train",
        metadata={"help": "Multi-attribute MSE models: the split of the rated data on which their residual RMSE, the "
                  "constant σ_a of the ordinal NLL and ECE, is measured (not the evaluated split itself; "
                  "`max_samples` caps it too)."},
    )
    device: str | None = field(default=None, metadata={"help": "Device to score on (default: cuda if available)."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow custom model code from the Hub."})

    def __post_init__(self):
        super().__post_init__()
        if not self.model_name_or_path:
            raise ValueError("Give at least one `--model_name_or_path`.")
        for name in ("disagreement_columns", "disagreement_mean_columns"):
            if getattr(self, name) is not None and len(getattr(self, name)) != 2:
                raise ValueError(f"`{name}` takes two columns (chosen, rejected), got {getattr(self, name)}.")
        has_data = self.dataset_name is not None or self.dataset_adapter is not None
        if not has_data and self.rewardbench_file is None:
            raise ValueError(
                "Nothing to evaluate on: give `dataset_name`/`dataset_adapter` and/or `rewardbench_file`."
            )
        if self.dataset_streaming:
            raise ValueError("Evaluation needs a map-style dataset; drop `dataset_streaming`.")
        if self.attribute_weights is not None:
            self.attribute_weights = parse_numbers(self.attribute_weights, "`attribute_weights` takes numbers")
        self.anchor_thresholds = parse_thresholds(self.anchor_thresholds)
        if self.anchor_thresholds == "auto":
            raise ValueError("`anchor_thresholds` of an evaluation are numbers (default: those the model records).")


def main(args: EvaluateArguments) -> dict:
    import torch

    from trl_anchor.models.loading import load_reward_model

    from .evaluate_attributes import evaluate_attribute_models, is_multi_attribute_run

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    output_dir = Path(args.output_dir)
    names = _model_names(args.model_name_or_path)
    if is_multi_attribute_run(args):
        return evaluate_attribute_models(args, names, output_dir, device)
    dataset = _evaluation_dataset(args)
    results = {"pairs": {}, "rewardbench": {}}
    for name, path in zip(names, args.model_name_or_path, strict=True):
        model_dir = output_dir if len(names) == 1 else output_dir / name
        model, tokenizer = load_reward_model(path, device=device, trust_remote_code=args.trust_remote_code)
        if dataset is not None:
            results["pairs"][name] = _evaluate_pairs(args, model, tokenizer, dataset, path, model_dir)
        if args.rewardbench_file is not None:
            results["rewardbench"][name] = _evaluate_rewardbench(args, model, tokenizer, path, model_dir)
        del model

    if len(names) > 1:
        _write_comparison(results, output_dir, args.plots)
    return results


def _model_names(paths: list[str]) -> list[str]:
    names = []
    for path in paths:
        base = Path(path.rstrip("/")).name or "model"
        name, k = base, 2
        while name in names:
            name, k = f"{base}-{k}", k + 1
        names.append(name)
    return names


def _evaluation_dataset(args: EvaluateArguments):
    from .utils import load_preference_data

    if args.dataset_name is None and args.dataset_adapter is None:
        return None
    return evaluation_split(load_preference_data(args), args.dataset_split, args.max_samples)


def evaluation_split(data, split: str, max_samples: int | None, what: str = "evaluation"):
    """The split to evaluate (a dataset with a single split uses that one), cut to its first `max_samples` rows."""
    from transformers.utils import logging

    from .utils import select_split

    if split not in data and len(data) == 1:
        (only,) = data
        logging.get_logger(__name__).info(f"The {what} data has the single split {only!r}; evaluating it.")
        dataset = data[only]
    else:
        dataset = select_split(data, split, what)
    if max_samples is not None:
        dataset = dataset.select(range(min(max_samples, len(dataset))))
    return dataset


def _can_update_card(args: EvaluateArguments, path: str) -> bool:
    if args.update_model_card and not Path(path).is_dir():
        from transformers.utils import logging

        logging.get_logger(__name__).warning(f"{path} is not a local directory; its model card is left unchanged.")
        return False
    return args.update_model_card


def _card_dataset(args: EvaluateArguments) -> str:
    if args.card_dataset_id:
        return args.card_dataset_id
    if args.dataset_name:  # a local file is recorded by its name, not its path on this machine
        return Path(args.dataset_name).name if Path(args.dataset_name).exists() else args.dataset_name
    # An adapter is named by the module that builds it, not as a (non-existent) Hub dataset.
    module = f"trl_anchor.data.{args.dataset_adapter}"
    return module if args.dataset_path is None else f"{module}({Path(args.dataset_path).name})"


def _evaluate_pairs(args, model, tokenizer, dataset, path, model_dir):
    from trl_anchor.pipelines.cards import update_model_card
    from trl_anchor.pipelines.evaluation import evaluate_reward_model

    result = evaluate_reward_model(
        model,
        tokenizer,
        dataset,
        batch_size=args.batch_size,
        max_length=args.max_length,
        anchor_thresholds=args.anchor_thresholds,
        disagreement_columns=tuple(args.disagreement_columns) if args.disagreement_columns else None,
        disagreement_mean_columns=tuple(args.disagreement_mean_columns) if args.disagreement_mean_columns else None,
        use_margin=args.use_margin,
        num_bins=args.num_bins,
        show_progress=True,
    )
    written = result.save(model_dir, plots=args.plots)
    print(
        f"\n{path} on {len(dataset)} pairs:\n\n{result.to_markdown()}\n\nWritten: {sorted(map(str, written.values()))}"
    )
    if _can_update_card(args, path):
        dataset_id = _card_dataset(args)
        update_model_card(
            path, result, dataset_type=dataset_id, dataset_name=dataset_id, dataset_split=args.dataset_split
        )
    return result


def _evaluate_rewardbench(args, model, tokenizer, path, model_dir, attribute_weights=None):
    """RewardBench of one model; a multi-attribute one is scored by wᵀμ with `attribute_weights` (see there)."""
    from trl_anchor.pipelines.attribute_cards import update_attribute_model_card
    from trl_anchor.pipelines.cards import update_model_card
    from trl_anchor.pipelines.rewardbench import evaluate_rewardbench

    conversational = {"auto": None, "chat": True, "text": False}[args.rewardbench_format]
    result = evaluate_rewardbench(
        model,
        tokenizer,
        args.rewardbench_file,
        batch_size=args.batch_size,
        max_length=args.max_length,
        conversational=conversational,
        include_prior_sets=args.include_prior_sets,
        attribute_weights=attribute_weights,
        show_progress=True,
    )
    result.save(model_dir)
    print(f"\n{path} on RewardBench file {args.rewardbench_file}:\n\n{result.to_markdown()}\n")
    if _can_update_card(args, path):
        # Only a complete run is the RewardBench benchmark; a partial file is recorded under its own name.
        dataset_id = "allenai/reward-bench" if result.complete else Path(args.rewardbench_file).name
        update = update_model_card if attribute_weights is None else update_attribute_model_card
        update(path, result, dataset_type=dataset_id, dataset_split="filtered" if result.complete else None)
    return result


def _write_comparison(results, output_dir: Path, plots: bool) -> None:
    from trl_anchor.pipelines.evaluation import comparison_markdown
    from trl_anchor.pipelines.evaluation_plots import plot_reliability_diagram

    output_dir.mkdir(parents=True, exist_ok=True)
    tables, summary = [], {}
    if results["pairs"]:
        tables.append(comparison_markdown(results["pairs"]))
        summary["pairs"] = {name: r.to_dict()["metrics"] for name, r in results["pairs"].items()}
        if plots:
            figure = plot_reliability_diagram(results["pairs"], title="Reliability diagram: model comparison")
            figure.savefig(output_dir / "reliability_comparison.png", dpi=120)
    if results["rewardbench"]:
        tables.append(rewardbench_table(results["rewardbench"]))
        summary["rewardbench"] = {name: r.to_dict() for name, r in results["rewardbench"].items()}
    (output_dir / "comparison.md").write_text("\n\n".join(tables) + "\n")
    (output_dir / "comparison.json").write_text(json.dumps(summary, indent=2) + "\n")
    print("\nComparison:\n\n" + "\n\n".join(tables))


def rewardbench_table(results) -> str:
    """Markdown: the RewardBench score and sections of each model."""
    rows = ["| model | Score | " + " | ".join(_sections(results)) + " |", "|---" * (len(_sections(results)) + 2) + "|"]
    for name, r in results.items():
        cells = [f"{r.sections[s]:.4f}" if s in r.sections else "—" for s in _sections(results)]
        rows.append(f"| {name} | {r.score:.4f} | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def _sections(results) -> list[str]:
    return list(dict.fromkeys(s for r in results.values() for s in r.sections))


def make_parser(prog: str | None = None):
    from trl import TrlParser

    return accept_number_lists(TrlParser((EvaluateArguments,), prog=prog), "anchor_thresholds", "attribute_weights")


if __name__ == "__main__":
    (parsed,) = make_parser().parse_args_and_config()
    main(parsed)
