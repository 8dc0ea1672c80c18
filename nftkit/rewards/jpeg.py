"""JPEG compressibility reward: -(size of the JPEG at quality 95 in kB) / 500."""

from __future__ import annotations

import io
from typing import Any

import torch
from PIL import Image

from nftkit.rewards.base import Reward, RewardOutput

JPEG_QUALITY = 95


def jpeg_size_kb(image: Image.Image, quality: int = JPEG_QUALITY) -> float:
    """Size in kilobytes (1 kB = 1000 bytes) of ``image`` encoded as JPEG."""
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.tell() / 1000.0


class JpegCompressibility(Reward):
    """Compressibility: smaller JPEG files score higher (needs no model weights)."""

    name = "jpeg"
    higher_is_better = True
    score_range = (float("-inf"), 0.0)
    version = "1"
    input_format = "pil"

    def score_batch(
        self, images: list[Image.Image], prompts: list[str], metadata: list[dict[str, Any]]
    ) -> RewardOutput:
        """Encode each image and score -(kB / 500)."""
        sizes = [jpeg_size_kb(im) for im in images]
        scores = torch.tensor([-s / 500.0 for s in sizes], dtype=torch.float32)
        return RewardOutput(scores, [{"jpeg_kb": s} for s in sizes])
