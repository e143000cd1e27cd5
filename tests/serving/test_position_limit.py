"""The server's sequence limit: what the model can embed, whichever of its position table, its configured maximum
and its tokenizer is smallest."""

from types import SimpleNamespace

from transformers import GPT2Config, RobertaConfig

from trl_anchor import GaussianRewardModel
from trl_anchor.serving.scorer import model_position_limit

UNKNOWN = SimpleNamespace(model_max_length=int(1e30))  # what tokenizers report without a limit


def test_roberta_tables_reserve_the_padding_rows():
    # 66 rows with padding_idx 1: positions start at 2, so 64 tokens fit, not the configured 66.
    config = RobertaConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=32, max_position_embeddings=66, pad_token_id=1, num_labels=1)
    assert model_position_limit(GaussianRewardModel.from_config(config), UNKNOWN) == 64


def test_the_smallest_of_table_and_tokenizer_wins():
    config = GPT2Config(vocab_size=50, n_embd=16, n_layer=1, n_head=2, n_positions=40, num_labels=1, pad_token_id=0)
    model = GaussianRewardModel.from_config(config)
    assert model_position_limit(model, UNKNOWN) == 40
    assert model_position_limit(model, SimpleNamespace(model_max_length=32)) == 32
