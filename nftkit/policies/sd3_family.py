"""The ``sd3`` family: Stable Diffusion 3 / 3.5 (Medium and Large share one pipeline class)."""

from __future__ import annotations

from pathlib import Path

import torch

from nftkit.policies.sd3 import SD3Policy


class SD3Family(SD3Policy):
    """Stable Diffusion 3 / 3.5 Medium / 3.5 Large (StableDiffusion3Pipeline), CFG-free."""

    family = "sd3"
    description = "Stable Diffusion 3 / 3.5 Medium / 3.5 Large (StableDiffusion3Pipeline)"
    pipeline_classes = ("StableDiffusion3Pipeline",)
    hub_prefixes = ("stabilityai/stable-diffusion-3",)

    @staticmethod
    def make_tiny(folder: str | Path, seed: int = 0) -> Path:
        """Write a tiny random-init Stable Diffusion 3 pipeline (the diffusers layout)."""
        from nftkit.policies.tiny_sd3 import TinySD3Config, save_tiny_sd3

        return save_tiny_sd3(folder, TinySD3Config(seed=seed))

    def save_merged(self, folder: str | Path, dtype: torch.dtype) -> None:
        """Save the whole pipeline (LoRA already fused) as a diffusers folder."""
        self.pipeline.to(dtype=dtype)
        self.pipeline.save_pretrained(str(folder), safe_serialization=True)

    def __repr__(self) -> str:
        return f"SD3Family(resolution={self.resolution})"
