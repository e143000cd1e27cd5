"""The multi-attribute branch of `trl-anchor evaluate` (HelpSteer2 / SteerLM-style models of `train-attributes`).

A model whose config records attributes (`gaussian_reward["attributes"]` of a Gaussian-ordinal model, or
`attribute_reward` of the MSE arm) is evaluated per attribute on rated responses with
`trl_anchor.pipelines.multi_attribute_evaluation.evaluate_multi_attribute`, plus the combined reward `wᵀμ` on
preference pairs when there are any:

- rated rows: `--dataset_adapter helpsteer2` reads them as `train-attributes` trains on them
  (`trl_anchor.scripts.train_attributes.load_rated`: the Hub's main subset, or the file in `--dataset_path`); a
  `--dataset_name` (or another adapter) must already hold `prompt`, `response` and one column per attribute;
- the evaluated split is `--dataset_split`; its default `test`, which HelpSteer2 lacks, falls back to `validation`;
- pairs: a `<split>_pairs` split of the same data, or `--preference_dataset` (HelpSteer2's preference subset);
- an MSE model has no σ: its ordinal NLL and class ECE use its residual RMSE measured on `--reference_split` of the
  same data (`residual_std`); without such a split (or when it is the evaluated split, which would score the
  model on the rows its σ came from) these metrics are left out and the output says why.

`--rewardbench_file` scores each RewardBench response by the combined reward `wᵀμ` (Gaussian: variance
`Σ_a w_a² σ_a²`), as NVIDIA scores its HelpSteer2 attribute models; the outputs are the scalar path's
(`rewardbench.json`, `rewardbench.md`), and rated data is then optional. Every combined reward (pairs and RewardBench)
uses the weights the model records, or `--attribute_weights` (one per attribute, checked before anything is scored).

`--update_model_card` adds the per-attribute (and RewardBench) results to the card `train-attributes` wrote
(`trl_anchor.pipelines.attribute_cards.update_attribute_model_card`), keeping its text.

Scalar and multi-attribute models are not mixed in one run (they need different data: pairs vs rated rows); options of
the scalar path that have no per-attribute meaning are refused, each with an error saying so.
"""

import json
import math
from pathlib import Path

from ..models.configuration_gaussian import attribute_record

# Options of the scalar path that have no meaning for per-attribute rating metrics.
_SCALAR_ONLY = ("anchor_thresholds", "disagreement_columns", "disagreement_mean_columns", "use_margin")


def is_multi_attribute_run(args) -> bool:
    """Whether the models of `args` are multi-attribute ones; refuses mixes and options that do not apply."""
    from trl_anchor.models.loading import load_config

    kinds = {
        path: attribute_record(load_config(path, trust_remote_code=args.trust_remote_code)) is not None
        for path in args.model_name_or_path
    }
    multi = [path for path, is_multi in kinds.items() if is_multi]
    if not multi:
        if args.preference_dataset is not None:
            raise ValueError("`--preference_dataset` is for multi-attribute models; give a scalar model's pairs as "
                             "`--dataset_name`/`--dataset_adapter`.")
        if args.attribute_weights is not None:
            raise ValueError(f"`--attribute_weights` is for multi-attribute models; {list(kinds)} have one reward.")
        return False
    scalar = [path for path, is_multi in kinds.items() if not is_multi]
    if scalar:
        raise ValueError(
            f"Cannot compare scalar reward models {scalar} with multi-attribute models {multi} in one run: the first "
            "are evaluated on preference pairs, the second per attribute on rated responses. Run `trl-anchor "
            "evaluate` once for each kind."
        )
    if args.attribute_weights is not None:
        for path in multi:
            attributes = attribute_record(load_config(path, trust_remote_code=args.trust_remote_code))["attributes"]
            if len(args.attribute_weights) != len(attributes):
                raise ValueError(
                    f"`--attribute_weights` has {len(args.attribute_weights)} values {args.attribute_weights} but "
                    f"{path} has {len(attributes)} attributes {list(attributes)}: give one weight per attribute."
                )
    given = [f"--{name}" for name in _SCALAR_ONLY if getattr(args, name)]
    if given:
        raise ValueError(f"{', '.join(given)} apply to scalar reward models only, not to the multi-attribute {multi}.")
    return True


def load_attribute_data(args):
    """(rated rows, preference pairs or None, reference rows or None, the split's name, the name the card records) of
    the evaluated split; a single-split dataset (a local file's only split is `train`) is recorded under the split
    asked for, as the scalar path does."""
    from datasets import Dataset, DatasetDict

    from .evaluate import evaluation_split
    from .train_attributes import load_pairs, load_rated
    from .utils import load_preference_data

    if args.dataset_adapter == "helpsteer2":
        from trl_anchor.data.helpsteer2 import HELPSTEER2_ID

        data = load_rated(args.dataset_path or HELPSTEER2_ID, **(args.dataset_kwargs or {}))
    else:
        data = load_preference_data(args)
    if isinstance(data, Dataset):
        data = DatasetDict({"train": data})
    rated_splits = DatasetDict({k: v for k, v in data.items() if not k.endswith("_pairs")})
    requested = _held_out(args.dataset_split, rated_splits)
    rated = evaluation_split(rated_splits, requested, args.max_samples, "rated")
    split = requested if requested in rated_splits else next(iter(rated_splits))  # a single split is evaluated whole
    pairs = None
    if args.preference_dataset is not None:
        pairs = load_pairs(args.preference_dataset)
        pairs = evaluation_split(pairs, _held_out(args.dataset_split, pairs), args.max_samples, "preference")
    elif f"{split}_pairs" in data:
        pairs = evaluation_split(data, f"{split}_pairs", args.max_samples, "preference")
    reference = None
    if args.reference_split != split and args.reference_split in rated_splits:
        reference = evaluation_split(rated_splits, args.reference_split, args.max_samples, "reference")
    return rated, pairs, reference, split, requested


def _held_out(split: str, data) -> str:
    """The requested split; the default `test` falls back to `validation`, HelpSteer2's held-out split."""
    if split == "test" and split not in data and "validation" in data:
        from transformers.utils import logging

        logging.get_logger(__name__).info("The data has no `test` split; evaluating its `validation` split.")
        return "validation"
    return split


def evaluate_attribute_models(args, names: list[str], output_dir: Path, device: str) -> dict:
    """Evaluate every model of `args` (all multi-attribute); one directory each and a comparison when several."""
    from trl_anchor.models.loading import load_reward_model

    from .evaluate import _evaluate_rewardbench

    has_rated = args.dataset_name is not None or args.dataset_adapter is not None
    data = load_attribute_data(args) if has_rated else None
    results, rewardbench = {}, {}
    for name, path in zip(names, args.model_name_or_path, strict=True):
        model, tokenizer = load_reward_model(path, device=device, trust_remote_code=args.trust_remote_code)
        model_dir = output_dir if len(names) == 1 else output_dir / name
        if data is not None:
            results[name] = _evaluate_rated(args, model, tokenizer, path, data, model_dir)
        if args.rewardbench_file is not None:
            weights = args.attribute_weights or attribute_record(model.config).get("attribute_weights")
            rewardbench[name] = _evaluate_rewardbench(args, model, tokenizer, path, model_dir, weights)
        del model
    if len(names) > 1:
        _write_comparison(results, rewardbench, output_dir)
    return {"attributes": results, "rewardbench": rewardbench}


def _evaluate_rated(args, model, tokenizer, path, data, model_dir: Path) -> dict:
    from trl_anchor.pipelines.attribute_cards import update_attribute_model_card

    from .evaluate import _can_update_card, _card_dataset

    rated, pairs, reference, split, card_split = data
    record = {"split": split, **_evaluate_one(args, model, tokenizer, path, rated, pairs, reference, split)}
    _write(record, model_dir)
    if _can_update_card(args, path):
        from trl_anchor.data.helpsteer2 import HELPSTEER2_ID

        # The helpsteer2 adapter without a local file reads the Hub dataset: its results belong in `model-index`.
        hub = args.dataset_adapter == "helpsteer2" and args.dataset_path is None and not args.card_dataset_id
        dataset = HELPSTEER2_ID if hub else _card_dataset(args)
        update_attribute_model_card(path, record["metrics"], dataset_type=dataset, dataset_split=card_split)
    return record


def _write_comparison(results: dict, rewardbench: dict, output_dir: Path) -> None:
    from trl_anchor.pipelines.multi_attribute_evaluation import comparison_table

    from .evaluate import rewardbench_table

    output_dir.mkdir(parents=True, exist_ok=True)
    tables, summary = [], {}
    if results:
        attributes = list(dict.fromkeys(a for record in results.values() for a in record["attributes"]))
        tables.append(comparison_table({name: r["metrics"] for name, r in results.items()}, attributes))
        summary["attributes"] = {name: r["metrics"] for name, r in results.items()}
    if rewardbench:
        tables.append(rewardbench_table(rewardbench))
        summary["rewardbench"] = {name: r.to_dict() for name, r in rewardbench.items()}
    (output_dir / "comparison.md").write_text("\n\n".join(tables) + "\n")
    (output_dir / "comparison.json").write_text(json.dumps(_json_safe(summary), indent=2) + "\n")
    print("\nComparison:\n\n" + "\n\n".join(tables))


def _evaluate_one(args, model, tokenizer, path, rated, pairs, reference, split: str) -> dict:
    from trl_anchor.models.modeling_gaussian import GaussianRewardModel
    from trl_anchor.pipelines.multi_attribute_evaluation import evaluate_multi_attribute, residual_std

    settings = attribute_record(model.config)
    attributes = list(settings["attributes"])
    _require_columns(rated, ("response", *attributes), f"The rated data (split {split!r})", path)
    if pairs is not None:
        _require_columns(pairs, ("chosen", "rejected", "soft_label"), "The preference pairs", path)
    gaussian = isinstance(model, GaussianRewardModel)
    notes, std = [], None
    if not gaussian and reference is not None:
        _require_columns(reference, ("response", *attributes), f"The reference split {args.reference_split!r}", path)
        std = residual_std(model, tokenizer, reference, attributes, args.batch_size, args.max_length)
        notes.append(f"MSE model: σ_a is its residual RMSE on the {len(reference)} rows of split "
                     f"{args.reference_split!r}.")
    elif not gaussian:
        notes.append(f"MSE model without σ: no ordinal NLL or class ECE, as the data has no reference split "
                     f"{args.reference_split!r} other than the evaluated one to measure its residual RMSE on.")
    if pairs is None:
        notes.append("No preference pairs (`--preference_dataset` or a `<split>_pairs` split): no combined-reward "
                     "pair metrics.")
    metrics = evaluate_multi_attribute(
        model, tokenizer, rated, pairs, weights=args.attribute_weights, residual_std=std, batch_size=args.batch_size,
        max_length=args.max_length,
    )
    return {
        "model": path, "reward_type": "gaussian" if gaussian else "mse", "attributes": attributes,
        "attribute_weights": args.attribute_weights or settings.get("attribute_weights"), "num_rated": len(rated),
        "num_pairs": 0 if pairs is None else len(pairs), "residual_std": std, "notes": notes, "metrics": metrics,
    }


def _require_columns(dataset, columns, what: str, model: str) -> None:
    missing = [c for c in columns if c not in dataset.column_names]
    if missing:
        raise ValueError(
            f"{what} lacks the column(s) {missing} that the multi-attribute model {model} needs; found "
            f"{dataset.column_names}."
        )


def _write(record: dict, model_dir: Path) -> None:
    from trl_anchor.pipelines.multi_attribute_evaluation import comparison_table

    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "evaluation.json").write_text(json.dumps(_json_safe(record), indent=2) + "\n")
    table = comparison_table({Path(record["model"].rstrip("/")).name: record["metrics"]}, record["attributes"])
    pairs = f" and {record['num_pairs']} preference pairs" if record["num_pairs"] else ""
    lines = [f"# {record['model']} ({record['reward_type']}, multi-attribute)", "",
             f"{record['num_rated']} rated responses{pairs}.", "", table, ""]
    lines += [f"- {note}" for note in record["notes"]]
    text = "\n".join(lines) + "\n"
    (model_dir / "evaluation.md").write_text(text)
    print(f"\n{text}\nWritten: {model_dir / 'evaluation.json'}, {model_dir / 'evaluation.md'}")


def _json_safe(value):
    """NaN (e.g. a correlation of a constant column) becomes null: JSON has no NaN."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, float) and math.isnan(value):
        return None
    return value
