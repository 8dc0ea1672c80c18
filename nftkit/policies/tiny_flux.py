"""An offline, random-init ``FluxPipeline`` for tests and local runs.

Every component is present (CLIP-L text encoder for the pooled embedding, a T5 encoder, their
tokenizers trained offline, a FLUX transformer with double and single blocks, a 16-channel style
AutoencoderKL with FLUX's scaling/shift and the dynamic-shift Euler scheduler of FLUX.1-dev),
only tiny. ``variant="schnell"`` drops the guidance embedding and uses schnell's fixed shift 1.
``save_tiny_flux(DIR)`` writes the real diffusers layout (model_index.json + one folder per
component) that ``FluxPipeline.from_pretrained`` loads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

TINY_T5_LENGTH = 32  # tokenizer_2.model_max_length: the policy's default T5 sequence length


def build_tiny_flux(seed: int = 0, variant: str = "dev", latent_channels: int = 4) -> Any:
    """A random-init ``FluxPipeline`` (float32, CPU): 32-pixel images, 8x8 latents."""
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        FluxPipeline,
        FluxTransformer2DModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    from nftkit.policies.tiny_sd3 import train_clip_tokenizer, train_t5_tokenizer

    if variant not in ("dev", "schnell"):
        raise ValueError(f"variant must be 'dev' or 'schnell', got {variant!r}")
    torch.manual_seed(seed)
    tokenizer = train_clip_tokenizer(300)
    tokenizer_2 = train_t5_tokenizer(300)
    tokenizer_2.model_max_length = TINY_T5_LENGTH
    clip = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=16,
            intermediate_size=32,
            projection_dim=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            hidden_act="gelu",
        )
    ).eval()
    t5 = T5EncoderModel(
        T5Config(
            vocab_size=len(tokenizer_2),
            d_model=32,
            d_kv=8,
            d_ff=64,
            num_layers=1,
            num_heads=2,
            relative_attention_num_buckets=8,
            dropout_rate=0.0,
            feed_forward_proj="gated-gelu",
            pad_token_id=0,
            eos_token_id=1,
            decoder_start_token_id=0,
        )
    ).eval()
    transformer = FluxTransformer2DModel(
        patch_size=1,
        in_channels=4 * latent_channels,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=8,
        num_attention_heads=2,
        joint_attention_dim=32,
        pooled_projection_dim=16,
        guidance_embeds=variant == "dev",
        axes_dims_rope=(2, 2, 4),
    ).eval()
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        block_out_channels=(8, 8, 8),
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        layers_per_block=1,
        latent_channels=latent_channels,
        norm_num_groups=8,
        sample_size=32,
        scaling_factor=0.3611,
        shift_factor=0.1159,
        use_quant_conv=False,
        use_post_quant_conv=False,
        mid_block_add_attention=False,
    ).eval()
    if variant == "dev":  # FLUX.1-dev's scheduler_config.json
        scheduler = FlowMatchEulerDiscreteScheduler(
            num_train_timesteps=1000,
            shift=3.0,
            use_dynamic_shifting=True,
            base_shift=0.5,
            max_shift=1.15,
            base_image_seq_len=256,
            max_image_seq_len=4096,
        )
    else:  # FLUX.1-schnell's
        scheduler = FlowMatchEulerDiscreteScheduler(
            num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=False
        )
    return FluxPipeline(
        scheduler=scheduler,
        vae=vae,
        text_encoder=clip,
        tokenizer=tokenizer,
        text_encoder_2=t5,
        tokenizer_2=tokenizer_2,
        transformer=transformer,
    )


def save_tiny_flux(path: str | Path, seed: int = 0, variant: str = "dev") -> Path:
    """Build the tiny pipeline and write it in the diffusers layout (safetensors)."""
    path = Path(path)
    build_tiny_flux(seed=seed, variant=variant).save_pretrained(str(path), safe_serialization=True)
    return path
