"""CLIPScore: text-image cosine similarity under OpenAI CLIP ViT-L/14.

Weights: ``openai/clip-vit-large-patch14`` (transformers); with ``--weights-dir``, a CLIPModel
folder with its processor files in DIR/clipscore/.
Score: ``cos(text, image)`` as DiffusionNFT reports it (~0.2-0.3 for SD3.5-M images);
``hessel=True`` gives Hessel et al.'s CLIP-S = 2.5 * max(cos, 0).
"""

from __future__ import annotations

from typing import Any

import torch
from PIL import Image

from nftkit.rewards._clip import ClipBundle, load_clip
from nftkit.rewards._sources import WeightSource, download_sources, resolve
from nftkit.rewards.base import Reward, RewardOutput

HESSEL_WEIGHT = 2.5
"""w in Hessel et al.'s CLIP-S = w * max(cos, 0)."""


class ClipScore(Reward):
    """CLIP ViT-L/14 cosine(text, image) (~0.2-0.3); Hessel's 2.5 * max(cos, 0) as an option."""

    name = "clipscore"
    higher_is_better = True
    score_range = (-1.0, 2.5)
    version = "1"
    input_format = "pil"

    SOURCES = (WeightSource("openai/clip-vit-large-patch14"),)

    def __init__(self, hessel: bool = False, **kwargs: Any) -> None:
        """``hessel=True`` reports 2.5 * max(cos, 0) instead of the raw cosine."""
        super().__init__(**kwargs)
        self.hessel = hessel
        self._clip: ClipBundle | None = None

    @classmethod
    def download(cls, target: Any = None) -> list[Any]:
        """Pre-fetch the weights into the hub cache (or DIR/clipscore/ when ``target`` is DIR)."""
        return download_sources(cls.name, cls.SOURCES, target)

    def load(self) -> None:
        """Load CLIP ViT-L/14 and its processor."""
        source = resolve(self.name, self.SOURCES[0], self.weights_dir)
        self._clip = load_clip(source, source, self.device, self.dtype)

    @torch.inference_mode()
    def score_batch(
        self, images: list[Image.Image], prompts: list[str], metadata: list[dict[str, Any]]
    ) -> RewardOutput:
        """Cosine of the normalized projected embeddings (or Hessel's rescaled form)."""
        clip = self._clip
        assert clip is not None
        cos = clip.paired_cosine(images, prompts)
        scores = HESSEL_WEIGHT * cos.clamp(min=0.0) if self.hessel else cos
        return RewardOutput(scores.cpu())
