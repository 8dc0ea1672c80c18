"""Image conversions shared by rewards, evaluators and the CLI.

Rewards receive either a float tensor [B, 3, H, W] in [0, 1] or a list of PIL images. The
conversion to 8-bit follows the reference pipelines: x * 255, round, clamp, uint8.
Translucent images (RGBA, LA, PA, palette with transparency) are converted the way each
reward's reference package converts them (``ALPHA_MODES``): files are loaded with their alpha
channel and each reward applies its own mode.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from nftkit.errors import InputError

ImageBatch = torch.Tensor | Sequence[Image.Image]
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")

ALPHA_MODES = ("white", "drop", "white-floor", "keep")
"""How a translucent image becomes RGB. ``white``: alpha-composite onto white (PIL's
alpha_composite). ``drop``: PIL ``convert("RGB")``, the alpha is discarded (transformers 4.40's
CLIP processors, open_clip, GenEval). ``white-floor``: PaddleOCR's alpha_to_color, floor(255 *
(1 - a) + c * a) with a = A / 255. ``keep``: left translucent, for a reward whose reference
resizes before converting (ImageReward: resize, crop, then ``convert("RGB")``)."""


def batch_size_of(images: ImageBatch) -> int:
    """Number of images in a tensor batch or a list of PIL images."""
    if isinstance(images, torch.Tensor):
        return int(images.shape[0])
    return len(images)


def check_tensor_images(images: torch.Tensor) -> None:
    """Raise a clear error unless ``images`` is a float [B, 3, H, W] tensor."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise InputError(f"images must be a [B, 3, H, W] tensor, got shape {tuple(images.shape)}")
    if not images.is_floating_point():
        raise InputError(f"images must be a float tensor in [0, 1], got dtype {images.dtype}")


def tensor_to_uint8(images: torch.Tensor) -> np.ndarray:
    """Float [B, 3, H, W] in [0, 1] -> uint8 [B, H, W, 3] (x255, round, clamp)."""
    check_tensor_images(images)
    arr = (images.detach().float().cpu() * 255.0).round().clamp(0, 255).to(torch.uint8)
    return arr.permute(0, 2, 3, 1).contiguous().numpy()


def to_pil(images: ImageBatch, alpha: str = "white") -> list[Image.Image]:
    """Convert a batch to a list of RGB PIL images (translucent ones by ``alpha``)."""
    if isinstance(images, torch.Tensor):
        return [Image.fromarray(a) for a in tensor_to_uint8(images)]
    return [ensure_rgb(im, alpha) for im in images]


def to_tensor(images: ImageBatch, alpha: str = "white") -> torch.Tensor:
    """Convert a batch to float [B, 3, H, W] in [0, 1]; PIL images must share one size."""
    if isinstance(images, torch.Tensor):
        check_tensor_images(images)
        return images.float()
    alpha = "drop" if alpha == "keep" else alpha
    arrays = [np.asarray(ensure_rgb(im, alpha), dtype=np.uint8) for im in images]
    sizes = {a.shape for a in arrays}
    if len(sizes) > 1:
        raise InputError(f"images in one batch must share a size, got {sorted(sizes)}")
    stacked = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
    return stacked.float() / 255.0


def has_alpha(image: Image.Image) -> bool:
    """True for images with transparency: RGBA, LA, PA, or a palette with a transparent color."""
    return image.mode in ("RGBA", "LA", "PA") or (
        image.mode == "P" and "transparency" in image.info
    )


def ensure_rgb(image: Image.Image, alpha: str = "white") -> Image.Image:
    """Return an 8-bit RGB version of any PIL image (grayscale, RGBA, palette, 16-bit).

    Translucent images follow ``alpha`` (see ``ALPHA_MODES``; default: composite onto white,
    the usual convention for transparent PNGs; ``keep`` returns them unchanged). 16-bit
    grayscale ("I;16", "I") is rescaled to 8 bits rather than clipped.
    """
    if alpha not in ALPHA_MODES:
        raise ValueError(f"alpha must be one of {ALPHA_MODES}, got {alpha!r}")
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr8 = np.clip(np.round(arr / top * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(arr8, mode="L").convert("RGB")
    if image.mode == "F":
        arr = np.asarray(image, dtype=np.float64)
        arr8 = np.clip(np.round(arr * 255.0 if arr.max() <= 1.0 else arr), 0, 255)
        return Image.fromarray(arr8.astype(np.uint8), mode="L").convert("RGB")
    if has_alpha(image):
        if alpha == "keep":
            return image
        if alpha == "drop":
            return image.convert("RGB")
        rgba = image.convert("RGBA")
        if alpha == "white-floor":
            arr = np.asarray(rgba).astype(np.float64)
            a = arr[..., 3:] / 255
            return Image.fromarray((255 * (1 - a) + arr[..., :3] * a).astype(np.uint8), "RGB")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def load_image(path: str | Path) -> Image.Image:
    """Open an image file fully: RGB, or translucent as stored (each reward converts those as
    its reference does, see ``ALPHA_MODES``); corrupt files raise InputError."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"image not found: {path}")
    try:
        with Image.open(path) as im:
            im.load()
            return ensure_rgb(im, alpha="keep")
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"cannot read image {path}: {exc}") from exc


def list_images(directory: str | Path) -> list[Path]:
    """Image files directly inside ``directory``, sorted by name."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(f"image directory not found: {directory}")
    return sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
