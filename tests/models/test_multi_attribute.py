"""Multi-attribute Gaussian reward models: μ, σ² ∈ R^A on the backbone's own class, loadable as plain transformers."""

import pytest
import torch
from transformers import AutoModelForSequenceClassification, GPT2Config, GPT2ForSequenceClassification, GPT2LMHeadModel

from trl_anchor import GaussianRewardModel
from trl_anchor.models.configuration_gaussian import attribute_names, attribute_record
from trl_anchor.models.conversion import to_gaussian

ATTRIBUTES = ["helpfulness", "correctness", "coherence", "complexity", "verbosity"]
PAD = 0


def _config(**kwargs):
    return GPT2Config(n_layer=2, n_head=2, n_embd=16, vocab_size=50, pad_token_id=PAD, **kwargs)


def _model():
    torch.manual_seed(0)
    model = GaussianRewardModel.from_config(_config(), attributes=ATTRIBUTES)
    with torch.no_grad():  # a variance head that depends on the input, so shapes and pooling are visible
        model.variance_head.weight.normal_()
    return model


def test_shapes_and_config():
    model = _model()
    ids = torch.tensor([[5, 6, 7, PAD], [8, 9, 10, 11]])
    out = model(input_ids=ids)
    assert out.logits.shape == out.mean.shape == out.variance.shape == out.std.shape == (2, 5)
    assert model.config.num_labels == 5 and attribute_names(model.config) == ATTRIBUTES
    assert model.config.id2label == dict(enumerate(ATTRIBUTES))
    assert torch.all(out.variance > 0)
    torch.testing.assert_close(out.std**2, out.variance)


def test_attribute_record_of_gaussian_mse_and_scalar_configs():
    gaussian = GaussianRewardModel.from_config(_config(), attributes=ATTRIBUTES)
    gaussian.record_training_settings(attribute_weights=[1.0, 0.5, 0.5, 0.0, -0.5])
    assert attribute_record(gaussian.config)["attributes"] == ATTRIBUTES
    assert attribute_record(gaussian.config)["attribute_weights"] == [1.0, 0.5, 0.5, 0.0, -0.5]
    # The MSE arm is a plain model: its record lives in `attribute_reward`.
    mse = _config(num_labels=2)
    mse.attribute_reward = {"attributes": ["a", "b"], "attribute_weights": [1.0, 1.0]}
    assert attribute_record(mse) == {"attributes": ["a", "b"], "attribute_weights": [1.0, 1.0]}
    # One-output models, Gaussian or plain, have no attribute record.
    assert attribute_record(GaussianRewardModel.from_config(_config(num_labels=1)).config) is None
    assert attribute_record(_config(num_labels=1)) is None


def test_each_attribute_is_read_at_the_scalar_models_token():
    # Independent check: μ_a equals the score row a applied to the hidden state at the last non-pad token.
    model = _model().eval()
    ids = torch.tensor([[5, 6, 7, PAD, PAD], [8, 9, 10, 11, 12]])
    out = model(input_ids=ids, attention_mask=(ids != PAD).long())
    hidden = model.transformer(input_ids=ids, attention_mask=(ids != PAD).long()).last_hidden_state
    pooled = torch.stack([hidden[0, 2], hidden[1, 4]])
    torch.testing.assert_close(out.mean, pooled @ model.score.weight.T)
    raw = pooled.double() @ model.variance_head.weight.double().T + model.variance_head.bias.double()
    torch.testing.assert_close(out.variance, (torch.nn.functional.softplus(raw) + 1e-4).float())


def test_round_trip_and_plain_transformers_loads_mu(tmp_path):
    model = _model().eval()
    ids = torch.tensor([[5, 6, 7, PAD], [8, 9, 10, 11]])
    expected = model(input_ids=ids)
    model.save_pretrained(tmp_path)

    reloaded = GaussianRewardModel.from_pretrained(tmp_path).eval()
    out = reloaded(input_ids=ids)
    assert attribute_names(reloaded.config) == ATTRIBUTES
    torch.testing.assert_close(out.mean, expected.mean)
    torch.testing.assert_close(out.variance, expected.variance)

    plain = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    assert type(plain) is GPT2ForSequenceClassification and plain.config.num_labels == 5
    assert plain.config.id2label[4] == "verbosity"
    torch.testing.assert_close(plain(input_ids=ids).logits, expected.mean)


def test_plain_labels_give_the_nemo_mse_loss():
    model = _model()
    ids = torch.tensor([[5, 6, 7, 8]])
    labels = torch.tensor([[4.0, 3.0, 3.0, 1.0, 2.0]])
    out = model(input_ids=ids, labels=labels)
    torch.testing.assert_close(out.loss, ((out.logits - labels) ** 2).mean())


def test_base_checkpoint_becomes_multi_attribute(tmp_path):
    GPT2LMHeadModel(_config()).save_pretrained(tmp_path)  # a base LM: both heads are new
    model = GaussianRewardModel.from_pretrained(tmp_path, attributes=ATTRIBUTES[:3])
    assert model.config.num_labels == 3 and model.variance_head.weight.shape == (3, 16)
    assert model(input_ids=torch.tensor([[5, 6]])).variance.shape == (1, 3)
    # Without `attributes` the same base checkpoint is the scalar model.
    assert GaussianRewardModel.from_pretrained(tmp_path).config.num_labels == 1


def test_one_attribute_keeps_scalar_shapes():
    model = GaussianRewardModel.from_config(_config(), attributes=["helpfulness"])
    out = model(input_ids=torch.tensor([[5, 6, 7]]))
    assert out.mean.shape == out.variance.shape == (1,)


def test_to_gaussian_on_plain_attribute_model_and_errors():
    plain = GPT2ForSequenceClassification(_config(num_labels=5))
    with pytest.raises(ValueError, match="attributes"):
        to_gaussian(plain)
    model = to_gaussian(plain, attributes=ATTRIBUTES)
    assert model.variance_head.weight.shape == (5, 16)
    with pytest.raises(ValueError, match="distinct"):
        GaussianRewardModel.from_config(_config(), attributes=["a", "a"])


def test_bf16_heads_stay_float32(tmp_path):
    _model().save_pretrained(tmp_path)
    model = GaussianRewardModel.from_pretrained(tmp_path, dtype=torch.bfloat16)
    assert model.score.weight.dtype == model.variance_head.weight.dtype == torch.float32
    out = model(input_ids=torch.tensor([[5, 6, 7]]))
    assert out.mean.dtype == out.variance.dtype == torch.float32 and torch.isfinite(out.variance).all()
