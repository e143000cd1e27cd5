"""`trl-anchor label-anchors`: score `chosen` and `rejected` of a preference dataset with an external reward model.

Writes the dataset with `chosen_score`/`rejected_score` columns to `--output_dir` (`datasets.save_to_disk`), plus
`anchor_labeling.json` with the resolved thresholds τ, and prints τ. Train on the result with
`anchor_thresholds: auto` (the trainer resolves the same percentiles of the train scores).

```bash
trl-anchor label-anchors --dataset_name data/pairs.jsonl \\
    --reward_model OpenAssistant/reward-model-deberta-v3-large-v2 --output_dir outputs/pairs-labelled
trl-anchor label-anchors --dataset_adapter multipref --reward_model my/reward-model --center --output_dir out/mp
```

Scores are cached in `--cache_file` (default `<output_dir>/anchor_score_cache.jsonl`), so an interrupted run resumes.
"""

import json
from dataclasses import dataclass, field
from pathlib import Path

from trl import TrlParser

from .utils import DTYPES, DatasetArguments


@dataclass
class LabelAnchorsArguments(DatasetArguments):
    """The data (see `DatasetArguments`), the reward model that scores it and where the result goes."""

    reward_model: str | None = field(
        default=None,
        metadata={"help": "Hub id or local path of a sequence-classification reward model with one output logit."},
    )
    output_dir: str | None = field(default=None, metadata={"help": "Where the labelled dataset is saved."})
    train_split: str = field(default="train", metadata={"help": "Split whose scores define the centre and τ."})
    batch_size: int = field(default=16, metadata={"help": "Responses per forward pass."})
    max_length: int | None = field(
        default=None, metadata={"help": "Keep the last `max_length` tokens of longer prompt+response sequences."}
    )
    cache_file: str | None = field(
        default=None, metadata={"help": "Score cache (JSON lines); default <output_dir>/anchor_score_cache.jsonl."}
    )
    center: bool = field(default=False, metadata={"help": "Subtract the mean train score from every score."})
    anchor_percentiles: list[float] = field(
        default_factory=lambda: [25.0, 75.0],
        metadata={"help": "Percentiles of the train scores reported as the thresholds τ."},
    )
    device: str | None = field(default=None, metadata={"help": "Device of the reward model; default cuda if present."})
    dtype: str = field(
        default="float32",
        metadata={"help": "Reward model dtype: float32, bfloat16, float16 or auto.", "choices": list(DTYPES)},
    )
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow custom model code from the Hub."})
    show_progress: bool = field(default=True, metadata={"help": "Show a progress bar while scoring."})


def make_parser(prog: str | None = None) -> TrlParser:
    """`TrlParser` over `LabelAnchorsArguments` (flags or `--config label_anchors.yaml`)."""
    return TrlParser((LabelAnchorsArguments,), prog=prog)


def main(args: LabelAnchorsArguments) -> int:
    from datasets import Dataset, DatasetDict

    from trl_anchor.models.loading import load_reward_model
    from trl_anchor.pipelines.anchor_labeling import label_anchors

    from .utils import load_preference_data

    if args.reward_model is None or args.output_dir is None:
        raise ValueError("Set both --reward_model and --output_dir.")
    if args.dataset_streaming:
        raise ValueError(
            "label-anchors needs the whole dataset (for the train percentiles); drop --dataset_streaming."
        )
    data = load_preference_data(args)
    if not isinstance(data, (Dataset, DatasetDict)):
        raise ValueError(f"Expected a map-style dataset, got {type(data).__name__}.")
    model, tokenizer = load_reward_model(
        args.reward_model, device=args.device, dtype=args.dtype, trust_remote_code=args.trust_remote_code
    )
    output_dir = Path(args.output_dir)
    result = label_anchors(
        data,
        model,
        tokenizer=tokenizer,
        scorer_id=args.reward_model,
        batch_size=args.batch_size,
        max_length=args.max_length,
        cache_file=args.cache_file or output_dir / "anchor_score_cache.jsonl",
        center=args.center,
        percentiles=args.anchor_percentiles,
        train_split=args.train_split,
        show_progress=args.show_progress,
    )
    result.dataset.save_to_disk(str(output_dir))
    (output_dir / "anchor_labeling.json").write_text(json.dumps(result.summary(), indent=2) + "\n")
    print(
        f"anchor_thresholds: {result.thresholds}  (percentiles {result.percentiles} of the {args.train_split} scores)"
    )
    print(f"Labelled dataset saved to {output_dir}; train on it with anchor_thresholds: auto.")
    return 0


if __name__ == "__main__":
    (label_anchors_args,) = make_parser().parse_args_and_config()
    raise SystemExit(main(label_anchors_args))
