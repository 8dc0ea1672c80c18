"""Shared base of the diffusers flow-matching families (FLUX, Qwen-Image, SANA, ...).

Conventions (the trainers'): t in [0, 1] is the flow-matching sigma (t = 1 is noise),
x_t = (1 - t) x0 + t eps and ``velocity`` returns v = eps - x0 in float32, on latents of
``latent_shape`` = the VAE's unpacked [C, h, w] (families that pack latents into token
sequences pack inside ``velocity``). The time grid is the family scheduler's own
``set_timesteps`` sigmas (with its shift). A subclass supplies the pipeline class, the prompt
encoder (``_encode``), the transformer call (``_forward``), the scheduler arguments
(``_grid_kwargs``) and the VAE scaling (``decode`` / ``encode_images``).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from nftkit.policies.base import Cond, has_lora_layers, sampling_adapter, velocity_context
from nftkit.policies.diffusers_loading import load_pipeline
from nftkit.policies.prompt_cache import PromptEmbeddingCache
from nftkit.policies.sd3 import parse_dtype

to_dtype = parse_dtype  # "bf16" -> torch.bfloat16 (the SD3 policy's parser)
TEXT_ENCODERS = ("text_encoder", "text_encoder_2", "text_encoder_3")


class DiffusersFlowPolicy:
    """A diffusers flow-matching text-to-image pipeline as an NFT policy (CFG-free)."""

    family: ClassVar[str] = ""
    description: ClassVar[str] = ""
    pipeline_classes: ClassVar[tuple[str, ...]] = ()
    hub_prefixes: ClassVar[tuple[str, ...]] = ()
    lora_targets: ClassVar[list[str]] = []
    lora_prefix = "transformer"
    default_max_sequence_length: ClassVar[int] = 512
    sample_integer_timestep: ClassVar[bool] = False  # the official sampler truncates timesteps

    def __init__(
        self,
        pipeline: Any,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        resolution: int | None = None,
        autocast_dtype: torch.dtype | None = None,
        gradient_checkpointing: bool = False,
        max_sequence_length: int | None = None,
        cache_size: int = 4096,
        text_encoder_device: str | torch.device | None = None,
        vae_slicing: bool = True,
    ) -> None:
        self.device = torch.device(device)
        self.dtype = dtype
        self.pipeline = pipeline
        if pipeline.transformer.dtype != dtype:
            pipeline.to(dtype=dtype)
        pipeline.to(self.device)
        # text encoders may stay elsewhere (CPU) to save accelerator memory while training
        self.text_device = torch.device(text_encoder_device or self.device)
        for name in TEXT_ENCODERS:
            module = getattr(pipeline, name, None)
            if module is not None:
                module.to(self.text_device).requires_grad_(False).eval()
        self.model: nn.Module = pipeline.transformer
        self.model.requires_grad_(False).eval()
        pipeline.vae.requires_grad_(False).eval()
        if vae_slicing and hasattr(pipeline.vae, "enable_slicing"):
            pipeline.vae.enable_slicing()
        if gradient_checkpointing:
            self.model.enable_gradient_checkpointing()
        self.autocast_dtype = autocast_dtype
        self.max_sequence_length = max_sequence_length or self._default_sequence_length()
        self.cache = PromptEmbeddingCache(cache_size)
        self.forward_module: nn.Module | None = None  # e.g. a DDP wrapper around ``model``
        self.resolution = self._check_resolution(resolution or self.default_resolution())
        self.latent_shape: tuple[int, ...] = self._latent_shape(self.resolution)
        self._has_lora: bool | None = None

    @classmethod
    def pipeline_type(cls) -> Any:
        """The diffusers pipeline class this family loads (first of ``pipeline_classes``)."""
        import diffusers

        return getattr(diffusers, cls.pipeline_classes[0])

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path,
        device: str | torch.device = "cpu",
        dtype: str | torch.dtype | None = None,
        **kwargs: Any,
    ) -> DiffusersFlowPolicy:
        """Load from a hub id (HF cache first) or a diffusers folder; bf16 off CPU by default."""
        default = torch.float32 if torch.device(device).type == "cpu" else torch.bfloat16
        torch_dtype = to_dtype(dtype, default)
        pipeline = load_pipeline(
            cls.pipeline_type(), name_or_path, torch_dtype, cls.family, cls.pipeline_classes
        )
        pipeline.set_progress_bar_config(disable=True)
        return cls(pipeline, device=device, dtype=torch_dtype, **kwargs)

    # ------------------------------------------------------------------ family hooks
    def _default_sequence_length(self) -> int:
        return self.default_max_sequence_length

    def default_resolution(self) -> int:
        """The pipeline's default image size in pixels."""
        return int(self.pipeline.default_sample_size * self.pipeline.vae_scale_factor)

    def _pixel_multiple(self) -> int:
        return int(self.pipeline.vae_scale_factor) * 2

    def _check_resolution(self, size: int) -> int:
        multiple = self._pixel_multiple()
        if size % multiple:
            raise ValueError(f"resolution must be a multiple of {multiple}, got {size}")
        return size

    def _latent_shape(self, size: int) -> tuple[int, ...]:
        raise NotImplementedError

    def _encode(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def _forward(
        self,
        module: nn.Module,
        x_t: torch.Tensor,
        sigma: torch.Tensor,
        cond: dict[str, Any],
        integer_timestep: bool = False,
    ) -> torch.Tensor:
        raise NotImplementedError

    def _grid_kwargs(self, num_steps: int) -> dict[str, Any]:
        """Keyword arguments of ``scheduler.set_timesteps`` as the family pipeline passes them."""
        return {"num_inference_steps": num_steps}

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Clean latents -> images float32 [B, 3, H, W] in [0, 1]."""
        raise NotImplementedError

    # ------------------------------------------------------------------ time grid
    def time_grid(self, num_steps: int) -> torch.Tensor:
        """float64 sigmas from 1 towards 0, length num_steps + 1 (the scheduler's own grid)."""
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        scheduler = copy.deepcopy(self.pipeline.scheduler)
        scheduler.set_timesteps(device="cpu", **self._grid_kwargs(num_steps))
        sigmas = torch.as_tensor(scheduler.sigmas).to(torch.float64)
        if not bool(torch.isfinite(sigmas).all()):
            raise ValueError(
                f"{type(scheduler).__name__} has no {num_steps}-step grid for "
                f"{self.family}; use more steps"
            )
        if sigmas.numel() != num_steps + 1 or float(sigmas[-1]) != 0.0:
            raise ValueError(
                f"{type(scheduler).__name__} gave an unexpected grid {sigmas.tolist()}"
            )
        return sigmas

    # ------------------------------------------------------------------ conditioning
    def encode_prompts(self, prompts: Sequence[str]) -> Cond:
        """Prompt embeddings (a dict of [B, ...] tensors) on the device, cached per prompt."""

        @torch.no_grad()
        def encode(batch: list[str]) -> dict[str, torch.Tensor]:
            return self._encode(batch)

        batch = self.cache.get_batch(list(prompts), encode)
        return {
            k: v.to(self.device, self.dtype if v.is_floating_point() else v.dtype)
            for k, v in batch.items()
        }

    def offload_text_encoders(self, device: str | torch.device = "cpu") -> None:
        """Move the text encoders to ``device`` (cached prompts need no encoder)."""
        self.text_device = torch.device(device)
        for name in TEXT_ENCODERS:
            module = getattr(self.pipeline, name, None)
            if module is not None:
                module.to(self.text_device)

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

        ``integer_timestep`` truncates the 0-1000 timestep to an integer, for families whose
        official pipeline does so when sampling.
        """
        assert isinstance(cond, dict)
        module = self.forward_module or self.model
        sigma = t.to(self.device, torch.float32).reshape(-1).expand(x_t.shape[0])
        with velocity_context(self, adapter):
            out = self._forward(
                module,
                x_t.to(self.device, self.dtype),
                sigma,
                cond,
                integer_timestep=integer_timestep,
            )
        return out.float()

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample(
        self,
        prompts: Sequence[str],
        generator: torch.Generator | None = None,
        steps: int = 28,
        solver: str = "euler",
        shift: float | None = None,
        adapter: str | None = "default",
        return_latents: bool = False,
    ) -> torch.Tensor:
        """CFG-free samples along ``time_grid(steps)``: images in [0, 1] (or clean latents).

        ``shift`` replaces the scheduler grid by nftkit's SD3-shifted uniform grid.
        """
        from nftkit.train.sampling import sample as ode_sample
        from nftkit.train.sampling import timesteps

        noise = torch.randn((len(prompts), *self.latent_shape), generator=generator)
        x_T = noise.to(self.device)
        cond = self.encode_prompts(prompts)
        self._has_lora = has_lora_layers(self.model)

        def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
            return self.velocity(
                x,
                t,
                cond,
                adapter=sampling_adapter(self, adapter),
                integer_timestep=self.sample_integer_timestep,
            )

        ts = self.time_grid(steps) if shift is None else timesteps(steps, shift)
        x0 = ode_sample(velocity, x_T, steps, solver, generator=generator, grid=ts)
        return x0 if return_latents else self.decode(x0)

    # ------------------------------------------------------------------ export
    def save_merged(self, folder: str | Path, dtype: torch.dtype) -> None:
        """Save the whole pipeline (any LoRA already fused) as a diffusers folder."""
        self.pipeline.to(dtype=dtype)
        self.pipeline.save_pretrained(str(folder), safe_serialization=True)
