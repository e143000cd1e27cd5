"""Padding-free reward training: a packed batch gives the padded batch's μ, σ², loss and gradients on fewer tokens."""

import numpy as np
import pytest
import torch
from conftest import tiny_gpt2_config
from datasets import Dataset
from transformers import BertConfig, LlamaConfig, Qwen2Config
from transformers.masking_utils import find_packed_sequence_indices

from trl_anchor import AnchorGaussianRewardConfig, AnchorGaussianRewardTrainer, GaussianRewardModel
from trl_anchor.models.packing import num_real_tokens, pack_sequences, padding_free_collator_kwargs
from trl_anchor.trainer.reward_trainer import DataCollatorForAnchoredPreference

WORDS = "the quick brown fox jumps over the lazy dog a helpful answer explains the reason step by step".split()


def _mixed_length_dataset(n: int = 12, seed: int = 0) -> Dataset:
    """Responses from 1 to ~40 words, so a padded batch is mostly padding."""
    rng = np.random.default_rng(seed)

    def text(max_words):
        return " ".join(rng.choice(WORDS, int(rng.integers(1, max_words))))

    return Dataset.from_dict({
        "prompt": [f"user {i} asks " for i in range(n)],
        "chosen": [text(40 if i % 3 == 0 else 6) for i in range(n)],
        "rejected": [text(40 if i % 4 == 1 else 6) for i in range(n)],
        "soft_label": rng.uniform(0.5, 1.0, n).round(3).tolist(),
        "chosen_score": rng.normal(1.0, 1.0, n).tolist(),
        "rejected_score": rng.normal(-1.0, 1.0, n).tolist(),
        "margin": rng.uniform(0.0, 0.3, n).tolist(),
    })


def _args(tmp_path, **kwargs) -> AnchorGaussianRewardConfig:
    defaults = dict(
        output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=6, learning_rate=1e-3, logging_steps=1,
        report_to="none", use_cpu=True, save_strategy="no", seed=0, anchor_thresholds="auto",
    )
    defaults.update(kwargs)
    return AnchorGaussianRewardConfig(**defaults)


def _backbone_config(name: str, tokenizer):
    special = dict(
        vocab_size=len(tokenizer), num_labels=1, pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
    )
    if name == "gpt2":
        return tiny_gpt2_config(tokenizer)
    sizes = dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
        max_position_embeddings=256,
    )
    if name == "llama":
        return LlamaConfig(**sizes, **special)
    return Qwen2Config(**sizes, **special)


def _trainer(tmp_path, tokenizer, config, **kwargs) -> AnchorGaussianRewardTrainer:
    torch.manual_seed(0)
    peft_config = kwargs.pop("peft_config", None)
    return AnchorGaussianRewardTrainer(
        model=GaussianRewardModel.from_config(config),
        args=_args(tmp_path, **kwargs),
        train_dataset=_mixed_length_dataset(),
        processing_class=tokenizer,
        peft_config=peft_config,
    )


def _loss_outputs_and_grads(trainer, batch):
    model = trainer.model
    model.zero_grad()
    loss, outputs = trainer.compute_loss(model, batch, return_outputs=True)
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    return loss.detach(), outputs, grads


def _both_batches(trainer, examples):
    pad_id = trainer.processing_class.pad_token_id
    padded = DataCollatorForAnchoredPreference(pad_token_id=pad_id)(examples)
    packed = DataCollatorForAnchoredPreference(pad_token_id=pad_id, padding_free=True)(examples)
    return padded, packed


# --------------------------------------------------------------------------------------------------------- layout
def test_pack_sequences_keeps_every_sequence_separate_and_in_order():
    rng = np.random.default_rng(1)
    sequences = [rng.integers(5, 50, int(n)).tolist() for n in rng.integers(1, 30, 17)]
    packed = pack_sequences(sequences, pad_token_id=0)
    ids, positions, ends = packed["input_ids"].flatten(), packed["position_ids"].flatten(), packed["sequence_ends"]
    width = max(len(s) for s in sequences)
    assert packed["input_ids"].shape[1] == width
    for seq, end in zip(sequences, ends.tolist(), strict=True):
        start = end - len(seq) + 1
        assert start // width == end // width, "a sequence must not straddle two rows"
        assert ids[start : end + 1].tolist() == seq
        assert positions[start : end + 1].tolist() == list(range(len(seq)))
    # transformers sees one block per sequence plus at most one pad block per row.
    blocks = find_packed_sequence_indices(packed["position_ids"])
    num_blocks = int((blocks.max(-1).values + 1).sum())
    assert len(sequences) <= num_blocks <= len(sequences) + packed["input_ids"].shape[0]
    assert packed["input_ids"].numel() < len(sequences) * width
    assert packed["sequence_lengths"].sum() == sum(len(s) for s in sequences)


def test_pack_into_one_row_for_flash_attention():
    packed = pack_sequences([[1, 2], [3], [4, 5, 6]], pad_token_id=0, pack_into_one_row=True, pad_to_multiple_of=8)
    assert packed["input_ids"].tolist() == [[1, 2, 3, 4, 5, 6, 0, 0]]
    assert packed["position_ids"].tolist() == [[0, 1, 0, 0, 1, 2, 0, 1]]
    assert packed["sequence_ends"].tolist() == [1, 2, 5]


def test_pack_sequences_rejects_empty_sequence():
    with pytest.raises(ValueError, match="sequence 1 of the batch has no tokens"):
        pack_sequences([[1], []], pad_token_id=0)


def test_one_row_layout_is_chosen_for_flash_attention(tmp_path, tokenizer):
    model = GaussianRewardModel.from_config(tiny_gpt2_config(tokenizer))
    args = _args(tmp_path, padding_free=True)
    assert padding_free_collator_kwargs(args, model) == {"padding_free": True, "pack_into_one_row": False}
    model.config._attn_implementation = "flash_attention_2"
    assert padding_free_collator_kwargs(args, model) == {"padding_free": True, "pack_into_one_row": True}
    assert padding_free_collator_kwargs(_args(tmp_path), model) == {}


# ---------------------------------------------------------------------------------------------------- equivalence
@pytest.mark.parametrize("backbone", ["gpt2", "llama", "qwen2"])
@pytest.mark.parametrize("attn_implementation", ["sdpa", "eager"])
def test_padding_free_loss_equals_padded_loss(tmp_path, tokenizer, backbone, attn_implementation):
    trainer = _trainer(tmp_path, tokenizer, _backbone_config(backbone, tokenizer))
    trainer.model.set_attn_implementation(attn_implementation)
    examples = [trainer.train_dataset[i] for i in range(8)]
    padded, packed = _both_batches(trainer, examples)

    loss_padded, out_padded, grads_padded = _loss_outputs_and_grads(trainer, padded)
    loss_packed, out_packed, grads_packed = _loss_outputs_and_grads(trainer, packed)

    torch.testing.assert_close(out_packed.mean, out_padded.mean, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out_packed.variance, out_padded.variance, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(loss_packed, loss_padded, rtol=1e-5, atol=1e-6)
    assert grads_packed.keys() == grads_padded.keys()
    for name, grad in grads_padded.items():
        torch.testing.assert_close(grads_packed[name], grad, rtol=1e-4, atol=1e-6, msg=name)
    # Fewer positions go through the model, and the real tokens are the same.
    assert packed["input_ids"].numel() < padded["input_ids"].numel()
    assert num_real_tokens(packed) == num_real_tokens(padded)


def test_padding_free_training_follows_the_padded_run(tmp_path, tokenizer, tiny_config):
    runs = {}
    for padding_free in (False, True):
        # SGD: Adam's normalisation would blow float-rounding differences in near-zero gradients up to ±lr. At a rate
        # of 0.05 the second step's gradient norm reaches 31 and that step alone grows 1e-7 differences to 1e-4.
        trainer = _trainer(
            tmp_path / str(padding_free), tokenizer, tiny_config, padding_free=padding_free, optim="sgd",
            learning_rate=0.02,
        )
        assert trainer.data_collator.padding_free is padding_free
        trainer.train()
        logs = [log for log in trainer.state.log_history if "loss" in log]
        runs[padding_free] = (logs, dict(trainer.model.named_parameters()))
    (logs_padded, params_padded), (logs_packed, params_packed) = runs[False], runs[True]
    assert len(logs_packed) == len(logs_padded) == 3
    for padded, packed in zip(logs_padded, logs_packed, strict=True):
        assert packed["loss"] == pytest.approx(padded["loss"], rel=1e-4)
        assert packed["anchor_loss"] == pytest.approx(padded["anchor_loss"], rel=1e-4)
        assert packed["num_tokens"] == padded["num_tokens"]
    for name, param in params_padded.items():
        torch.testing.assert_close(params_packed[name], param, rtol=1e-4, atol=1e-5, msg=name)


def test_padding_free_with_lora_matches_padded(tmp_path, tokenizer, tiny_config):
    from peft import LoraConfig

    peft_config = LoraConfig(r=4, lora_alpha=8, target_modules=["c_attn"], task_type="SEQ_CLS")
    trainer = _trainer(tmp_path, tokenizer, tiny_config, padding_free=True, peft_config=peft_config)
    padded, packed = _both_batches(trainer, [trainer.train_dataset[i] for i in range(6)])
    loss_padded, _, grads_padded = _loss_outputs_and_grads(trainer, padded)
    loss_packed, _, grads_packed = _loss_outputs_and_grads(trainer, packed)
    torch.testing.assert_close(loss_packed, loss_padded, rtol=1e-5, atol=1e-6)
    assert any("lora_" in name for name in grads_packed)
    for name, grad in grads_padded.items():
        torch.testing.assert_close(grads_packed[name], grad, rtol=1e-4, atol=1e-6, msg=name)


# --------------------------------------------------------------------------------------------------------- errors
def test_padding_free_needs_gaussian_reward_type(tmp_path):
    with pytest.raises(ValueError, match="padding_free=True.*reward_type='gaussian'"):
        _args(tmp_path, padding_free=True, reward_type="bt")


def test_padding_free_rejects_encoder_backbones(tmp_path, tokenizer):
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
        num_labels=1, pad_token_id=tokenizer.pad_token_id,
    )
    trainer = _trainer(tmp_path, tokenizer, config, padding_free=True)
    _, packed = _both_batches(trainer, [trainer.train_dataset[i] for i in range(2)])
    with pytest.raises(ValueError, match="pools before its head"):
        trainer.compute_loss(trainer.model, packed)
