"""The ``flux`` family: FLUX.1-dev and FLUX.1-schnell (``FluxPipeline``), CFG-free.

Facts taken from diffusers' FluxPipeline: latents [B, C, h, w] (h = 2 * (H // 16)) are packed
into 2x2 patches, tokens [B, (h/2)(w/2), 4C]; the transformer gets ``timestep = sigma`` (the
pipeline divides the scheduler's 0-1000 timestep by 1000 and the model rescales inside) and
predicts v = eps - x0, which the Euler scheduler steps with x += (sigma_next - sigma) v. The
scheduler grid is ``linspace(1, 1/N, N)`` shifted with the dynamic ``mu`` from the image token
count (``base/max_image_seq_len``, ``base/max_shift`` of the scheduler config). FLUX.1-dev's
guidance embedding is fed a fixed value (``guidance``, default 3.5, flow_grpo's FLUX setting)
instead of classifier-free guidance; FLUX.1-schnell has no guidance embedding.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from nftkit.policies.diffusers_flow import DiffusersFlowPolicy

# LoRA targets of diffusers' train_dreambooth_lora_flux.py / flow_grpo's FLUX script
FLUX_LORA_TARGETS = [
    "attn.to_k", "attn.to_q", "attn.to_v", "attn.to_out.0",
    "attn.add_k_proj", "attn.add_q_proj", "attn.add_v_proj", "attn.to_add_out",
    "ff.net.0.proj", "ff.net.2", "ff_context.net.0.proj", "ff_context.net.2",
]  # fmt: skip
DEFAULT_GUIDANCE = 3.5


def pack_latents(latents: torch.Tensor) -> torch.Tensor:
    """[B, C, h, w] -> [B, (h/2)(w/2), 4C]: 2x2 patches, channel-major within a patch."""
    b, c, h, w = latents.shape
    x = latents.reshape(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // 2) * (w // 2), c * 4)


def unpack_latents(tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Inverse of ``pack_latents``: [B, (h/2)(w/2), 4C] -> [B, C, h, w]."""
    b, _, d = tokens.shape
    x = tokens.reshape(b, h // 2, w // 2, d // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, d // 4, h, w)


def image_ids(h: int, w: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """FLUX position ids of the packed image tokens: [(h/2)(w/2), 3] = (0, row, column)."""
    rows = torch.arange(h // 2, device=device, dtype=dtype)
    cols = torch.arange(w // 2, device=device, dtype=dtype)
    ids = torch.zeros(h // 2, w // 2, 3, device=device, dtype=dtype)
    ids[..., 1] = rows[:, None]
    ids[..., 2] = cols[None, :]
    return ids.reshape(-1, 3)


def dynamic_shift_mu(seq_len: int, config: Any) -> float:
    """The pipelines' linear ``mu`` for an image of ``seq_len`` tokens (scheduler config keys)."""
    base_len = config.get("base_image_seq_len", 256)
    max_len = config.get("max_image_seq_len", 4096)
    base_shift = config.get("base_shift", 0.5)
    max_shift = config.get("max_shift", 1.15)
    slope = (max_shift - base_shift) / (max_len - base_len)
    return float(seq_len * slope + base_shift - slope * base_len)


class PackedLatentPolicy(DiffusersFlowPolicy):
    """Families that pack 2x2 latent patches into tokens (FLUX, Qwen-Image): their latent shape,
    token count and dynamic-shift grid (``sigmas`` 1 .. 1/N with ``mu`` from the token count)."""

    def _latent_shape(self, size: int) -> tuple[int, ...]:
        side = 2 * (size // (self.pipeline.vae_scale_factor * 2))
        return (self.model.config.in_channels // 4, side, side)

    @property
    def image_seq_len(self) -> int:
        """Number of packed image tokens at the policy's resolution."""
        _, h, w = self.latent_shape
        return (h // 2) * (w // 2)

    def _grid_kwargs(self, num_steps: int) -> dict[str, Any]:
        sigmas = np.linspace(1.0, 1.0 / num_steps, num_steps)
        mu = dynamic_shift_mu(self.image_seq_len, self.pipeline.scheduler.config)
        return {"sigmas": sigmas, "mu": mu}


class FluxPolicy(PackedLatentPolicy):
    """FLUX.1-dev / FLUX.1-schnell (FluxPipeline): packed 2x2 latents, fixed guidance value."""

    family = "flux"
    description = "FLUX.1-dev / FLUX.1-schnell (FluxPipeline), fixed guidance embedding"
    pipeline_classes: ClassVar[tuple[str, ...]] = ("FluxPipeline",)
    hub_prefixes: ClassVar[tuple[str, ...]] = ("black-forest-labs/FLUX.1",)
    lora_targets: ClassVar[list[str]] = FLUX_LORA_TARGETS
    default_max_sequence_length: ClassVar[int] = 512

    def __init__(self, pipeline: Any, guidance: float = DEFAULT_GUIDANCE, **kwargs: Any) -> None:
        super().__init__(pipeline, **kwargs)
        self.guidance = float(guidance)

    def _default_sequence_length(self) -> int:
        tokenizer = getattr(self.pipeline, "tokenizer_2", None)
        limit = int(getattr(tokenizer, "model_max_length", 512) or 512)
        return min(self.default_max_sequence_length, limit)

    def default_resolution(self) -> int:
        """The VAE's ``sample_size`` (1024 for FLUX.1), else the pipeline default."""
        size = getattr(self.pipeline.vae.config, "sample_size", None)
        return int(size) if isinstance(size, int) else super().default_resolution()

    def _encode(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        embeds, pooled, _ = self.pipeline.encode_prompt(
            prompt=prompts,
            prompt_2=None,
            device=self.text_device,
            num_images_per_prompt=1,
            max_sequence_length=self.max_sequence_length,
        )
        return {"prompt_embeds": embeds, "pooled_projections": pooled}

    def _forward(
        self,
        module: nn.Module,
        x_t: torch.Tensor,
        sigma: torch.Tensor,
        cond: dict[str, Any],
        integer_timestep: bool = False,
    ) -> torch.Tensor:
        # FluxPipeline never truncates: ``integer_timestep`` has nothing to do here
        b, _, h, w = x_t.shape
        embeds = cond["prompt_embeds"].to(self.dtype)
        guidance = None
        if self.model.config.guidance_embeds:
            guidance = torch.full((b,), self.guidance, device=self.device, dtype=torch.float32)
        out = module(
            hidden_states=pack_latents(x_t),
            timestep=sigma.to(self.dtype),
            guidance=guidance,
            pooled_projections=cond["pooled_projections"].to(self.dtype),
            encoder_hidden_states=embeds,
            txt_ids=torch.zeros(embeds.shape[1], 3, device=self.device, dtype=self.dtype),
            img_ids=image_ids(h, w, self.device, self.dtype),
            return_dict=False,
        )[0]
        return unpack_latents(out, h, w)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Clean latents [B, C, h, w] -> images float32 [B, 3, H, W] in [0, 1]."""
        vae = self.pipeline.vae
        z = latents.to(self.device, vae.dtype) / vae.config.scaling_factor
        z = z + (vae.config.shift_factor or 0.0)
        images = vae.decode(z, return_dict=False)[0]
        return (images.float() / 2 + 0.5).clamp(0.0, 1.0)

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] -> clean latents (the VAE posterior mode, shifted and scaled)."""
        vae = self.pipeline.vae
        z = vae.encode(images.to(self.device, vae.dtype) * 2 - 1).latent_dist.mode()
        return ((z - (vae.config.shift_factor or 0.0)) * vae.config.scaling_factor).float()

    @staticmethod
    def make_tiny(folder: str | Path, seed: int = 0, variant: str = "dev") -> Path:
        """Write a tiny random-init FluxPipeline (``variant`` "dev" or "schnell")."""
        from nftkit.policies.tiny_flux import save_tiny_flux

        return save_tiny_flux(folder, seed=seed, variant=variant)
