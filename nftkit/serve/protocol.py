"""The JSON wire format of the reward server, shared by the server and the client.

``POST /score`` takes::

    {"rewards": ["jpeg", ...],          # or "reward": "jpeg"
     "prompts": ["a cat", ...],
     "images": ["<base64 PNG or JPEG>", ...],
     "metadata": [{...}, ...]}          # optional, one object per image

and answers ``{"n": B, "results": {"jpeg": {"scores": [...], "details": [{...}, ...]}}}``.
A score that is NaN or infinite travels as ``null``. Every error answer is
``{"error": "<one line>"}`` with a 4xx or 5xx status. Only PNG and JPEG bytes are decoded, by
Pillow, with a pixel limit checked before decoding; nothing is ever unpickled.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import math
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image, UnidentifiedImageError

from nftkit.images import ensure_rgb

ALLOWED_FORMATS = ("PNG", "JPEG")
REQUEST_KEYS = ("reward", "rewards", "prompts", "images", "metadata")
DEFAULT_MAX_BATCH = 64
DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_IMAGE_PIXELS = 4096 * 4096
DEFAULT_MAX_REQUEST_PIXELS = 4 * DEFAULT_MAX_IMAGE_PIXELS
DEFAULT_BODY_TIMEOUT_S = 30.0


class RequestError(Exception):
    """A request the server refuses; ``status`` is the HTTP status of the answer."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Limits:
    """What one request may carry: images, body bytes, pixels per image and per request, and
    how long its body may take to arrive (a slow upload is cut off with 408)."""

    max_batch: int = DEFAULT_MAX_BATCH
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS
    max_request_pixels: int = DEFAULT_MAX_REQUEST_PIXELS
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S


@dataclass
class ScoreRequest:
    """A validated ``POST /score`` body with its images decoded to RGB PIL images."""

    rewards: list[str]
    prompts: list[str]
    images: list[Image.Image]
    metadata: list[dict[str, Any]] | None


def encode_image(image: Image.Image, image_format: str = "PNG") -> str:
    """Base64 text of ``image`` encoded as PNG (lossless, the default) or JPEG."""
    if image_format.upper() not in ALLOWED_FORMATS:
        raise ValueError(f"image_format must be PNG or JPEG, got {image_format!r}")
    buffer = io.BytesIO()
    rgb = ensure_rgb(image)
    if image_format.upper() == "PNG":
        rgb.save(buffer, format="PNG", compress_level=1)
    else:
        rgb.save(buffer, format="JPEG", quality=95)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _image_bytes(data: Any, index: int) -> bytes:
    if not isinstance(data, str):
        raise RequestError(
            400, f"images[{index}] must be a base64 string, got {type(data).__name__}"
        )
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RequestError(400, f"images[{index}] is not valid base64: {exc}") from exc


def image_pixels(raw: bytes, index: int) -> int:
    """Width x height from the image header alone (nothing decoded); RequestError(400) if none."""
    try:
        with Image.open(io.BytesIO(raw), formats=list(ALLOWED_FORMATS)) as image:
            return int(image.width) * int(image.height)
    except UnidentifiedImageError as exc:
        raise RequestError(400, f"images[{index}] is not a PNG or JPEG image") from exc
    except Image.DecompressionBombError as exc:
        raise RequestError(413, f"images[{index}] is too large to decode: {exc}") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise RequestError(400, f"images[{index}] is a corrupt image: {exc}") from exc


def decode_image(data: Any, index: int, max_pixels: int = DEFAULT_MAX_IMAGE_PIXELS) -> Image.Image:
    """Decode one base64 PNG/JPEG into an RGB image; anything else raises RequestError(400)."""
    return _decode_raw(_image_bytes(data, index), index, max_pixels)


def _decode_raw(raw: bytes, index: int, max_pixels: int) -> Image.Image:
    try:
        with Image.open(io.BytesIO(raw), formats=list(ALLOWED_FORMATS)) as image:
            pixels = image.width * image.height
            if pixels > max_pixels:
                raise RequestError(
                    413,
                    f"images[{index}] is {image.width}x{image.height} pixels; this server takes "
                    f"at most {max_pixels} pixels per image",
                )
            image.load()
            return ensure_rgb(image)
    except UnidentifiedImageError as exc:
        raise RequestError(400, f"images[{index}] is not a PNG or JPEG image") from exc
    except Image.DecompressionBombError as exc:
        raise RequestError(413, f"images[{index}] is too large to decode: {exc}") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise RequestError(400, f"images[{index}] is a corrupt image: {exc}") from exc


def _string_list(body: dict[str, Any], key: str) -> list[str]:
    value = body.get(key)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise RequestError(400, f"'{key}' must be a list of strings")
    return value


def _reward_names(body: dict[str, Any], served: Collection[str]) -> list[str]:
    if ("reward" in body) == ("rewards" in body):
        raise RequestError(400, "give exactly one of 'reward' (a name) or 'rewards' (a list)")
    names = [body["reward"]] if "reward" in body else body["rewards"]
    if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
        raise RequestError(400, "'rewards' must be a non-empty list of reward names")
    if len(set(names)) != len(names):
        raise RequestError(400, f"reward names repeat in {names}")
    for name in names:
        if name not in served:
            raise RequestError(
                404, f"reward '{name}' is not served here; served: {', '.join(sorted(served))}"
            )
    return names


def parse_score_request(body: bytes, served: Collection[str], limits: Limits) -> ScoreRequest:
    """Validate a ``POST /score`` body (cheap checks first) and decode its images."""
    try:
        parsed = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RequestError(400, f"body is not valid JSON: {exc}") from exc
    except RecursionError as exc:
        raise RequestError(400, "body is nested too deeply to parse") from exc
    if not isinstance(parsed, dict):
        raise RequestError(400, "body must be a JSON object")
    unknown = sorted(set(parsed) - set(REQUEST_KEYS))
    if unknown:
        raise RequestError(
            400, f"unknown key(s) {', '.join(unknown)}; allowed: {', '.join(REQUEST_KEYS)}"
        )
    rewards = _reward_names(parsed, served)
    images_b64 = parsed.get("images")
    if not isinstance(images_b64, list) or not images_b64:
        raise RequestError(400, "'images' must be a non-empty list of base64 PNG/JPEG strings")
    prompts = _string_list(parsed, "prompts")
    if len(prompts) != len(images_b64):
        raise RequestError(400, f"got {len(images_b64)} images but {len(prompts)} prompts")
    if len(images_b64) > limits.max_batch:
        raise RequestError(
            413,
            f"request has {len(images_b64)} images; this server takes at most "
            f"{limits.max_batch} per request",
        )
    metadata = parsed.get("metadata")
    if metadata is not None:
        if not isinstance(metadata, list) or not all(isinstance(m, dict) for m in metadata):
            raise RequestError(400, "'metadata' must be null or a list of JSON objects")
        if len(metadata) != len(images_b64):
            raise RequestError(
                400, f"got {len(images_b64)} images but {len(metadata)} metadata entries"
            )
    raws = [_image_bytes(d, i) for i, d in enumerate(images_b64)]
    sizes = [image_pixels(raw, i) for i, raw in enumerate(raws)]  # headers only: cheap
    if sum(sizes) > limits.max_request_pixels:
        raise RequestError(
            413,
            f"request has {sum(sizes)} pixels in {len(sizes)} images; this server decodes at "
            f"most {limits.max_request_pixels} pixels per request; send smaller or fewer images",
        )
    images = [_decode_raw(raw, i, limits.max_image_pixels) for i, raw in enumerate(raws)]
    return ScoreRequest(rewards=rewards, prompts=prompts, images=images, metadata=metadata)


def jsonable(value: Any) -> Any:
    """Plain JSON value of ``value``: tensors/arrays become lists, non-finite floats null."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    tolist = getattr(value, "tolist", None)  # torch tensors, numpy arrays and scalars
    if callable(tolist):
        return jsonable(tolist())
    return str(value)


def scores_to_json(scores: Sequence[float]) -> list[float | None]:
    """Scores as JSON numbers, with NaN/inf sent as null."""
    return [float(s) if math.isfinite(float(s)) else None for s in scores]


def scores_from_json(values: Any, expected: int) -> list[float]:
    """Scores from JSON (null becomes NaN, for the caller's finiteness check to report)."""
    if not isinstance(values, list) or len(values) != expected:
        got = len(values) if isinstance(values, list) else type(values).__name__
        raise ValueError(f"expected {expected} scores, got {got}")
    out = []
    for v in values:
        if v is None:
            out.append(math.nan)
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out.append(float(v))
        else:
            raise ValueError(f"score {v!r} is not a number")
    return out
