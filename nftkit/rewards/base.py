"""The Reward contract that every reward plugin implements.

A reward is a class with metadata on the class (``name``, ``higher_is_better``, ``score_range``,
``version``, like torchmetrics keeps metric metadata on the class) and one call:
``reward(images, prompts, metadata=None) -> RewardOutput``. Models load lazily on first call,
on the device given at construction. Subclasses implement ``load`` (optional) and
``score_batch``; the base class validates inputs, converts images to what the subclass
declares in ``input_format``, splits into batches and checks what comes back. A tensor batch
holds images of one size: images of mixed sizes are scored in same-size sub-batches and the
scores and details come back in the input order.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from PIL import Image

from nftkit.errors import InputError, InvalidScoreError
from nftkit.images import ImageBatch, batch_size_of, to_pil, to_tensor

INPUT_FORMATS = ("pil", "tensor")


@dataclass
class RewardOutput:
    """Scores (float32 [B], CPU) and per-sample details (OCR text, judge reasons, ...)."""

    scores: torch.Tensor
    details: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.scores = torch.as_tensor(self.scores, dtype=torch.float32).detach().cpu()
        if not self.details:
            self.details = [{} for _ in range(self.scores.shape[0])]


class Reward(ABC):
    """Base class of every reward model.

    Class attributes are the reward's metadata and are read without loading weights.
    """

    name: ClassVar[str] = ""
    higher_is_better: ClassVar[bool] = True
    score_range: ClassVar[tuple[float, float]] = (-math.inf, math.inf)
    version: ClassVar[str] = "1"
    description: ClassVar[str] = ""
    input_format: ClassVar[Literal["pil", "tensor"]] = "pil"
    needs_metadata: ClassVar[bool] = False
    alpha: ClassVar[str] = "white"
    """How translucent PIL inputs become RGB, as the reward's reference does (images.ALPHA_MODES)."""

    def __init__(
        self,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        batch_size: int = 16,
        weights_dir: str | Path | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.device = torch.device(device)
        self.dtype = dtype
        self.batch_size = batch_size
        self.weights_dir = weights_dir
        self._loaded = False

    # ----------------------------------------------------------------- subclass hooks
    def load(self) -> None:  # noqa: B027 - optional hook, a no-op for weight-free rewards
        """Load model weights; called once, lazily, before the first score_batch."""

    @abstractmethod
    def score_batch(
        self,
        images: list[Image.Image] | torch.Tensor,
        prompts: list[str],
        metadata: list[dict[str, Any]],
    ) -> RewardOutput:
        """Score one batch (at most ``batch_size`` images) already in ``input_format``."""

    # ----------------------------------------------------------------------- public API
    def ensure_loaded(self) -> None:
        """Load the model now if it is not loaded yet."""
        if not self._loaded:
            self.load()
            self._loaded = True

    def __call__(
        self,
        images: ImageBatch,
        prompts: Sequence[str],
        metadata: Sequence[dict[str, Any]] | None = None,
    ) -> RewardOutput:
        """Score ``images`` against ``prompts``; returns float32 scores [B] on the CPU."""
        n = batch_size_of(images)
        prompts = list(prompts)
        if len(prompts) != n:
            raise InputError(f"{self.name}: got {n} images but {len(prompts)} prompts")
        meta = [dict(m) for m in metadata] if metadata is not None else [{} for _ in range(n)]
        if len(meta) != n:
            raise InputError(f"{self.name}: got {n} images but {len(meta)} metadata entries")
        if self.needs_metadata and any(not m for m in meta):
            raise InputError(
                f"reward '{self.name}' needs per-sample metadata (e.g. a JSONL manifest with a "
                "'metadata' object per line)"
            )
        if n == 0:
            return RewardOutput(torch.zeros(0), [])
        self.ensure_loaded()
        if self.input_format == "tensor" and not isinstance(images, torch.Tensor):
            return self._score_by_size(images, prompts, meta)
        return self._score_in_batches(self.convert_images(images), prompts, meta)

    def _score_in_batches(
        self, converted: Any, prompts: list[str], meta: list[dict[str, Any]]
    ) -> RewardOutput:
        """Score converted images in chunks of ``batch_size``, checking each chunk's output."""
        scores: list[torch.Tensor] = []
        details: list[dict[str, Any]] = []
        for start in range(0, len(prompts), self.batch_size):
            stop = min(start + self.batch_size, len(prompts))
            out = self.score_batch(converted[start:stop], prompts[start:stop], meta[start:stop])
            self._check_output(out, stop - start)
            scores.append(out.scores)
            details.extend(out.details)
        return RewardOutput(torch.cat(scores), details)

    def convert_images(self, images: ImageBatch) -> Any:
        """The whole batch in the form ``score_batch`` takes (``input_format``, ``alpha``)."""
        if self.input_format == "tensor":
            return to_tensor(images, self.alpha)
        return to_pil(images, self.alpha)

    def _score_by_size(
        self, images: list[Image.Image], prompts: list[str], meta: list[dict[str, Any]]
    ) -> RewardOutput:
        """Tensor-format scoring of PIL input: one sub-batch per image size, input order kept."""
        groups: dict[tuple[int, int], list[int]] = {}
        for i, image in enumerate(images):
            groups.setdefault(image.size, []).append(i)
        if len(groups) == 1:
            return self._score_in_batches(self.convert_images(images), prompts, meta)
        scores = torch.zeros(len(prompts), dtype=torch.float32)
        details: list[dict[str, Any]] = [{} for _ in prompts]
        for indices in groups.values():
            out = self._score_in_batches(
                self.convert_images([images[i] for i in indices]),
                [prompts[i] for i in indices],
                [meta[i] for i in indices],
            )
            scores[indices] = out.scores
            for i, detail in zip(indices, out.details, strict=True):
                details[i] = detail
        return RewardOutput(scores, details)

    def info(self) -> dict[str, Any]:
        """Metadata as a JSON-friendly dict."""
        return reward_info(type(self))

    def _check_output(self, out: RewardOutput, expected: int) -> None:
        if not isinstance(out, RewardOutput):
            raise InvalidScoreError(
                f"reward '{self.name}' returned {type(out).__name__}, expected RewardOutput"
            )
        if tuple(out.scores.shape) != (expected,):
            raise InvalidScoreError(
                f"reward '{self.name}' returned scores of shape {tuple(out.scores.shape)}, "
                f"expected ({expected},)"
            )
        if len(out.details) != expected:
            raise InvalidScoreError(
                f"reward '{self.name}' returned {len(out.details)} details for {expected} images"
            )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def metadata_problems(cls: type[Reward]) -> list[str]:
    """What is wrong with a reward class's metadata (empty when it is fine); for the registry."""
    problems = []
    if not isinstance(cls.higher_is_better, bool):
        problems.append(f"higher_is_better must be True or False, got {cls.higher_is_better!r}")
    low_high = cls.score_range
    if (
        not isinstance(low_high, tuple | list)
        or len(low_high) != 2
        or not all(_is_number(v) for v in low_high)
    ):
        problems.append(f"score_range must be two numbers (low, high), got {low_high!r}")
    elif math.isnan(low_high[0]) or math.isnan(low_high[1]) or low_high[0] > low_high[1]:
        problems.append(f"score_range must have low <= high, got {tuple(low_high)!r}")
    if cls.input_format not in INPUT_FORMATS:
        problems.append(
            f"input_format must be one of {', '.join(map(repr, INPUT_FORMATS))}, "
            f"got {cls.input_format!r}"
        )
    for key in ("version", "description"):
        if not isinstance(getattr(cls, key), str):
            problems.append(f"{key} must be a string, got {getattr(cls, key)!r}")
    if not isinstance(cls.needs_metadata, bool):
        problems.append(f"needs_metadata must be True or False, got {cls.needs_metadata!r}")
    return problems


def reward_info(cls: type[Reward]) -> dict[str, Any]:
    """A reward class's metadata as a JSON-friendly dict (no weights are loaded)."""
    low, high = cls.score_range
    return {
        "name": cls.name,
        "higher_is_better": cls.higher_is_better,
        "range": [None if math.isinf(low) else low, None if math.isinf(high) else high],
        "version": cls.version,
        "description": cls.description or (cls.__doc__ or "").strip().split("\n")[0],
    }
