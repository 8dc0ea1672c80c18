"""Colorfulness (Hasler & Suesstrunk, 2003) as an nftkit reward.

M = sqrt(std_rg^2 + std_yb^2) + 0.3 * sqrt(mean_rg^2 + mean_yb^2), with rg = R - G and
yb = (R + G) / 2 - B on 0-255 values. Grey images score 0; vivid images score ~100+.
"""

from __future__ import annotations

from typing import Any

import torch

from nftkit.rewards.base import Reward, RewardOutput


class Colorfulness(Reward):
    """Hasler-Suesstrunk colorfulness of the image (ignores the prompt)."""

    name = "colorfulness"
    higher_is_better = True
    score_range = (0.0, float("inf"))
    version = "1"
    input_format = "tensor"  # the base class hands us float [B, 3, H, W] in [0, 1]

    def score_batch(
        self, images: torch.Tensor, prompts: list[str], metadata: list[dict[str, Any]]
    ) -> RewardOutput:
        """Score a batch already converted to a float tensor."""
        rgb = images.to(self.device, torch.float64) * 255.0
        r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
        rg = (r - g).flatten(1)
        yb = (0.5 * (r + g) - b).flatten(1)
        spread = torch.sqrt(rg.var(dim=1, unbiased=False) + yb.var(dim=1, unbiased=False))
        offset = torch.sqrt(rg.mean(dim=1) ** 2 + yb.mean(dim=1) ** 2)
        scores = (spread + 0.3 * offset).float().cpu()
        return RewardOutput(scores, [{} for _ in prompts])
