"""`score_responses` pads with the token id the model pools on and truncates without dropping the special tokens an
encoder pools on."""

import numpy as np
import torch
from conftest import tiny_gpt2_config
from transformers import AutoTokenizer

from trl_anchor import GaussianRewardModel
from trl_anchor.rewards.scoring import score_responses

RESPONSES = [" the quick brown fox jumps over the lazy dog", " no", " a helpful answer", " the cat"]


def _alone(model, ids):
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]))
    return out.mean.item(), out.variance.item()


def test_pads_with_the_id_the_model_pools_on(tokenizer):
    # The tokenizer pads with `<pad>` but the model pools on the EOS id (a checkpoint trained with pad = eos).
    config = tiny_gpt2_config(tokenizer, pad_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    model = GaussianRewardModel.from_config(config).eval()
    with torch.no_grad():
        model.variance_head.weight.normal_(0, 0.5)
    assert tokenizer.pad_token_id != model.config.pad_token_id
    scores = score_responses(model, tokenizer, RESPONSES, batch_size=4)
    expected = np.array([_alone(model, tokenizer(r + tokenizer.eos_token)["input_ids"]) for r in RESPONSES])
    np.testing.assert_allclose(scores.mean, expected[:, 0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(scores.variance, expected[:, 1], rtol=1e-5, atol=1e-6)


def test_truncation_keeps_the_leading_special_tokens_of_an_encoder(minilm_dir):
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir)
    model = GaussianRewardModel.from_pretrained(minilm_dir).eval()
    long = "a caption that goes on and on " * 20
    ids = tokenizer(long)["input_ids"]
    assert ids[0] == tokenizer.cls_token_id and ids[-1] == tokenizer.sep_token_id and len(ids) > 32
    kept = [tokenizer.cls_token_id] + ids[-31:]  # [CLS] (what BERT pools on) + the last 31 tokens, ending in [SEP]
    scores = score_responses(model, tokenizer, [long, " short caption"], max_length=32)
    expected = [_alone(model, kept)[0], _alone(model, tokenizer(" short caption")["input_ids"])[0]]
    np.testing.assert_allclose(scores.mean, expected, rtol=1e-5, atol=1e-6)
