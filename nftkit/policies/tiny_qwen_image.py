"""An offline, random-init ``QwenImagePipeline`` for tests and local runs.

Every component is present (a Qwen2.5-VL text encoder with a tiny vision tower, a byte-level BPE
Qwen2 tokenizer trained offline with the chat special tokens, a Qwen-Image MMDiT transformer, the
Qwen-Image causal-3D autoencoder and its dynamic-shift Euler scheduler), only tiny.
``save_tiny_qwen_image(DIR)`` writes the real diffusers layout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TINY_PROMPT_LENGTH = 48  # the policy's padded prompt length for the tiny model (real: 512)


def train_qwen_tokenizer(vocab_size: int = 400) -> Any:
    """A Qwen2 byte-level BPE tokenizer trained offline (template words included)."""
    import json

    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    from nftkit.policies.tiny_sd3 import _CORPUS

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    template = (
        "system Describe the image by detailing the color, shape, size, texture, "
        "quantity, text, spatial relationships of the objects and background: user "
        "assistant"
    )
    bpe.train_from_iterator([*_CORPUS, template], trainer)
    merges = json.loads(bpe.to_str())["model"]["merges"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in merges]
    tokenizer = Qwen2Tokenizer(vocab=bpe.get_vocab(), merges=merges)
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIALS[1:]})
    tokenizer.model_max_length = TINY_PROMPT_LENGTH
    return tokenizer


def build_tiny_qwen_image(seed: int = 0) -> Any:
    """A random-init ``QwenImagePipeline`` (float32, CPU): 32-pixel images, 4x4x4 latents."""
    from diffusers import (
        AutoencoderKLQwenImage,
        FlowMatchEulerDiscreteScheduler,
        QwenImagePipeline,
        QwenImageTransformer2DModel,
    )
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(seed)
    tokenizer = train_qwen_tokenizer()
    config = Qwen2_5_VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "max_position_embeddings": 1024,
            "bos_token_id": tokenizer.eos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": [1, 1, 2],
            },
        },
        vision_config={
            "depth": 1,
            "hidden_size": 16,
            "intermediate_size": 32,
            "num_heads": 2,
            "out_hidden_size": 16,
            "fullatt_block_indexes": [0],
        },
        vocab_size=len(tokenizer),
        hidden_size=16,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    text_encoder = Qwen2_5_VLForConditionalGeneration(config).eval()
    transformer = QwenImageTransformer2DModel(
        patch_size=2,
        in_channels=16,
        out_channels=4,
        num_layers=1,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=16,
        axes_dims_rope=(2, 2, 4),
    ).eval()
    vae = AutoencoderKLQwenImage(
        base_dim=8,
        z_dim=4,
        dim_mult=[1, 2, 2],
        num_res_blocks=1,
        attn_scales=[],
        temperal_downsample=[False, True],
        latents_mean=[0.1, -0.2, 0.3, 0.0],
        latents_std=[1.5, 2.0, 1.2, 2.5],
    ).eval()
    scheduler = FlowMatchEulerDiscreteScheduler(  # Qwen-Image's scheduler_config.json
        num_train_timesteps=1000,
        shift=1.0,
        use_dynamic_shifting=True,
        base_shift=0.5,
        max_shift=0.9,
        base_image_seq_len=256,
        max_image_seq_len=8192,
        shift_terminal=0.02,
        time_shift_type="exponential",
    )
    return QwenImagePipeline(
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        transformer=transformer,
    )


def save_tiny_qwen_image(path: str | Path, seed: int = 0) -> Path:
    """Build the tiny pipeline and write it in the diffusers layout (safetensors)."""
    path = Path(path)
    build_tiny_qwen_image(seed=seed).save_pretrained(str(path), safe_serialization=True)
    return path
