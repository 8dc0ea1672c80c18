"""LAION aesthetic predictor v2: a linear MLP on the L2-normalized CLIP ViT-L/14 image embedding.

Weights: CLIP ``openai/clip-vit-large-patch14`` (transformers) and the head
``sac+logos+ava1-l14-linearMSE.pth`` (768-1024-128-64-16-1, no activations) from
christophschuhmann/improved-aesthetic-predictor. With ``--weights-dir``, DIR/aesthetic/ is the
CLIP folder (config, weights, processor files) with the .pth file beside them.
Score: MLP(image_embed / ||image_embed||), about 1-10 (SD3.5-M: ~5.1-6.0).
"""

from __future__ import annotations

from typing import Any

import torch
from PIL import Image

from nftkit.rewards._clip import ClipBundle, l2_normalize, load_clip
from nftkit.rewards._mlp import LinearHead, head_from_state_dict
from nftkit.rewards._sources import WeightSource, download_sources, resolve
from nftkit.rewards.base import Reward, RewardOutput

MLP_FILE = "sac+logos+ava1-l14-linearMSE.pth"
MLP_URL = (
    "https://github.com/christophschuhmann/improved-aesthetic-predictor/raw/main/"
    "sac%2Blogos%2Bava1-l14-linearMSE.pth"
)


class AestheticScore(Reward):
    """LAION aesthetic predictor v2 (CLIP ViT-L/14 + linear MLP), ~1-10."""

    name = "aesthetic"
    higher_is_better = True
    score_range = (float("-inf"), float("inf"))
    version = "1"
    input_format = "pil"
    alpha = "drop"  # DiffusionNFT's scorer: transformers 4.40 CLIPProcessor, convert("RGB")

    SOURCES = (
        WeightSource("openai/clip-vit-large-patch14"),
        WeightSource(
            "christophschuhmann/improved-aesthetic-predictor", files=(MLP_FILE,), url=MLP_URL
        ),
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._clip: ClipBundle | None = None
        self._head: LinearHead | None = None

    @classmethod
    def download(cls, target: Any = None) -> list[Any]:
        """Pre-fetch CLIP and the MLP (hub cache and nftkit cache, or DIR/aesthetic/)."""
        return download_sources(cls.name, cls.SOURCES, target)

    def load(self) -> None:
        """Load CLIP ViT-L/14 and the MLP head (torch.load with weights_only=True)."""
        clip_source, head_source = (resolve(self.name, s, self.weights_dir) for s in self.SOURCES)
        self._clip = load_clip(clip_source, clip_source, self.device, self.dtype)
        path = head_source.file(MLP_FILE, "the LAION aesthetic MLP state dict")
        state = torch.load(path, map_location="cpu", weights_only=True)
        self._head = head_from_state_dict(state, "", str(path)).to(self.device)

    @torch.inference_mode()
    def score_batch(
        self, images: list[Image.Image], prompts: list[str], metadata: list[dict[str, Any]]
    ) -> RewardOutput:
        """MLP of the normalized image embedding (the prompt is not used)."""
        assert self._clip is not None and self._head is not None
        embeds = l2_normalize(self._clip.image_embeds(self._clip.pixel_values(images)))
        return RewardOutput(self._head(embeds).squeeze(-1).cpu())
