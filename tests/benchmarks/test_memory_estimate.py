"""The on-paper memory table of recipes/README.md: parameter counts against the published checkpoints, the activation
formula against the tensors PyTorch really saves for backward, the ZeRO arithmetic by hand, and the committed table
against the script."""

import shutil
import sys
from pathlib import Path

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

import memory_estimate  # noqa: E402

# Total parameters of the published checkpoints (safetensors metadata of the Hub repositories), which include the
# language-model head (vocab × hidden) that a reward model replaces by its μ head (hidden) and σ² head (hidden + 1).
PUBLISHED = {
    "meta-llama/Llama-3.1-8B-Instruct": 8_030_261_248,
    "Qwen/Qwen2.5-7B-Instruct": 7_615_616_512,
}


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_parameter_count_is_the_published_checkpoint_with_reward_heads(name):
    config = memory_estimate.model_config(name)
    hidden, vocab = config.hidden_size, config.vocab_size
    expected = PUBLISHED[name] - vocab * hidden + hidden + (hidden + 1)
    assert memory_estimate.recipe_model_parameters(name) == expected


def saved_activation_bytes(config, inputs: dict, checkpointing: bool) -> int:
    """Bytes of the distinct non-parameter tensors autograd saves during one bf16 training forward."""
    from trl_anchor import GaussianRewardModel
    from trl_anchor.models.packing import reward_model_inputs

    torch.manual_seed(0)
    model = GaussianRewardModel.from_config(config).to(torch.bfloat16)
    model.set_attn_implementation("sdpa")
    if checkpointing:
        model.activation_checkpointing_enable({"use_reentrant": False})
    model.train()
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    saved: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            saved[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        model(**reward_model_inputs(inputs), use_cache=False)
    return sum(saved.values())


def padded_inputs(rows: int, width: int) -> dict:
    """Rows of one full-length sequence each: no mask, as in the table's worst case."""
    return {"input_ids": torch.randint(3, 300, (rows, width)), "attention_mask": torch.ones(rows, width, dtype=int)}


def packed_inputs() -> dict:
    """Padding-free rows of 48 tokens, some holding two sequences: transformers builds a block-diagonal mask."""
    from trl_anchor.models.packing import pack_sequences

    return pack_sequences([list(range(3, 3 + n)) for n in (48, 30, 17, 40, 9)], pad_token_id=0)


@pytest.mark.parametrize("model_type", ["llama", "qwen2"])
@pytest.mark.parametrize("layout", ["padded", "packed"])
def test_activation_formula_equals_the_tensors_saved_for_backward(model_type, layout):
    from transformers import AutoConfig

    def config(layers):
        return AutoConfig.for_model(
            model_type, num_hidden_layers=layers, hidden_size=64, intermediate_size=176, num_attention_heads=4,
            num_key_value_heads=2, vocab_size=300, num_labels=1, pad_token_id=0,
        )

    inputs = padded_inputs(2, 40) if layout == "padded" else packed_inputs()
    tokens = inputs["input_ids"].numel()
    mask = None if layout == "padded" else tuple(inputs["input_ids"].shape)
    outside = {}
    for checkpointing in (False, True):
        measured = {layers: saved_activation_bytes(config(layers), inputs, checkpointing) for layers in (1, 3)}
        predicted = {layers: memory_estimate.activation_bytes(config(layers), tokens, checkpointing, mask)
                     for layers in (1, 3)}
        # Two more layers: what two decoder layers keep, independent of embeddings and heads.
        assert measured[3] - measured[1] == predicted[3] - predicted[1]
        if checkpointing:
            assert measured[3] - measured[1] == 2 * 2 * tokens * 64  # each layer keeps its bf16 input only
            predicted[3] -= memory_estimate.layer_activation_bytes(config(3), tokens, mask)  # recomputed in backward
        outside[checkpointing] = measured[3] - predicted[3]
    # Left out of the formula: only what lies outside the layers (token ids, pooled head inputs, and without
    # checkpointing the rotary cos/sin tables that all layers share), under 1% even of this tiny model's activations.
    assert 0 <= outside[True] <= outside[False] < 0.01 * saved_activation_bytes(config(3), inputs, False)


def test_zero_partitioning_by_hand():
    assert memory_estimate.state_bytes(1000, 8, 2) == {"weights": 2000, "gradients": 250, "optimizer": 1500}
    assert memory_estimate.state_bytes(1000, 8, 3) == {"weights": 250, "gradients": 250, "optimizer": 1500}
    with pytest.raises(ValueError, match="must be 2 or 3"):
        memory_estimate.state_bytes(1000, 8, 1)


def test_batch_and_length_are_read_from_the_recipe(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    shutil.copy(memory_estimate.RECIPES[0], recipe)
    settings = yaml.safe_load(recipe.read_text())
    settings.update(per_device_train_batch_size=1, max_length=512, gradient_checkpointing=False)
    recipe.write_text(yaml.safe_dump(settings))
    estimate = memory_estimate.estimate(recipe, num_gpus=4)
    config = memory_estimate.model_config(settings["model_name_or_path"])
    assert (estimate.tokens, estimate.checkpointing) == (1024, False)
    assert estimate.activations[False] == memory_estimate.activation_bytes(config, 1024, False)
    assert estimate.states[3]["optimizer"] == 12 * estimate.parameters / 4


def test_committed_table_is_the_scripts_output():
    readme = memory_estimate.README.read_text()
    estimates = [memory_estimate.estimate(r, memory_estimate.gpu_count()) for r in memory_estimate.RECIPES]
    expected = memory_estimate.section(estimates)
    assert expected in readme, "recipes/README.md is stale: run `python benchmarks/memory_estimate.py --write`."
