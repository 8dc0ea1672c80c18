"""The ``sana`` family: SANA text-to-image models (``SanaPipeline``), CFG-free.

Facts taken from diffusers' SanaPipeline: latents [B, C, H / f, W / f] with the deep-compression
autoencoder's factor f (32 for the released DC-AE), not packed; the transformer gets
``timestep = t * timestep_scale`` where t is the scheduler's 0-1000 timestep, which SANA's flow
DPM-Solver stores as an integer (so sampling truncates sigma * 1000: ``integer_timestep``); the
model predicts v = eps - x0 (``prediction_type="flow_prediction"``: x0 = x - sigma * v). The grid
is the scheduler's ``use_flow_sigmas`` grid with ``flow_shift``. Prompts are encoded by Gemma-2
with the pipeline's default complex-human instruction, padded to ``max_sequence_length`` with
their attention mask.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from nftkit.policies.diffusers_flow import DiffusersFlowPolicy

# LoRA targets: the attention projections (diffusers' train_dreambooth_lora_sana.py uses
# to_q/to_k/to_v by default) plus the attention output projection.
SANA_LORA_TARGETS = ["to_q", "to_k", "to_v", "to_out.0"]


class SanaPolicy(DiffusersFlowPolicy):
    """SANA (SanaPipeline): DC-AE latents, Gemma-2 prompts, integer timesteps when sampling."""

    family = "sana"
    description = "SANA 600M / 1.6B (SanaPipeline), Gemma-2 text encoder, DC-AE latents"
    pipeline_classes: ClassVar[tuple[str, ...]] = ("SanaPipeline",)
    hub_prefixes: ClassVar[tuple[str, ...]] = ("Efficient-Large-Model/Sana",)
    lora_targets: ClassVar[list[str]] = SANA_LORA_TARGETS
    default_max_sequence_length: ClassVar[int] = 300
    sample_integer_timestep = True

    def __init__(
        self, pipeline: Any, complex_human_instruction: bool = True, **kwargs: Any
    ) -> None:
        super().__init__(pipeline, **kwargs)
        default = inspect.signature(pipeline.__call__).parameters["complex_human_instruction"]
        self.instruction = list(default.default or []) if complex_human_instruction else None

    def _default_sequence_length(self) -> int:
        limit = int(getattr(self.pipeline.tokenizer, "model_max_length", 300) or 300)
        return min(self.default_max_sequence_length, limit)

    def default_resolution(self) -> int:
        """The transformer's sample size times the autoencoder factor (as the pipeline)."""
        return int(self.model.config.sample_size * self.pipeline.vae_scale_factor)

    def _pixel_multiple(self) -> int:
        return int(self.pipeline.vae_scale_factor) * int(self.model.config.patch_size)

    def _latent_shape(self, size: int) -> tuple[int, ...]:
        side = size // self.pipeline.vae_scale_factor
        return (self.model.config.in_channels, side, side)

    def _encode(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        embeds, mask, _, _ = self.pipeline.encode_prompt(
            prompts,
            do_classifier_free_guidance=False,
            device=self.text_device,
            max_sequence_length=self.max_sequence_length,
            complex_human_instruction=self.instruction,
        )
        return {"prompt_embeds": embeds, "prompt_attention_mask": mask}

    def _forward(
        self,
        module: nn.Module,
        x_t: torch.Tensor,
        sigma: torch.Tensor,
        cond: dict[str, Any],
        integer_timestep: bool = False,
    ) -> torch.Tensor:
        steps = sigma * 1000.0
        if integer_timestep:
            steps = torch.floor(steps)
        out = module(
            x_t,
            encoder_hidden_states=cond["prompt_embeds"].to(self.dtype),
            encoder_attention_mask=cond["prompt_attention_mask"],
            timestep=steps * self.model.config.timestep_scale,
            return_dict=False,
        )[0]
        channels = x_t.shape[1]
        if out.shape[1] == 2 * channels:  # a learned-sigma head: keep the velocity half
            out = out[:, :channels]
        return out

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Clean latents -> images float32 [B, 3, H, W] in [0, 1]."""
        vae = self.pipeline.vae
        images = vae.decode(
            latents.to(self.device, vae.dtype) / vae.config.scaling_factor, return_dict=False
        )[0]
        return (images.float() / 2 + 0.5).clamp(0.0, 1.0)

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] -> clean latents (scaled)."""
        vae = self.pipeline.vae
        z = vae.encode(images.to(self.device, vae.dtype) * 2 - 1, return_dict=False)[0]
        return (z * vae.config.scaling_factor).float()

    @staticmethod
    def make_tiny(folder: str | Path, seed: int = 0) -> Path:
        """Write a tiny random-init SanaPipeline in the diffusers layout."""
        from nftkit.policies.tiny_sana import save_tiny_sana

        return save_tiny_sana(folder, seed=seed)
