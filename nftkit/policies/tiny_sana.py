"""An offline, random-init ``SanaPipeline`` for tests and local runs.

Every component is present (a Gemma-2 text encoder with a Gemma BPE tokenizer trained offline on
a few sentences, a Sana linear-attention transformer, a deep-compression autoencoder
``AutoencoderDC`` and SANA's flow DPM-Solver scheduler, ``flow_shift`` 3), only tiny.
``save_tiny_sana(DIR)`` writes the real diffusers layout that ``SanaPipeline.from_pretrained``
loads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

TINY_GEMMA_LENGTH = 16  # the policy's prompt length for the tiny model (SANA uses 300)


def train_gemma_tokenizer(vocab_size: int = 300) -> Any:
    """A Gemma BPE tokenizer trained offline on the tiny-SD3 corpus (transformers class)."""
    import json

    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import GemmaTokenizer

    from nftkit.policies.tiny_sd3 import _CORPUS

    specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>"]
    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first")
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=specials, show_progress=False
    )
    bpe.train_from_iterator(_CORPUS, trainer)
    merges = json.loads(bpe.to_str())["model"]["merges"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in merges]
    return GemmaTokenizer(vocab=bpe.get_vocab(), merges=merges)


def build_tiny_sana(seed: int = 0) -> Any:
    """A random-init ``SanaPipeline`` (float32, CPU): 32-pixel images, 8x8x4 latents."""
    from diffusers import (
        AutoencoderDC,
        DPMSolverMultistepScheduler,
        SanaPipeline,
        SanaTransformer2DModel,
    )
    from transformers import Gemma2Config, Gemma2Model

    torch.manual_seed(seed)
    tokenizer = train_gemma_tokenizer()
    tokenizer.model_max_length = TINY_GEMMA_LENGTH
    text_encoder = Gemma2Model(
        Gemma2Config(
            vocab_size=len(tokenizer),
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            num_key_value_heads=1,
            head_dim=8,
            max_position_embeddings=512,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    ).eval()
    transformer = SanaTransformer2DModel(
        in_channels=4,
        out_channels=4,
        num_attention_heads=2,
        attention_head_dim=8,
        num_layers=1,
        num_cross_attention_heads=2,
        cross_attention_head_dim=8,
        cross_attention_dim=16,
        caption_channels=16,
        mlp_ratio=2.0,
        sample_size=8,
        patch_size=1,
    ).eval()
    vae = AutoencoderDC(
        in_channels=3,
        latent_channels=4,
        attention_head_dim=4,
        encoder_block_types=("ResBlock", "ResBlock", "ResBlock"),
        decoder_block_types=("ResBlock", "ResBlock", "ResBlock"),
        encoder_block_out_channels=(8, 8, 8),
        decoder_block_out_channels=(8, 8, 8),
        encoder_layers_per_block=(1, 1, 1),
        decoder_layers_per_block=(1, 1, 1),
        encoder_qkv_multiscales=((), (), ()),
        decoder_qkv_multiscales=((), (), ()),
        scaling_factor=0.41407,
    ).eval()
    scheduler = DPMSolverMultistepScheduler(  # Sana_1600M's scheduler_config.json
        num_train_timesteps=1000,
        prediction_type="flow_prediction",
        use_flow_sigmas=True,
        flow_shift=3.0,
        solver_order=2,
        algorithm_type="dpmsolver++",
        final_sigmas_type="zero",
        lower_order_final=True,
    )
    return SanaPipeline(
        tokenizer=tokenizer,
        text_encoder=text_encoder,
        vae=vae,
        transformer=transformer,
        scheduler=scheduler,
    )


def save_tiny_sana(path: str | Path, seed: int = 0) -> Path:
    """Build the tiny pipeline and write it in the diffusers layout (safetensors)."""
    path = Path(path)
    build_tiny_sana(seed=seed).save_pretrained(str(path), safe_serialization=True)
    return path
