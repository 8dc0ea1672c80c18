"""Stable Diffusion 3 / 3.5 behind the Policy contract (diffusers + peft).

The policy's ``model`` is the pipeline's ``SD3Transformer2DModel``; LoRA adapters go on its
joint-attention projections (REFERENCE.md section 1) through ``nftkit.train.lora``, the same
code the shapes policy uses. Conventions: t in [0, 1] is the flow-matching sigma (t = 1 is
noise), x_t = (1 - t) x0 + t eps, and the transformer, called with ``timestep = 1000 * t``,
predicts v = eps - x0, exactly what the diffusers scheduler steps with. Prompts are encoded once
(CLIP-L + CLIP-G + T5 with 128 T5 tokens as in DiffusionNFT, as
``StableDiffusion3Pipeline.encode_prompt``) and cached. As in the official code, the time grid is
the pipeline scheduler's own sigmas (``time_grid``) and sampling feeds the transformer the
truncated integer ``int(1000 * t)`` (``integer_timestep=True``) while training uses the float.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nftkit.policies.base import (
    Cond,
    has_lora_layers,
    policy_time_grid,
    sampling_adapter,
    velocity_context,
)
from nftkit.policies.prompt_cache import PromptEmbeddingCache
from nftkit.policies.sd3_loading import DEFAULT_SD3_MODEL, load_sd3_pipeline

SD3_LORA_TARGETS = [
    "attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0",
    "attn.add_q_proj", "attn.add_k_proj", "attn.add_v_proj", "attn.to_add_out",
]  # fmt: skip
TIMESTEP_SCALE = 1000.0
DEFAULT_T5_TOKENS = 128  # DiffusionNFT's max_sequence_length in training and eval
_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}


def parse_dtype(value: str | torch.dtype | None, default: torch.dtype) -> torch.dtype:
    """A torch dtype from a name such as "bf16" (None gives ``default``)."""
    if value is None:
        return default
    if isinstance(value, torch.dtype):
        return value
    if value not in _DTYPES:
        raise ValueError(f"unknown dtype {value!r}; choose one of {sorted(_DTYPES)}")
    return _DTYPES[value]


class SD3Policy:
    """A Stable Diffusion 3 pipeline as an NFT policy (CFG-free velocity, VAE decode)."""

    lora_targets = SD3_LORA_TARGETS
    lora_prefix = "transformer"

    def __init__(
        self,
        pipeline: Any,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        resolution: int | None = None,
        autocast_dtype: torch.dtype | None = None,
        gradient_checkpointing: bool = False,
        max_sequence_length: int = DEFAULT_T5_TOKENS,
        cache_size: int = 4096,
    ) -> None:
        self.device = torch.device(device)
        self.dtype = dtype
        self.pipeline = pipeline
        if pipeline.transformer.dtype != dtype:
            pipeline.to(dtype=dtype)
        pipeline.to(self.device)
        self.model: nn.Module = pipeline.transformer
        self.model.requires_grad_(False).eval()
        for name in ("vae", "text_encoder", "text_encoder_2", "text_encoder_3"):
            module = getattr(pipeline, name, None)
            if module is not None:
                module.requires_grad_(False).eval()
        if gradient_checkpointing:
            self.model.enable_gradient_checkpointing()
        self.autocast_dtype = autocast_dtype
        if max_sequence_length < 1:
            raise ValueError(f"max_sequence_length must be >= 1, got {max_sequence_length}")
        self.max_sequence_length = max_sequence_length
        self.cache = PromptEmbeddingCache(cache_size)
        self.forward_module: nn.Module | None = None  # e.g. a DDP wrapper around ``model``
        factor = pipeline.vae_scale_factor
        size = resolution or pipeline.default_sample_size * factor
        multiple = factor * pipeline.patch_size
        if size % multiple:
            raise ValueError(f"resolution must be a multiple of {multiple}, got {size}")
        self.resolution = size
        self.latent_shape = (self.model.config.in_channels, size // factor, size // factor)
        self._has_lora: bool | None = None

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path = DEFAULT_SD3_MODEL,
        device: str | torch.device = "cpu",
        dtype: str | torch.dtype | None = None,
        **kwargs: Any,
    ) -> SD3Policy:
        """Load from a hub id (HF cache; HF_HUB_OFFLINE respected) or a diffusers folder.

        ``dtype`` defaults to float32 on CPU and bfloat16 elsewhere.
        """
        default = torch.float32 if torch.device(device).type == "cpu" else torch.bfloat16
        torch_dtype = parse_dtype(dtype, default)
        pipeline = load_sd3_pipeline(name_or_path, torch_dtype)
        pipeline.set_progress_bar_config(disable=True)
        return cls(pipeline, device=device, dtype=torch_dtype, **kwargs)

    # ------------------------------------------------------------------ conditioning
    @torch.no_grad()
    def _encode(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        embeds, _, pooled, _ = self.pipeline.encode_prompt(
            prompt=prompts,
            prompt_2=None,
            prompt_3=None,
            device=self.device,
            do_classifier_free_guidance=False,
            max_sequence_length=self.max_sequence_length,
        )
        return {"prompt_embeds": embeds, "pooled_projections": pooled}

    def encode_prompts(self, prompts: Sequence[str]) -> Cond:
        """{"prompt_embeds": [B, L, D], "pooled_projections": [B, P]} on the device (cached)."""
        batch = self.cache.get_batch(list(prompts), self._encode)
        return {k: v.to(self.device, self.dtype) for k, v in batch.items()}

    # ------------------------------------------------------------------ time grid
    def time_grid(self, num_steps: int) -> torch.Tensor:
        """The scheduler's sigmas for ``num_steps`` steps (float64, descending, last 0).

        ``set_timesteps`` runs on a copy of the pipeline's scheduler (with the model's shift),
        as the official pipeline does before sampling.
        """
        import copy

        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        scheduler = copy.deepcopy(self.pipeline.scheduler)
        scheduler.set_timesteps(num_steps, device="cpu")
        return scheduler.sigmas.detach().to("cpu", torch.float64)

    # ------------------------------------------------------------------ velocity
    def velocity(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        cond: Cond,
        adapter: str | None = "default",
        integer_timestep: bool = False,
    ) -> torch.Tensor:
        """v = eps - x0 at (x_t, t) with adapter ``adapter`` (None: base model), float32.

        The transformer gets ``timestep = 1000 * t`` (float32); ``integer_timestep`` truncates it
        to an integer (torch.long) as the official sampling pipeline does.
        """
        assert isinstance(cond, dict)
        module = self.forward_module or self.model
        timestep = (t.to(self.device, torch.float32) * TIMESTEP_SCALE).expand(x_t.shape[0])
        if integer_timestep:
            timestep = timestep.to(torch.long)  # truncation towards zero, as torch.full(long)
        with velocity_context(self, adapter):
            out = module(
                hidden_states=x_t.to(self.device, self.dtype),
                timestep=timestep,
                encoder_hidden_states=cond["prompt_embeds"].to(self.dtype),
                pooled_projections=cond["pooled_projections"].to(self.dtype),
                return_dict=False,
            )[0]
        return out.float()

    # ------------------------------------------------------------------ latents <-> images
    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Clean latents -> images float32 [B, 3, H, W] in [0, 1]."""
        vae = self.pipeline.vae
        z = latents.to(self.device, vae.dtype) / vae.config.scaling_factor
        z = z + (vae.config.shift_factor or 0.0)
        images = vae.decode(z, return_dict=False)[0]
        return (images.float() / 2 + 0.5).clamp(0.0, 1.0)

    @torch.no_grad()
    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Images in [0, 1] -> clean latents (the VAE posterior mode, scaled and shifted)."""
        vae = self.pipeline.vae
        x = images.to(self.device, vae.dtype) * 2 - 1
        z = vae.encode(x).latent_dist.mode()
        return ((z - (vae.config.shift_factor or 0.0)) * vae.config.scaling_factor).float()

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(
        self,
        prompts: Sequence[str],
        generator: torch.Generator | None = None,
        steps: int = 40,
        solver: str | Any = "euler",
        shift: float | None = None,
        adapter: str | None = "default",
        return_latents: bool = False,
    ) -> torch.Tensor:
        """CFG-free samples: images in [0, 1] (or clean latents).

        ``solver`` is a name from ``nftkit.train.sampling.SOLVERS`` or any diffusers
        flow-matching scheduler instance. With a named solver the grid is the scheduler's
        (``time_grid``) and the transformer gets integer timesteps, as in the official pipeline;
        a ``shift`` forces nftkit's shifted linspace grid instead.
        """
        from nftkit.train.sampling import sample as ode_sample
        from nftkit.train.scheduler_sampling import scheduler_sample

        noise = torch.randn((len(prompts), *self.latent_shape), generator=generator)
        x_T = noise.to(self.device)
        cond = self.encode_prompts(prompts)

        def velocity(x: torch.Tensor, t: torch.Tensor, integer: bool = False) -> torch.Tensor:
            return self.velocity(
                x, t, cond, adapter=sampling_adapter(self, adapter), integer_timestep=integer
            )

        self._has_lora = has_lora_layers(self.model)
        if isinstance(solver, str):
            grid = policy_time_grid(self, steps, shift)
            x0 = ode_sample(lambda x, t: velocity(x, t, True), x_T, steps, solver, grid=grid)
        else:
            x0 = scheduler_sample(velocity, x_T, solver, steps)
        return x0 if return_latents else self.decode(x0)
