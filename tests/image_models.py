"""Tiny offline CLIP backbones and processors for the image reward model tests (no pretrained weights exist offline).

The tokenizer is the locally trained one of `tests/conftest.py`, wrapped CLIP-style: `<bos> text <eos>`, the text
encoder pooling at the first `<eos>`, and its pad token is the EOS token (as in OpenAI's CLIP tokenizer).
"""

from tokenizers.processors import TemplateProcessing
from transformers import CLIPConfig, CLIPImageProcessor, CLIPProcessor

from tests.conftest import build_tokenizer

IMAGE_SIZE = 32


def tiny_clip_config(tokenizer, projection_dim: int = 8) -> CLIPConfig:
    text = {"vocab_size": len(tokenizer), "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2,
            "num_attention_heads": 2, "max_position_embeddings": 32, "eos_token_id": tokenizer.eos_token_id,
            "bos_token_id": tokenizer.bos_token_id, "pad_token_id": tokenizer.pad_token_id}
    vision = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
              "image_size": IMAGE_SIZE, "patch_size": 8}
    return CLIPConfig(text_config=text, vision_config=vision, projection_dim=projection_dim)


def build_clip_processor(save_dir) -> CLIPProcessor:
    tokenizer = build_tokenizer(save_dir)
    tokenizer.backend_tokenizer.post_processor = TemplateProcessing(
        single="<bos> $A <eos>",
        special_tokens=[("<bos>", tokenizer.bos_token_id), ("<eos>", tokenizer.eos_token_id)],
    )
    tokenizer.pad_token = tokenizer.eos_token
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": IMAGE_SIZE}, crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    )
    return CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer)
