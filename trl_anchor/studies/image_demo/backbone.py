"""A tiny CLIP checkpoint built from a config, with a word-level tokenizer of the demo's vocabulary (no pretrained
image–text weights exist offline). Saved as an ordinary `CLIPModel` + `CLIPProcessor` directory, so the trainer
loads it by path exactly as it would load `openai/clip-vit-base-patch32`."""

from pathlib import Path

import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from tokenizers.processors import TemplateProcessing
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, PreTrainedTokenizerFast

from .scenes import CANVAS, COLOURS, SHAPES

# `<eos>` must not get id 2: CLIP's text encoder then pools at the largest token id (its legacy rule).
SPECIAL = ["<unk>", "<eos>", "<pad>", "<bos>"]
WORDS = ["a", "above", *COLOURS, *SHAPES]


def build_processor() -> CLIPProcessor:
    vocab = {token: i for i, token in enumerate([*SPECIAL, *WORDS])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    backend.post_processor = TemplateProcessing(
        single="<bos> $A <eos>", special_tokens=[("<bos>", vocab["<bos>"]), ("<eos>", vocab["<eos>"])]
    )
    # As OpenAI's CLIP tokenizer: the pad token is the EOS token.
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<bos>", eos_token="<eos>", pad_token="<eos>", unk_token="<unk>"
    )
    image_processor = CLIPImageProcessor(size={"shortest_edge": CANVAS}, crop_size={"height": CANVAS, "width": CANVAS})
    return CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)


def build_tiny_clip(directory: Path, seed: int = 0, hidden_size: int = 48) -> Path:
    """Save a randomly initialised two-layer CLIP (patches of 4 pixels on the 32-pixel canvas) and its processor."""
    processor = build_processor()
    tokenizer = processor.tokenizer
    text = {"vocab_size": len(tokenizer), "hidden_size": hidden_size, "intermediate_size": 2 * hidden_size,
            "num_hidden_layers": 2, "num_attention_heads": 4, "max_position_embeddings": 16,
            "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id}
    vision = {"hidden_size": hidden_size, "intermediate_size": 2 * hidden_size, "num_hidden_layers": 2,
              "num_attention_heads": 4, "image_size": CANVAS, "patch_size": 4}
    torch.manual_seed(seed)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=32)).save_pretrained(directory)
    processor.save_pretrained(directory)
    return directory
