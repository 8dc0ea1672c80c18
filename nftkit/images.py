"""Image conversions shared by rewards, evaluators and the CLI.

Rewards receive either a float tensor [B, 3, H, W] in [0, 1] or a list of PIL images. The
conversion to 8-bit follows the reference pipelines: x * 255, round, clamp, uint8.
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


def to_pil(images: ImageBatch) -> list[Image.Image]:
    """Convert a batch to a list of RGB PIL images."""
    if isinstance(images, torch.Tensor):
        return [Image.fromarray(a) for a in tensor_to_uint8(images)]
    return [ensure_rgb(im) for im in images]


def to_tensor(images: ImageBatch) -> torch.Tensor:
    """Convert a batch to float [B, 3, H, W] in [0, 1]; PIL images must share one size."""
    if isinstance(images, torch.Tensor):
        check_tensor_images(images)
        return images.float()
    arrays = [np.asarray(ensure_rgb(im), dtype=np.uint8) for im in images]
    sizes = {a.shape for a in arrays}
    if len(sizes) > 1:
        raise InputError(f"images in one batch must share a size, got {sorted(sizes)}")
    stacked = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
    return stacked.float() / 255.0


def ensure_rgb(image: Image.Image) -> Image.Image:
    """Return an 8-bit RGB version of any PIL image (grayscale, RGBA, palette, 16-bit).

    RGBA and LA images are composited onto white, the usual convention for transparent PNGs.
    16-bit grayscale ("I;16", "I") is rescaled to 8 bits rather than clipped.
    """
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
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def load_image(path: str | Path) -> Image.Image:
    """Open an image file fully and return it as RGB; corrupt files raise InputError."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"image not found: {path}")
    try:
        with Image.open(path) as im:
            im.load()
            return ensure_rgb(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise InputError(f"cannot read image {path}: {exc}") from exc


def list_images(directory: str | Path) -> list[Path]:
    """Image files directly inside ``directory``, sorted by name."""
    directory = Path(directory)
    if not directory.is_dir():
        raise InputError(f"image directory not found: {directory}")
    return sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
