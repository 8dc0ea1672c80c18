"""GenEval-style reward on the shapes world: exact detector + GenEval judge.

``mode="partial"`` (default, the Flow-GRPO training reward), ``"strict"`` or ``"official"``
(1.0 when the GenEval verdict is correct). Needs each sample's GenEval metadata.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image

from nftkit.errors import InputError
from nftkit.rewards.base import Reward, RewardOutput
from nftkit.shapes.judge import judge_image

MODES = ("partial", "strict", "official")


class ShapesGenevalReward(Reward):
    """GenEval judge on rendered-shape images, in [0, 1] (no weights needed)."""

    name = "shapes-geneval"
    higher_is_better = True
    score_range = (0.0, 1.0)
    version = "1"
    input_format = "pil"
    needs_metadata = True

    def __init__(self, mode: str = "partial", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if mode not in MODES:
            raise InputError(f"unknown shapes-geneval mode '{mode}'; choose one of {MODES}")
        self.mode = mode

    def score_batch(
        self, images: list[Image.Image], prompts: list[str], metadata: list[dict[str, Any]]
    ) -> RewardOutput:
        """Judge each image against its metadata."""
        scores, details = [], []
        for image, meta in zip(images, metadata, strict=True):
            verdict = judge_image(meta, np.asarray(image))
            value = {
                "partial": verdict.partial,
                "strict": verdict.strict,
                "official": float(verdict.correct),
            }[self.mode]
            scores.append(value)
            details.append({"correct": verdict.correct, "reason": verdict.reason})
        return RewardOutput(torch.tensor(scores, dtype=torch.float32), details)
