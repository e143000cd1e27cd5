"""`score_responses` validates its arguments, embeds no more positions than an encoder has, and never returns a
non-finite score (issue 12)."""

import logging

import numpy as np
import pytest
import torch
from conftest import tiny_gpt2_config
from datasets import Dataset
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

from trl_anchor import GaussianRewardModel
from trl_anchor.pipelines.evaluation import evaluate_reward_model
from trl_anchor.rewards.scoring import score_responses, score_token_ids


@pytest.fixture
def gaussian(tokenizer):
    torch.manual_seed(0)
    return GaussianRewardModel.from_config(tiny_gpt2_config(tokenizer)).eval()


@pytest.mark.parametrize("kwargs, message", [
    ({"max_length": 0}, "`max_length` must be a positive integer"),
    ({"max_length": -1}, "`max_length` must be a positive integer"),
    ({"max_length": 2.5}, "`max_length` must be a positive integer"),
    ({"batch_size": 0}, "`batch_size` must be a positive integer"),
    ({"batch_size": -3}, "`batch_size` must be a positive integer"),
])
def test_bad_arguments(gaussian, tokenizer, kwargs, message):
    with pytest.raises(ValueError, match=message):
        score_responses(gaussian, tokenizer, ["a response"], ["a prompt "], **kwargs)


def test_none_response_is_named(gaussian, tokenizer):
    with pytest.raises(ValueError, match=r"rows \[1\] are None"):
        score_responses(gaussian, tokenizer, ["fine", None], ["p ", "p "])


def test_encoder_defaults_to_its_position_limit(minilm_dir, caplog):
    tokenizer = AutoTokenizer.from_pretrained(minilm_dir)
    model = GaussianRewardModel.from_pretrained(minilm_dir).eval()
    long = " ".join(f"word{i}" for i in range(800))  # far more than MiniLM's 512 positions
    with caplog.at_level(logging.WARNING):
        scores = score_responses(model, tokenizer, [long, "short"], ["a prompt "] * 2)
    assert "1/2 sequences exceed max_length=512" in caplog.text
    explicit = score_responses(model, tokenizer, [long, "short"], ["a prompt "] * 2, max_length=512)
    np.testing.assert_allclose(scores.mean, explicit.mean, atol=1e-6)
    np.testing.assert_allclose(scores.variance, explicit.variance, atol=1e-6)


def test_roberta_style_position_table_reserves_padding_rows(tokenizer):
    from transformers import RobertaConfig, RobertaForSequenceClassification

    config = RobertaConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=32, max_position_embeddings=22, pad_token_id=1, num_labels=1)
    model = RobertaForSequenceClassification(config).eval()
    long = " ".join(f"w{i}" for i in range(60))
    score_responses(model, tokenizer, [long], ["p "])  # crashes inside the embeddings without the limit of 20


def test_rotary_decoder_has_no_default_limit(tokenizer, caplog):
    from transformers import LlamaConfig, LlamaForSequenceClassification

    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=8, num_labels=1,
                         pad_token_id=tokenizer.pad_token_id)
    model = LlamaForSequenceClassification(config).eval()
    with caplog.at_level(logging.WARNING):
        score_responses(model, tokenizer, [" ".join(["word"] * 30)], ["p "])
    assert "exceed max_length" not in caplog.text


@pytest.mark.parametrize("field", ["mean", "variance"])
def test_non_finite_outputs_name_the_rows(gaussian, tokenizer, field):
    with torch.no_grad():
        if field == "mean":
            gaussian.score.weight.fill_(float("nan"))
        else:
            gaussian.variance_head.bias.fill_(float("nan"))
    what = "μ" if field == "mean" else "σ²"
    with pytest.raises(ValueError, match=rf"non-finite {what} for 3 of 3 sequences \(rows \[0, 1, 2\]"):
        score_responses(gaussian, tokenizer, ["a", "bb", "ccc"], ["p "] * 3)
    data = Dataset.from_dict({"prompt": ["p "] * 2, "chosen": ["a", "b"], "rejected": ["c", "d"]})
    with pytest.raises(ValueError, match=rf"non-finite {what}"):
        evaluate_reward_model(gaussian, tokenizer, data)


def test_one_bad_row_is_named_in_input_order(tokenizer):
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=16, num_labels=1, pad_token_id=tokenizer.pad_token_id)
    model = BertForSequenceClassification(config).eval()
    poisoned = 7
    with torch.no_grad():
        model.bert.embeddings.word_embeddings.weight[poisoned] = float("inf")
    with pytest.raises(ValueError, match=r"non-finite μ for 1 of 3 sequences \(rows \[2\]"):
        score_token_ids(model, [[5, 6], [5, 6, 8, 9], [5, poisoned]], pad_token_id=tokenizer.pad_token_id)


def test_non_text_response_is_named(gaussian, tokenizer):
    with pytest.raises(ValueError, match="row 2 is int 5"):
        score_responses(gaussian, tokenizer, ["a", "b", 5])
