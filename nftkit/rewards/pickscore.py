"""PickScore (Kirstain et al. 2023): a CLIP ViT-H/14 fine-tuned on Pick-a-Pic preferences.

Weights: ``yuvalkirstain/PickScore_v1`` (transformers CLIPModel) with the processor of
``laion/CLIP-ViT-H-14-laion2B-s32B-b79K``; with ``--weights-dir`` both live in DIR/pickscore/
(a CLIPModel folder plus its processor and tokenizer files).
Score: ``logit_scale.exp() * cos(text, image)``, about 18-24 for SD3.5-M images. The references
divide by 26 for training (``training_scale=True``).
"""

from __future__ import annotations

from typing import Any

import torch
from PIL import Image

from nftkit.rewards._clip import ClipBundle, load_clip
from nftkit.rewards._sources import PROCESSOR_PATTERNS, WeightSource, download_sources, resolve
from nftkit.rewards.base import Reward, RewardOutput

PICKSCORE_TRAINING_DIVISOR = 26.0
"""Flow-GRPO / DiffusionNFT divide PickScore by 26 for training (and in multi-reward sums)."""


class PickScore(Reward):
    """PickScore human-preference score: logit_scale * cos(text, image), ~18-24."""

    name = "pickscore"
    higher_is_better = True
    score_range = (-100.0, 100.0)
    version = "1"
    input_format = "pil"
    alpha = "drop"  # the reference's transformers 4.40 processor: image.convert("RGB")

    SOURCES = (
        WeightSource("yuvalkirstain/PickScore_v1"),
        WeightSource("laion/CLIP-ViT-H-14-laion2B-s32B-b79K", patterns=PROCESSOR_PATTERNS),
    )

    def __init__(self, training_scale: bool = False, **kwargs: Any) -> None:
        """``training_scale=True`` divides the score by 26, as the references do for training."""
        super().__init__(**kwargs)
        self.training_scale = training_scale
        self._clip: ClipBundle | None = None

    @classmethod
    def download(cls, target: Any = None) -> list[Any]:
        """Pre-fetch the weights into the hub cache (or DIR/pickscore/ when ``target`` is DIR)."""
        return download_sources(cls.name, cls.SOURCES, target)

    def load(self) -> None:
        """Load the CLIP model and the processor (lazily, on the reward's device and dtype)."""
        model, processor = (resolve(self.name, s, self.weights_dir) for s in self.SOURCES)
        self._clip = load_clip(model, processor, self.device, self.dtype)

    @torch.inference_mode()
    def score_batch(
        self, images: list[Image.Image], prompts: list[str], metadata: list[dict[str, Any]]
    ) -> RewardOutput:
        """Score one batch: exp(logit_scale) * cosine of the normalized embeddings."""
        clip = self._clip
        assert clip is not None
        scale = clip.model.logit_scale.exp().float()
        scores = scale * clip.paired_cosine(images, prompts)
        if self.training_scale:
            scores = scores / PICKSCORE_TRAINING_DIVISOR
        return RewardOutput(scores.cpu())
