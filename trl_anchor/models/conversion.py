"""Gaussian reward models from models the user already has: plain sequence-classification instances and PEFT models.

`to_gaussian` turns an instantiated `...ForSequenceClassification` model (`num_labels=1`) into a `GaussianRewardModel`
in place: it attaches a fresh `VarianceHead` (σ² = 1 everywhere) and switches the instance to the
`Gaussian<Backbone>` subclass, so the user's weights are neither copied nor reloaded. A `PeftModel` is converted
through its base model, which PEFT keeps by reference.

With LoRA (or any PEFT method) the trainer trains exactly what the `PeftConfig` asks for, as `trl.RewardTrainer` does,
plus the variance head: it is new, so there is nothing to adapt, and PEFT would otherwise freeze it with the base.
A saved adapter directory therefore holds PEFT's usual `adapter_config.json` and `adapter_model.safetensors` with the
adapter weights (and the modules of `modules_to_save`, e.g. `score` with `task_type="SEQ_CLS"`) **plus** the trained
variance head under its full parameter names (`base_model.model.variance_head.weight`/`.bias`). Without
`modules_to_save` the mean head is not in the adapter, exactly as with TRL: it is whatever the base checkpoint holds
(a fresh random head for a causal-LM base). PEFT loads the unprefixed variance-head tensors as they are, so

```python
>>> from peft import PeftModel
>>> model = PeftModel.from_pretrained(GaussianRewardModel.from_pretrained(base_model_id), adapter_dir)
```

restores LoRA weights and variance head alike (so does resuming a LoRA run from a checkpoint). Loaded on a plain
`AutoModelForSequenceClassification` base, the variance head is an unexpected key and is ignored: μ alone.
"""

import os

import torch
from accelerate.utils import is_peft_model
from safetensors.torch import load_file, save_file

from .configuration_gaussian import gaussian_settings, prepare_gaussian_config
from .modeling_gaussian import GaussianRewardModel, VarianceHead, _in_features, gaussian_class, reward_head

ADAPTER_SAFETENSORS, ADAPTER_BIN = "adapter_model.safetensors", "adapter_model.bin"


def to_gaussian(
    model, variance_floor: float | None = None, attributes: list[str] | None = None
) -> GaussianRewardModel:
    """Turn a sequence-classification model with `num_labels=1` into a `GaussianRewardModel`, in place; with
    `attributes`, one with `num_labels = len(attributes)` into a multi-attribute one (σ² per attribute).

    A model that already is one keeps its heads; `variance_floor`, when given, replaces its floor.

    Example:

    ```python
    >>> from transformers import GPT2Config, GPT2ForSequenceClassification
    >>> model = GPT2ForSequenceClassification(GPT2Config(n_layer=1, n_embd=16, n_head=2, num_labels=1))
    >>> gaussian = to_gaussian(model)
    >>> gaussian is model, type(model).__name__, model.variance_head.weight.shape
    (True, 'GaussianGPT2ForSequenceClassification', torch.Size([1, 16]))
    ```
    """
    prepare_gaussian_config(model.config, variance_floor, attributes)  # checks num_labels, records floor, attributes
    floor = gaussian_settings(model.config)["variance_floor"]
    if isinstance(model, GaussianRewardModel):
        model.variance_head.variance_floor = floor
        return model
    head = reward_head(model)
    num_outputs = model.config.num_labels
    model.variance_head = VarianceHead(_in_features(head), floor, num_outputs).to(next(head.parameters()).device)
    model.__class__ = gaussian_class(type(model))
    model.fresh_heads = {"variance"}  # the mean head is the user's, trained or not
    return model


def train_variance_head(model) -> None:
    """Make the variance head of a PEFT-wrapped Gaussian model trainable (PEFT freezes every base parameter).

    A variance head the user listed in `modules_to_save` is left to PEFT, which already trains its copy."""
    head = _base(model).variance_head
    if isinstance(head, VarianceHead):
        head.requires_grad_(True)


def save_variance_head_with_adapter(model, save_directory: str, state_dict: dict | None = None) -> None:
    """Add the variance head's tensors to the adapter file(s) PEFT wrote for `model` in `save_directory`.

    `state_dict` is the full state dict the trainer saved from (gathered under DeepSpeed ZeRO-3), if any."""
    head = _base(model).variance_head
    if not isinstance(head, VarianceHead):  # in `modules_to_save`: PEFT saved it
        return
    names = {id(param): name for name, param in model.named_parameters()}
    tensors = {}
    for param in head.parameters():
        name = names[id(param)]
        value = state_dict[name] if state_dict is not None and name in state_dict else param
        tensors[name] = value.detach().cpu().contiguous()
    for adapter_name in model.peft_config:
        # PEFT saves each adapter but the default one in a sub-directory named after it.
        directory = save_directory if adapter_name == "default" else os.path.join(save_directory, adapter_name)
        _append_to_adapter_file(directory, tensors)


def _append_to_adapter_file(directory: str, tensors: dict[str, torch.Tensor]) -> None:
    safetensors_path, bin_path = os.path.join(directory, ADAPTER_SAFETENSORS), os.path.join(directory, ADAPTER_BIN)
    if os.path.isfile(safetensors_path):
        save_file({**load_file(safetensors_path), **tensors}, safetensors_path, metadata={"format": "pt"})
    elif os.path.isfile(bin_path):
        torch.save({**torch.load(bin_path, weights_only=True), **tensors}, bin_path)
    else:
        raise FileNotFoundError(f"No adapter weights ({ADAPTER_SAFETENSORS} or {ADAPTER_BIN}) in {directory}.")


def _base(model):
    return model.get_base_model() if is_peft_model(model) else model
