"""HPSv2 / HPSv2.1 (Wu et al. 2023): open_clip ViT-H-14 fine-tuned on human preferences.

Weights: open_clip ``ViT-H-14`` with the HPS state dict (key ``state_dict``) from the hub repo
``xswu/HPSv2``: ``HPS_v2.1_compressed.pt`` (v2.1, default) or ``HPS_v2_compressed.pt`` (v2.0).
With ``--weights-dir`` the .pt file lives in DIR/hpsv2/; an ``open_clip_config.json`` beside it
(open_clip's hub format, ``{"model_cfg": ...}``) replaces the ViT-H-14 architecture.
Preprocessing (the HPS validation transform): resize the LONGEST side to 224 (bicubic), pad to a
square with black (left/top get the floor half), OpenAI mean/std.
Score: cosine(image, text), ~0.2-0.35 (benchmarks print x100); v2.0 and v2.1 are not comparable.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from nftkit.errors import InputError, MissingWeightsError
from nftkit.rewards._clip import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from nftkit.rewards._sources import WeightSource, download_sources, resolve
from nftkit.rewards.base import Reward, RewardOutput

HPS_FILES = {"v2.1": "HPS_v2.1_compressed.pt", "v2.0": "HPS_v2_compressed.pt"}
HPS_REPO = "xswu/HPSv2"
OPEN_CLIP_ARCH = "ViT-H-14"
CONFIG_FILE = "open_clip_config.json"


def resize_longest_and_pad(image: Image.Image, size: int, fill: int = 0) -> Image.Image:
    """HPS's ResizeMaxSize: scale so the longest side is ``size`` (bicubic), pad to a square.

    New sides are round(side * size / longest); padding puts floor(pad / 2) on the left/top.
    Unlike the reference, an image whose longest side already equals ``size`` is still padded
    (the reference leaves it non-square, which the ViT cannot take).
    """
    width, height = image.size
    scale = size / float(max(width, height))
    new_w, new_h = round(width * scale), round(height * scale)
    if (new_w, new_h) != (width, height):
        image = image.resize((new_w, new_h), Image.Resampling.BICUBIC)
    if (new_w, new_h) == (size, size):
        return image
    canvas = Image.new(image.mode, (size, size), (fill,) * len(image.getbands()))
    canvas.paste(image, ((size - new_w) // 2, (size - new_h) // 2))
    return canvas


def hps_pixels(images: list[Image.Image], size: int) -> torch.Tensor:
    """Resize-longest + pad, to float [0, 1], normalized with the OpenAI mean/std: [B, 3, s, s]."""
    import numpy as np

    arrays = [np.asarray(resize_longest_and_pad(im.convert("RGB"), size)) for im in images]
    x = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(OPENAI_CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(OPENAI_CLIP_STD).view(1, 3, 1, 1)
    return (x - mean) / std


@contextlib.contextmanager
def _quiet_root_warnings() -> Iterator[None]:
    """open_clip warns on the root logger that a model is random before we load the HPS weights."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(previous)


class HpsV2(Reward):
    """HPSv2.1 human-preference score (cosine under the HPS-tuned open_clip ViT-H-14), ~0.2-0.35."""

    name = "hpsv2"
    higher_is_better = True
    score_range = (-1.0, 1.0)
    version = "2.1"
    input_format = "pil"
    # hpsv2's own transform keeps RGBA as a 4th channel (its 3-channel ViT then fails); every
    # other mode is convert("RGB")-ed, which is what nftkit does for RGBA too.
    alpha = "drop"

    def __init__(self, hps_version: str = "v2.1", **kwargs: Any) -> None:
        """``hps_version``: "v2.1" (default, HPS_v2.1_compressed.pt) or "v2.0"."""
        super().__init__(**kwargs)
        if hps_version not in HPS_FILES:
            raise InputError(
                f"unknown HPS version {hps_version!r}; choose one of {list(HPS_FILES)}"
            )
        self.hps_version = hps_version
        self._model: Any = None
        self._tokenizer: Any = None
        self._image_size = 224

    @staticmethod
    def source(hps_version: str = "v2.1") -> WeightSource:
        """The hub file of one HPS version."""
        return WeightSource(HPS_REPO, files=(HPS_FILES[hps_version],))

    @classmethod
    def download(cls, target: Any = None, hps_version: str = "v2.1") -> list[Any]:
        """Pre-fetch the HPS state dict of ``hps_version`` (the ViT-H-14 tokenizer ships with
        open_clip, and the architecture is built from open_clip's config: nothing else to get)."""
        return download_sources(cls.name, [cls.source(hps_version)], target)

    def load(self) -> None:
        """Build the open_clip architecture, load the HPS state dict, get the tokenizer."""
        import open_clip

        resolved = resolve(self.name, self.source(self.hps_version), self.weights_dir)
        filename = HPS_FILES[self.hps_version]
        path = resolved.file(filename, f"the HPS {self.hps_version} checkpoint with a 'state_dict'")
        arch = OPEN_CLIP_ARCH
        if resolved.is_local and (Path(resolved.location) / CONFIG_FILE).is_file():
            arch = f"local-dir:{resolved.location}"
        with _quiet_root_warnings():
            model = open_clip.create_model(arch, pretrained=None, load_weights=False)
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
        state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
        if not isinstance(state, dict):
            raise MissingWeightsError(f"{path} does not hold an HPS state dict")
        try:
            model.load_state_dict(state, strict=True)
        except RuntimeError as exc:
            raise MissingWeightsError(
                f"{path} does not match the open_clip architecture {arch}: "
                f"{str(exc).splitlines()[0]}"
            ) from exc
        self._model = model.to(device=self.device, dtype=self.dtype).eval()
        self._tokenizer = open_clip.get_tokenizer(arch)
        size = model.visual.image_size
        self._image_size = int(size[0] if isinstance(size, tuple | list) else size)

    @torch.inference_mode()
    def score_batch(
        self, images: list[Image.Image], prompts: list[str], metadata: list[dict[str, Any]]
    ) -> RewardOutput:
        """Cosine of the normalized image and text features."""
        pixels = hps_pixels(images, self._image_size).to(self.device, self.dtype)
        tokens = self._tokenizer(prompts).to(self.device)
        image = self._model.encode_image(pixels, normalize=True).float()
        text = self._model.encode_text(tokens, normalize=True).float()
        return RewardOutput((image * text).sum(dim=-1).cpu())
