"""Loading a trained reward model for inference: the one loader that evaluation, best-of-N, anchor labelling and the
studies share."""

import hashlib
import json
from pathlib import Path

import torch
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from .configuration_gaussian import attribute_record, is_gaussian_config
from .modeling_gaussian import GaussianRewardModel

# `from_pretrained` arguments that locate the checkpoint, so the config and tokenizer must get them too.
_HUB_KWARGS = ("revision", "token", "cache_dir", "trust_remote_code")


def load_reward_model(
    model_name_or_path: str,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    trust_remote_code: bool = False,
    **kwargs,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """A reward model in eval mode and its tokenizer, from a local path or Hub id.

    A checkpoint saved by a `GaussianRewardModel` (`config.gaussian_reward`) loads as one (μ and σ); any other
    sequence-classification checkpoint with a single output loads as the plain `AutoModelForSequenceClassification`
    (a Bradley–Terry reward model, μ only), as does a multi-attribute regression (MSE) model, whose config records
    its attributes in `attribute_reward` (μ per attribute). A PEFT adapter folder or another classifier with several
    labels is refused with an error that says what to do.

    Args:
        model_name_or_path (`str`): local directory or Hub id.
        device (`str` or `torch.device`, *optional*): where the model goes; default the GPU when there is one, else
            the CPU.
        dtype (`str` or `torch.dtype`, *optional*): weights dtype (`"float32"`, `"bfloat16"`, `"auto"`, ...); default
            that of `from_pretrained`.
        trust_remote_code (`bool`, defaults to `False`): allow custom modelling code from the Hub.
        kwargs: further `from_pretrained` arguments (`revision`, `token`, `cache_dir`, `attn_implementation`, ...).

    The model's `config.pad_token_id` is set from the tokenizer when missing: batched scoring pads, and the model
    finds each sequence's last token through it.

    Example:

    ```python
    >>> from trl_anchor.models.loading import load_reward_model

    >>> model, tokenizer = load_reward_model("outputs/gaussian-minilm")  # doctest: +SKIP
    ```
    """
    if Path(model_name_or_path, "adapter_config.json").is_file():
        raise ValueError(
            f"{model_name_or_path} holds a PEFT adapter, not a full reward model. Merge it first "
            "(`model.merge_and_unload().save_pretrained(...)` with the tokenizer) and load the merged directory."
        )
    kwargs["trust_remote_code"] = trust_remote_code
    if dtype is not None:
        kwargs["dtype"] = _resolve_dtype(dtype)
    hub_kwargs = {key: kwargs[key] for key in _HUB_KWARGS if key in kwargs}
    config = load_config(model_name_or_path, **hub_kwargs)
    if is_gaussian_config(config):
        model = GaussianRewardModel.from_pretrained(model_name_or_path, **kwargs)
    else:
        # The MSE arm of `MultiAttributeRewardTrainer` records its attributes in `config.attribute_reward`.
        if config.num_labels != 1 and attribute_record(config) is None:
            raise ValueError(
                f"{model_name_or_path} has {config.num_labels} output labels (num_labels={config.num_labels}); a "
                "reward model has a single output, the reward (`num_labels=1`). Load a checkpoint trained as a reward "
                "model."
            )
        model = AutoModelForSequenceClassification.from_pretrained(model_name_or_path, **kwargs)
    tokenizer = AutoTokenizer.from_pretrained(model_name_or_path, **hub_kwargs)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = (
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        )
    device = device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")
    return model.to(device).eval(), tokenizer


def load_config(model_name_or_path: "str | Path", **hub_kwargs):
    """`AutoConfig.from_pretrained`, with an error that says so when a local path does not exist (instead of the Hub
    client's "Repo id must be in the form ..." or "couldn't connect")."""
    name = str(model_name_or_path)
    if not Path(name).exists() and not _could_be_hub_id(name):
        raise FileNotFoundError(f"The model directory {name} does not exist.")
    try:
        return AutoConfig.from_pretrained(name, **hub_kwargs)
    except OSError as error:
        if Path(name).exists():
            raise
        raise OSError(
            f"{name} is not a local directory (no such path) and could not be loaded from the Hub: {error}"
        ) from error


def _could_be_hub_id(name: str) -> bool:
    # Hub ids are `name` or `namespace/name`; paths that start with `/`, `.` or `~`, or have more parts, are local.
    return not name.startswith(("/", ".", "~")) and "\\" not in name and name.count("/") <= 1


def _resolve_dtype(dtype: str | torch.dtype) -> str | torch.dtype:
    if not isinstance(dtype, str) or dtype == "auto":
        return dtype
    resolved = getattr(torch, dtype, None)
    if not isinstance(resolved, torch.dtype):
        raise ValueError(f"Unknown dtype {dtype!r}; use float32, bfloat16, float16 or auto.")
    return resolved


# Files whose change changes a checkpoint's scores (weights, config, tokenizer); their sizes and modification times
# fingerprint a local checkpoint without reading gigabytes of weights.
_CHECKPOINT_FILES = ("*.safetensors", "*.bin", "*.pt", "*.pth", "*.json", "*.model", "*.txt")


def weights_fingerprint(model_or_path: "str | PreTrainedModel") -> str | None:
    """A short hash that changes whenever a reward model's weights change, for caches of its scores.

    A local directory hashes the name, size and modification time of its weight, config and tokenizer files (a model
    retrained in place gets a new fingerprint); a model object hashes its parameter values (two float64 sums per
    tensor). `None` for a Hub id, whose files cannot be checked without downloading them.
    """
    if isinstance(model_or_path, (str, Path)):
        path = Path(model_or_path)
        if not path.is_dir():
            return None
        files = sorted({f for pattern in _CHECKPOINT_FILES for f in path.glob(pattern) if f.is_file()})
        stats = [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files]
        return _digest(stats)
    with torch.no_grad():
        sums = [torch.stack([p.double().sum(), p.double().abs().sum()]) for p in model_or_path.parameters()]
        values = torch.stack(sums).cpu().tolist() if sums else []
    return _digest(values)


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value).encode("utf-8")).hexdigest()[:16]
