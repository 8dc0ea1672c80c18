"""GenEval's color classifier: CLIP ViT-L/14 zero-shot over ten colors on masked crops.

Each object is pasted by its mask onto a #999999 background and cropped to its box; the crop
is matched against, per color, the average of three normalized text embeddings ("a photo of a
{c} {cls}", "a photo of a {c}-colored {cls}", "a photo of a {c} object"), renormalized.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from nftkit.rewards._clip import ClipBundle, l2_normalize

BACKGROUND = (153, 153, 153)
"""#999999."""
TEMPLATES = ("a photo of a {c} {cls}", "a photo of a {c}-colored {cls}", "a photo of a {c} object")


def masked_crop(image: Image.Image, mask: np.ndarray, box: Sequence[float]) -> Image.Image:
    """``image`` where ``mask`` is set, #999999 elsewhere, cropped to ``box`` (x1, y1, x2, y2)."""
    background = Image.new("RGB", image.size, BACKGROUND)
    pasted = Image.composite(
        image.convert("RGB"), background, Image.fromarray(mask.astype(np.uint8) * 255)
    )
    x1, y1, x2, y2 = (round(float(v)) for v in box)
    return pasted.crop((x1, y1, max(x2, x1 + 1), max(y2, y1 + 1)))


class ColorClassifier:
    """Zero-shot color of object crops with a CLIP model; class text embeddings are cached."""

    def __init__(self, clip: ClipBundle, colors: Sequence[str]) -> None:
        self.clip = clip
        self.colors = list(colors)
        self._text: dict[str, torch.Tensor] = {}

    def color_embeddings(self, cls: str) -> torch.Tensor:
        """[n_colors, d]: per color, the renormalized mean of the normalized template embeddings."""
        if cls not in self._text:
            prompts = [t.format(c=c, cls=cls) for c in self.colors for t in TEMPLATES]
            text = l2_normalize(self.clip.text_embeds(self.clip.text_inputs(prompts)))
            text = text.view(len(self.colors), len(TEMPLATES), -1).mean(dim=1)
            self._text[cls] = l2_normalize(text)
        return self._text[cls]

    def classify(self, crops: Sequence[Image.Image], cls: str) -> list[str]:
        """The winning color name of each crop of an object of class ``cls``."""
        if not crops:
            return []
        image = l2_normalize(self.clip.image_embeds(self.clip.pixel_values(crops)))
        best = (image @ self.color_embeddings(cls).T).argmax(dim=-1)
        return [self.colors[int(i)] for i in best]
