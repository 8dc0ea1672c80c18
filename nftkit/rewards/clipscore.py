"""CLIPScore: text-image cosine similarity under OpenAI CLIP ViT-L/14.

Weights: ``openai/clip-vit-large-patch14`` (transformers); with ``--weights-dir``, a CLIPModel
folder with its processor files in DIR/clipscore/.
Score: ``cos(text, image)`` as DiffusionNFT reports it (~0.2-0.3 for SD3.5-M images);
``hessel=True`` gives Hessel et al.'s CLIP-S = 2.5 * max(score, 0).
Preprocessing (``preprocess``):
- ``"processor"`` (default for the reward): transformers' CLIP image processor on 8-bit PIL
  images (PIL bicubic resize of the shortest side to 224, center crop, OpenAI mean/std).
- ``"diffusionnft"``: DiffusionNFT's ClipScorer, the scorer behind the paper's ClipScore column
  (the DrawBench and PickScore suites' default): the float image tensor as given (8-bit images
  / 255), torchvision ``Resize(224)`` (bilinear, antialias on, shortest side; the long side
  becomes int(224 * long / short)), ``CenterCrop(224)``, CLIP normalisation; the score is the
  model's ``logits_per_image`` diagonal / 100, i.e. exp(logit_scale) / 100 * cosine (the
  cosine itself for the OpenAI checkpoint, whose exp(logit_scale) is 100).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image

from nftkit.errors import InputError
from nftkit.images import ImageBatch, check_tensor_images, ensure_rgb
from nftkit.rewards._clip import ClipBundle, l2_normalize, load_clip
from nftkit.rewards._sources import WeightSource, download_sources, resolve
from nftkit.rewards.base import Reward, RewardOutput

HESSEL_WEIGHT = 2.5
"""w in Hessel et al.'s CLIP-S = w * max(cos, 0)."""
PREPROCESS = ("processor", "diffusionnft")
"""CLIPScore preprocessing paths (see the module docstring)."""
LOGIT_DIVISOR = 100.0
"""DiffusionNFT's ClipScorer returns logits_per_image / 100."""


def _size(value: Any) -> int | tuple[int, int]:
    """A processor size entry as torchvision takes it: an int (shortest side) or (h, w)."""
    if isinstance(value, int):
        return value
    if "height" in value and "width" in value:
        return (int(value["height"]), int(value["width"]))
    if "shortest_edge" in value:
        return int(value["shortest_edge"])
    raise InputError(f"cannot read the CLIP processor size {value!r}")


def diffusionnft_pixels(images: list[torch.Tensor], processor: Any) -> torch.Tensor:
    """DiffusionNFT ClipScorer's transform of float [3, H, W] images in [0, 1] -> [B, 3, h, w].

    Resize (bilinear, antialias) and center crop to the processor's sizes, then its mean/std.
    """
    import torchvision.transforms.functional as TF
    from torchvision.transforms import InterpolationMode

    config = processor.to_dict()
    out = []
    for x in images:
        x = x.float()[None]
        if config.get("do_resize"):
            size = _size(config["size"])
            x = TF.resize(
                x,
                [size] if isinstance(size, int) else list(size),
                interpolation=InterpolationMode.BILINEAR,
                antialias=True,
            )
        if config.get("do_center_crop"):
            x = TF.center_crop(x, list(_size(config["crop_size"])))  # type: ignore[arg-type]
        if config.get("do_normalize"):
            x = TF.normalize(x, mean=list(processor.image_mean), std=list(processor.image_std))
        out.append(x[0])
    return torch.stack(out)


class ClipScore(Reward):
    """CLIP ViT-L/14 cosine(text, image) (~0.2-0.3); Hessel's 2.5 * max(cos, 0) as an option."""

    name = "clipscore"
    higher_is_better = True
    score_range = (-1.0, 2.5)
    version = "1"
    input_format = "pil"
    alpha = "drop"  # transformers 4.40's processor (DiffusionNFT's pin): image.convert("RGB")

    SOURCES = (WeightSource("openai/clip-vit-large-patch14"),)

    def __init__(self, hessel: bool = False, preprocess: str = "processor", **kwargs: Any) -> None:
        """``hessel=True`` reports 2.5 * max(score, 0); ``preprocess``: processor | diffusionnft."""
        super().__init__(**kwargs)
        if preprocess not in PREPROCESS:
            raise InputError(
                f"unknown clipscore preprocess {preprocess!r}; choose one of {PREPROCESS}"
            )
        self.hessel = hessel
        self.preprocess = preprocess
        self._clip: ClipBundle | None = None

    @classmethod
    def download(cls, target: Any = None) -> list[Any]:
        """Pre-fetch the weights into the hub cache (or DIR/clipscore/ when ``target`` is DIR)."""
        return download_sources(cls.name, cls.SOURCES, target)

    def load(self) -> None:
        """Load CLIP ViT-L/14 and its processor."""
        source = resolve(self.name, self.SOURCES[0], self.weights_dir)
        self._clip = load_clip(source, source, self.device, self.dtype)

    def convert_images(self, images: ImageBatch) -> Any:
        """PIL images for the processor path; float [3, H, W] tensors for DiffusionNFT's (a
        tensor batch is used as given, 8-bit images are divided by 255; sizes may differ)."""
        if self.preprocess == "processor":
            return super().convert_images(images)
        if isinstance(images, torch.Tensor):
            check_tensor_images(images)
            return list(images.detach().float().cpu())
        arrays = [np.asarray(ensure_rgb(im, self.alpha), dtype=np.uint8) for im in images]
        return [torch.from_numpy(a.copy()).permute(2, 0, 1).float() / 255.0 for a in arrays]

    @torch.inference_mode()
    def score_batch(
        self, images: list[Image.Image], prompts: list[str], metadata: list[dict[str, Any]]
    ) -> RewardOutput:
        """Cosine of the normalized projected embeddings (or Hessel's rescaled form)."""
        clip = self._clip
        assert clip is not None
        if self.preprocess == "processor":
            scores = clip.paired_cosine(images, prompts)
        else:
            pixels = diffusionnft_pixels(list(images), clip.image_processor)  # type: ignore[arg-type]
            pixels = pixels.to(device=clip.device, dtype=clip.dtype)
            image = l2_normalize(clip.image_embeds(pixels))
            text = l2_normalize(clip.text_embeds(clip.text_inputs(prompts)))
            scale = clip.model.logit_scale.exp().float() / LOGIT_DIVISOR
            scores = scale * (image * text).sum(dim=-1)
        if self.hessel:
            scores = HESSEL_WEIGHT * scores.clamp(min=0.0)
        return RewardOutput(scores.cpu())
