import json

import pytest
import torch
from transformers import AutoModelForSequenceClassification, BertConfig, GPT2ForSequenceClassification

from trl_anchor import GaussianRewardModel, GaussianRewardModelOutput
from trl_anchor.models.configuration_gaussian import anchor_scale, is_gaussian_config


def _batch(tokenizer, texts, padding_side="right"):
    tokenizer.padding_side = padding_side
    return tokenizer(texts, return_tensors="pt", padding=True)


def _randomize_variance_head(model):
    # A fresh head predicts σ² = 1 everywhere; random weights make the round-trip checks meaningful.
    with torch.no_grad():
        model.variance_head.weight.normal_(0, 0.5)


def test_forward_outputs(tokenizer, tiny_config):
    torch.manual_seed(0)
    model = GaussianRewardModel.from_config(tiny_config).eval()
    assert isinstance(model, GaussianRewardModel) and isinstance(model, GPT2ForSequenceClassification)
    out = model(**_batch(tokenizer, ["the quick fox", "a helpful answer explains the reason"]))
    assert isinstance(out, GaussianRewardModelOutput)
    assert out.logits.shape == (2, 1) and out.mean.shape == out.variance.shape == out.std.shape == (2,)
    torch.testing.assert_close(out.mean, out.logits.squeeze(-1))
    torch.testing.assert_close(out.std, out.variance.sqrt())
    torch.testing.assert_close(out.variance, torch.ones(2), atol=1e-6, rtol=0)  # fresh head: σ² = 1


def test_variance_is_pooled_at_the_last_real_token(tokenizer, tiny_config):
    torch.manual_seed(0)
    model = GaussianRewardModel.from_config(tiny_config).eval()
    _randomize_variance_head(model)
    texts = ["the cat", "a helpful answer explains the reason step by step"]
    right = model(**_batch(tokenizer, texts, "right"))
    alone = [model(**_batch(tokenizer, [t])) for t in texts]
    torch.testing.assert_close(right.variance, torch.cat([o.variance for o in alone]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(right.mean, torch.cat([o.mean for o in alone]), atol=1e-5, rtol=1e-5)


def test_variance_floor_and_positivity(tiny_config):
    model = GaussianRewardModel.from_config(tiny_config, variance_floor=0.05)
    with torch.no_grad():
        model.variance_head.bias.fill_(-1e4)  # softplus underflows to 0: the floor remains
    out = model(input_ids=torch.tensor([[5, 6, 7]]))
    assert out.variance.item() == pytest.approx(0.05)
    with torch.no_grad():
        model.variance_head.bias.fill_(1e4)  # linear regime, no overflow
    assert torch.isfinite(model(input_ids=torch.tensor([[5, 6, 7]])).variance).all()
    with pytest.raises(ValueError, match="variance_floor"):
        GaussianRewardModel.from_config(tiny_config, variance_floor=0.0)


def test_save_load_plain_transformers_and_gaussian(tmp_path, tokenizer, tiny_config):
    torch.manual_seed(0)
    model = GaussianRewardModel.from_config(tiny_config).eval()
    _randomize_variance_head(model)
    model.record_training_settings(anchor_thresholds=[-0.5, 0.5], anchor_lambda=0.1)
    batch = _batch(tokenizer, ["the quick brown fox", "this response is rude"])
    expected = model(**batch)
    model.save_pretrained(tmp_path)

    config = json.loads((tmp_path / "config.json").read_text())
    assert config["architectures"] == ["GPT2ForSequenceClassification"]
    assert config["gaussian_reward"]["anchor_thresholds"] == [-0.5, 0.5]
    assert "auto_map" not in config  # no remote code

    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert type(plain) is GPT2ForSequenceClassification
    torch.testing.assert_close(plain(**batch).logits, expected.logits, atol=1e-5, rtol=0)

    reloaded = GaussianRewardModel.from_pretrained(tmp_path).eval()
    assert is_gaussian_config(reloaded.config)
    again = reloaded(**batch)
    torch.testing.assert_close(again.mean, expected.mean, atol=0, rtol=0)
    torch.testing.assert_close(again.variance, expected.variance, atol=0, rtol=0)


def test_plain_checkpoint_gets_fresh_variance_head(tmp_path, tiny_config):
    torch.manual_seed(0)
    GPT2ForSequenceClassification(tiny_config).save_pretrained(tmp_path)
    model = GaussianRewardModel.from_pretrained(tmp_path).eval()
    out = model(input_ids=torch.tensor([[5, 6, 7]]))
    torch.testing.assert_close(out.variance, torch.ones(1), atol=1e-6, rtol=0)
    assert model.variance_head.weight.abs().sum() == 0


def test_encoder_backbone_minilm(minilm_dir, tmp_path):
    model = GaussianRewardModel.from_pretrained(minilm_dir).eval()
    _randomize_variance_head(model)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm_dir)
    batch = tokenizer(["a funny caption", "an unfunny caption that is much longer"], return_tensors="pt", padding=True)
    out = model(**batch)
    assert out.mean.shape == out.variance.shape == (2,)
    assert out.variance[0] != out.variance[1]
    model.save_pretrained(tmp_path)
    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(plain(**batch).logits, out.logits, atol=1e-5, rtol=0)


def test_bert_config_from_scratch():
    config = BertConfig(
        num_hidden_layers=1, num_attention_heads=2, hidden_size=16, intermediate_size=32, vocab_size=50, num_labels=1
    )
    model = GaussianRewardModel.from_config(config)
    assert model.variance_head.weight.shape == (1, 16)


def test_num_labels_must_be_one(tiny_config):
    tiny_config.num_labels = 2
    with pytest.raises(ValueError, match="num_labels=1"):
        GaussianRewardModel.from_config(tiny_config)


def test_anchor_scale_reads_the_record_and_defaults_to_zero():
    assert anchor_scale({}) == {"mean_offset": 0.0, "group_variance": 0.0}
    # A saved config stores None for an unset entry; JSON round trips may turn floats into ints.
    record = {"anchor_mean_offset": -1, "anchor_group_variance": None, "variance_floor": 1e-4}
    assert anchor_scale(record) == {"mean_offset": -1.0, "group_variance": 0.0}
    assert anchor_scale({"anchor_mean_offset": 0.25, "anchor_group_variance": 0.16}) == {
        "mean_offset": 0.25,
        "group_variance": 0.16,
    }


@pytest.mark.parametrize(
    ("key", "value"),
    [("anchor_mean_offset", float("nan")), ("anchor_group_variance", -0.1), ("anchor_group_variance", float("inf"))],
)
def test_anchor_scale_rejects_a_corrupt_record_naming_the_key(key, value):
    with pytest.raises(ValueError, match=f"gaussian_reward.{key}"):
        anchor_scale({key: value})


def test_bf16_cast_model_still_computes_both_heads_in_float32(tiny_config):
    model = GaussianRewardModel.from_config(tiny_config).to(torch.bfloat16)  # e.g. DeepSpeed casts every parameter
    out = model(input_ids=torch.tensor([[5, 6, 7]]))
    assert out.logits.dtype == out.mean.dtype == out.variance.dtype == torch.float32


def test_model_pickles_with_torch_save(tmp_path, tokenizer, tiny_config):
    import subprocess
    import sys

    torch.manual_seed(0)
    model = GaussianRewardModel.from_config(tiny_config).eval()
    _randomize_variance_head(model)
    torch.save(model, tmp_path / "model.pt")
    loaded = torch.load(tmp_path / "model.pt", weights_only=False)
    assert type(loaded) is type(model)
    batch = _batch(tokenizer, ["the quick brown fox", "this response is rude"])
    torch.testing.assert_close(loaded(**batch).variance, model(**batch).variance, atol=0, rtol=0)
    # a fresh process, where the Gaussian class has not been generated yet, unpickles it too
    code = (
        "import torch; m = torch.load(r'%s', weights_only=False); "
        "print(type(m).__name__, round(float(m(input_ids=torch.tensor([[5, 6, 7]])).variance), 6))"
    ) % (tmp_path / "model.pt")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    expected = round(float(model(input_ids=torch.tensor([[5, 6, 7]])).variance), 6)
    assert result.stdout.split()[-2:] == ["GaussianGPT2ForSequenceClassification", str(expected)]
