"""Every path reads the reward at the token plain transformers reads it at, also when the pad token IS the EOS token
(what TRL does for GPT-2, Llama-3.x and Mistral tokenizers): padded, padding-free, scoring and plain
`AutoModelForSequenceClassification` agree on μ, σ² and the loss."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_gpt2_config
from datasets import Dataset
from scipy.stats import norm
from transformers import AutoModelForSequenceClassification, LlamaConfig, Qwen2Config

from trl_anchor import AnchorGaussianRewardConfig, AnchorGaussianRewardTrainer, GaussianRewardModel
from trl_anchor.models.pooling import reward_token_index
from trl_anchor.rewards.scoring import score_responses
from trl_anchor.trainer.reward_trainer import DataCollatorForAnchoredPreference

PROMPTS = ["user 1 asks ", "user 2 asks ", "user 3 asks ", "user 4 asks "]
CHOSEN = ["the quick brown fox jumps over the lazy dog", "a helpful answer", "the cat", "four"]
REJECTED = ["rude", "this response is rude and unhelpful and wrong", "no", "the lazy dog"]


def _expected_index(row, pad_token_id) -> int:
    """Written out independently: the last position whose token is not the pad token (0 when there is none)."""
    positions = [i for i, token in enumerate(row) if token != pad_token_id]
    return positions[-1] if positions else 0


def test_reward_token_index_is_the_last_non_pad_token():
    rng = np.random.default_rng(0)
    rows = rng.integers(0, 4, size=(50, 9))  # many pad (0) tokens, left, right and inside the rows
    rows[3] = 0
    got = reward_token_index(torch.as_tensor(rows), pad_token_id=0)
    assert got.tolist() == [_expected_index(row, 0) for row in rows.tolist()]
    assert reward_token_index(torch.as_tensor(rows), pad_token_id=None).tolist() == [8] * 50
    assert reward_token_index(torch.tensor([5, 6, 1, 1]), pad_token_id=1).item() == 1


def _eos_pad(tokenizer):
    tokenizer.pad_token = tokenizer.eos_token  # what TRL does when a tokenizer has no pad token
    assert tokenizer.pad_token_id == tokenizer.eos_token_id
    return tokenizer


def _config(name, tokenizer):
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
    return (LlamaConfig if name == "llama" else Qwen2Config)(**sizes, **special)


def _gaussian_model(config):
    torch.manual_seed(0)
    model = GaussianRewardModel.from_config(config)
    with torch.no_grad():  # a fresh head predicts σ² = 1 everywhere; random weights make σ² depend on the position
        model.variance_head.weight.normal_(0, 0.5)
    return model.eval()


def _plain_copy(model):
    """The same weights in the backbone's own transformers class (what a consumer without trl_anchor loads)."""
    plain = AutoModelForSequenceClassification.from_config(model.config)
    missing, unexpected = plain.load_state_dict(model.state_dict(), strict=False)
    assert not missing and set(unexpected) == {"variance_head.weight", "variance_head.bias"}
    return plain.eval()


def _plain_mean_and_variance(plain, variance_head, ids, pad_token_id):
    """μ from plain transformers and σ² written out from its hidden state at the expected token, one sequence alone."""
    input_ids = torch.tensor([ids])
    with torch.no_grad():
        mean = plain(input_ids=input_ids).logits[0, 0].double()
        hidden = plain.base_model(input_ids=input_ids).last_hidden_state[0, _expected_index(ids, pad_token_id)]
        raw = hidden.double() @ variance_head.weight[0].double() + variance_head.bias.double()
    return mean.item(), (F.softplus(raw) + variance_head.variance_floor).item()


@pytest.mark.parametrize("backbone", ["gpt2", "llama", "qwen2"])
def test_pad_equal_to_eos_padded_packed_and_plain_transformers_agree(tmp_path, tokenizer, backbone):
    tokenizer = _eos_pad(tokenizer)
    model = _gaussian_model(_config(backbone, tokenizer))
    data = Dataset.from_dict({"prompt": PROMPTS, "chosen": CHOSEN, "rejected": REJECTED,
                              "soft_label": [0.9, 0.3, 0.6, 1.0]})
    trainer = AnchorGaussianRewardTrainer(
        model=model, args=AnchorGaussianRewardConfig(str(tmp_path), report_to="none", use_cpu=True, max_steps=1),
        train_dataset=data, processing_class=tokenizer,
    )
    examples = [trainer.train_dataset[i] for i in range(4)]
    assert all(ex["chosen_ids"][-1] == tokenizer.eos_token_id for ex in examples)  # TRL appended the EOS
    pad_id = tokenizer.pad_token_id
    padded = DataCollatorForAnchoredPreference(pad_token_id=pad_id)(examples)
    packed = DataCollatorForAnchoredPreference(pad_token_id=pad_id, padding_free=True)(examples)
    with torch.no_grad():
        loss_padded, out_padded = trainer.compute_loss(model, dict(padded), return_outputs=True)
        loss_packed, out_packed = trainer.compute_loss(model, dict(packed), return_outputs=True)

    plain = _plain_copy(model)
    sequences = [ex["chosen_ids"] for ex in examples] + [ex["rejected_ids"] for ex in examples]
    expected = np.array([_plain_mean_and_variance(plain, model.variance_head, ids, pad_id) for ids in sequences])
    for out in (out_padded, out_packed):
        np.testing.assert_allclose(out.mean.numpy(), expected[:, 0], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(out.variance.numpy(), expected[:, 1], rtol=1e-5, atol=1e-6)
    # The pairwise loss written out with scipy from the plain-transformers μ and σ².
    gap = (expected[:4, 0] - expected[4:, 0]) / np.sqrt(expected[:4, 1] + expected[4:, 1])
    label = np.array([0.9, 0.3, 0.6, 1.0])
    expected_loss = np.mean(-(label * norm.logcdf(gap) + (1 - label) * norm.logcdf(-gap)))
    assert loss_padded.item() == pytest.approx(expected_loss, rel=1e-5)
    assert loss_packed.item() == pytest.approx(expected_loss, rel=1e-5)


def test_scoring_with_pad_equal_to_eos_matches_plain_transformers(tokenizer):
    tokenizer = _eos_pad(tokenizer)
    model = _gaussian_model(_config("gpt2", tokenizer))
    scores = score_responses(model, tokenizer, CHOSEN + REJECTED, PROMPTS * 2, batch_size=8)
    plain = _plain_copy(model)
    expected = np.array([
        _plain_mean_and_variance(plain, model.variance_head, tokenizer(p + r + tokenizer.eos_token)["input_ids"],
                                 tokenizer.pad_token_id)
        for p, r in zip(PROMPTS * 2, CHOSEN + REJECTED, strict=True)
    ])
    np.testing.assert_allclose(scores.mean, expected[:, 0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(scores.variance, expected[:, 1], rtol=1e-5, atol=1e-6)


def test_a_dedicated_pad_token_in_the_config_reads_the_reward_at_the_eos(tmp_path, tokenizer):
    """The 8B recipes' setting: a tokenizer whose pad is its EOS (Llama-3.1) and a spare token named as TRL's
    `pad_token`; the trainer then reads μ and σ² at the EOS in padded and packed batches alike."""
    tokenizer = _eos_pad(tokenizer)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|finetune_right_pad_id|>"]})
    pad_id = tokenizer.convert_tokens_to_ids("<|finetune_right_pad_id|>")
    model = _gaussian_model(_config("llama", tokenizer))
    args = AnchorGaussianRewardConfig(str(tmp_path), report_to="none", use_cpu=True, max_steps=1,
                                      pad_token="<|finetune_right_pad_id|>")
    data = Dataset.from_dict({"prompt": PROMPTS, "chosen": CHOSEN, "rejected": REJECTED})
    trainer = AnchorGaussianRewardTrainer(model=model, args=args, train_dataset=data, processing_class=tokenizer)
    assert trainer.model.config.pad_token_id == trainer.processing_class.pad_token_id == pad_id
    examples = [trainer.train_dataset[i] for i in range(4)]
    padded = DataCollatorForAnchoredPreference(pad_token_id=pad_id)(examples)
    packed = DataCollatorForAnchoredPreference(pad_token_id=pad_id, padding_free=True)(examples)
    plain = _plain_copy(model)
    sequences = [ex["chosen_ids"] for ex in examples] + [ex["rejected_ids"] for ex in examples]
    assert all(ids[-1] == tokenizer.eos_token_id for ids in sequences)
    expected = np.array([_plain_mean_and_variance(plain, model.variance_head, ids, pad_id) for ids in sequences])
    for batch in (padded, packed):
        with torch.no_grad():
            out = model(**{k: batch[k] for k in batch if k in ("input_ids", "attention_mask", "position_ids",
                                                                "sequence_ends")})
        np.testing.assert_allclose(out.mean.numpy(), expected[:, 0], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(out.variance.numpy(), expected[:, 1], rtol=1e-5, atol=1e-6)
    # ... which is the EOS, not the token before it
    eos_read = [_plain_mean_and_variance(plain, model.variance_head, ids, tokenizer.eos_token_id) for ids in sequences]
    assert not np.allclose(expected[:, 1], np.array(eos_read)[:, 1])
