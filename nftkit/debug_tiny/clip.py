"""A tiny random-init transformers CLIPModel folder with its tokenizer and image processor."""

from __future__ import annotations

from pathlib import Path

import torch

from nftkit.debug_tiny.tokenizers import CLIP_VOCAB_SIZE, tiny_clip_tokenizer

TINY_CLIP_PROJECTION = 16
"""Projection (embedding) width of the tiny CLIP."""


def write_tiny_clip(folder: Path, seed: int = 0, image_size: int = 224) -> Path:
    """Save a 2-layer, 32-wide CLIP (safetensors) + CLIP tokenizer + image processor to folder.

    The image processor is CLIP's own (shortest side 224 bicubic, center crop, OpenAI
    mean/std), so the reward's real preprocessing runs unchanged on the tiny model.
    """
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = tiny_clip_tokenizer()
    text = {
        "vocab_size": CLIP_VOCAB_SIZE,
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "max_position_embeddings": 77,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    vision = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "image_size": image_size,
        "patch_size": 32,
    }
    config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=TINY_CLIP_PROJECTION)
    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    processor = CLIPImageProcessor(
        size={"shortest_edge": image_size}, crop_size={"height": image_size, "width": image_size}
    )
    processor.save_pretrained(folder)
    return folder
