"""The ``qwen-image`` family: Qwen-Image (``QwenImagePipeline``), CFG-free.

Facts taken from diffusers' QwenImagePipeline: latents [B, C, 1, h, w] of a causal-3D VAE (one
frame; ``latent_shape`` drops the frame axis) packed into 2x2 patches like FLUX; the transformer
gets ``timestep = sigma`` (the pipeline divides the 0-1000 timestep by 1000), the image layout as
``img_shapes`` and the prompt's attention mask, and predicts v = eps - x0 (Euler:
x += (sigma_next - sigma) v). The grid is ``linspace(1, 1/N, N)`` with the dynamic shift mu
(scheduler ``base/max_image_seq_len``, ``base/max_shift``) and the scheduler's terminal
stretch. Prompts go through Qwen2.5-VL with the pipeline's chat template (its first tokens
dropped); embeddings are padded to ``max_sequence_length`` with their mask so that cached
prompts stack (the transformer masks the padding out).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from nftkit.policies.flux import PackedLatentPolicy, pack_latents, unpack_latents

# LoRA targets of flow_grpo's Qwen-Image script / diffusers' Qwen-Image LoRA training: the
# image and text stream attention projections and both MLPs
QWEN_IMAGE_LORA_TARGETS = [
    "attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0",
    "attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj", "attn.to_add_out",
    "img_mlp.net.0.proj", "img_mlp.net.2", "txt_mlp.net.0.proj", "txt_mlp.net.2",
]  # fmt: skip


class QwenImagePolicy(PackedLatentPolicy):
    """Qwen-Image (QwenImagePipeline): packed 2x2 latents, Qwen2.5-VL prompts."""

    family = "qwen-image"
    description = "Qwen-Image (QwenImagePipeline), Qwen2.5-VL text encoder, CFG-free"
    pipeline_classes: ClassVar[tuple[str, ...]] = ("QwenImagePipeline",)
    hub_prefixes: ClassVar[tuple[str, ...]] = ("Qwen/Qwen-Image",)
    lora_targets: ClassVar[list[str]] = QWEN_IMAGE_LORA_TARGETS
    default_max_sequence_length: ClassVar[int] = 512

    def _default_sequence_length(self) -> int:
        limit = int(getattr(self.pipeline.tokenizer, "model_max_length", 512) or 512)
        return min(self.default_max_sequence_length, limit)

    def _encode(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        embeds, mask = self.pipeline.encode_prompt(
            prompts, device=self.text_device, max_sequence_length=self.max_sequence_length
        )
        b, length, dim = embeds.shape
        if mask is None:
            mask = torch.ones(b, length, dtype=torch.long, device=embeds.device)
        pad = self.max_sequence_length - length
        return {
            "prompt_embeds": torch.cat([embeds, embeds.new_zeros(b, pad, dim)], dim=1),
            "prompt_embeds_mask": torch.cat([mask.long(), mask.new_zeros(b, pad).long()], dim=1),
        }

    def _forward(
        self,
        module: nn.Module,
        x_t: torch.Tensor,
        sigma: torch.Tensor,
        cond: dict[str, Any],
        integer_timestep: bool = False,
    ) -> torch.Tensor:
        # QwenImagePipeline never truncates: ``integer_timestep`` has nothing to do here
        b, _, h, w = x_t.shape
        out = module(
            hidden_states=pack_latents(x_t),
            timestep=sigma.to(self.dtype),
            guidance=None,
            encoder_hidden_states_mask=cond["prompt_embeds_mask"],
            encoder_hidden_states=cond["prompt_embeds"].to(self.dtype),
            img_shapes=[[(1, h // 2, w // 2)]] * b,
            return_dict=False,
        )[0]
        return unpack_latents(out, h, w)

    def _vae_stats(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        config = self.pipeline.vae.config
        mean = torch.tensor(config.latents_mean).view(1, config.z_dim, 1, 1, 1)
        std = torch.tensor(config.latents_std).view(1, config.z_dim, 1, 1, 1)
        return mean.to(like.device, like.dtype), std.to(like.device, like.dtype)

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Clean latents [B, C, h, w] -> images float32 [B, 3, H, W] in [0, 1]."""
        vae = self.pipeline.vae
        z = latents.to(self.device, vae.dtype)[:, :, None]
        mean, std = self._vae_stats(z)
        images = vae.decode(z * std + mean, return_dict=False)[0][:, :, 0]
        return (images.float() / 2 + 0.5).clamp(0.0, 1.0)

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] -> clean latents (posterior mode, normalised by the VAE stats)."""
        vae = self.pipeline.vae
        x = (images.to(self.device, vae.dtype) * 2 - 1)[:, :, None]
        z = vae.encode(x).latent_dist.mode()
        mean, std = self._vae_stats(z)
        return ((z - mean) / std)[:, :, 0].float()

    @staticmethod
    def make_tiny(folder: str | Path, seed: int = 0) -> Path:
        """Write a tiny random-init QwenImagePipeline in the diffusers layout."""
        from nftkit.policies.tiny_qwen_image import save_tiny_qwen_image

        return save_tiny_qwen_image(folder, seed=seed)
