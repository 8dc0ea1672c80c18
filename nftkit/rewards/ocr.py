"""OCR reward: how well the text between the prompt's first pair of double quotes is rendered.

The metric follows Flow-GRPO's ocr.py (used by DiffusionNFT): the target is
``prompt.split('"')[1]`` (with a single double quote, the text after it; a warning says so);
recognise the text, keep strings with confidence > 0, concatenate, remove the plain space
character ' ' (only that: tabs, newlines and no-break spaces stay) and lowercase both sides;
distance 0 when the target is a substring, else the Levenshtein distance, capped at
len(target); reward = 1 - dist / len(target). An OCR engine failure scores 0. A prompt without
a double quote, or whose target is empty once spaces are removed (the reference divides by
zero there), is one clear error. The default engine is RapidOCR (PP-OCR models on onnxruntime,
shipped inside its wheel); PaddleOCR 2.9 is an optional backend (``engine="paddleocr"``).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from PIL import Image

from nftkit.errors import InputError
from nftkit.rewards.base import Reward, RewardOutput

logger = logging.getLogger(__name__)
_WARNED: set[str] = set()


def ocr_target(prompt: str) -> str:
    """The reference's target ``prompt.split('"')[1]``: the text between the first pair of
    double quotes, or after a single one (with a warning); InputError when there is none."""
    parts = prompt.split('"')
    if len(parts) < 2:
        raise InputError(
            f"OCR prompt has no quoted target text (expected text between double quotes): {prompt!r}"
        )
    target = parts[1]
    if not normalize_text(target):
        raise InputError(f"OCR prompt's quoted target text is empty: {prompt!r}")
    if len(parts) == 2 and prompt not in _WARNED:
        _WARNED.add(prompt)
        logger.warning(
            "OCR prompt has a single double quote; scoring the text after it, as Flow-GRPO "
            "does: %r",
            prompt,
        )
    return target


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insertions, deletions, substitutions all cost 1)."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, start=1):
        current = [i]
        for j, char_b in enumerate(b, start=1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b))
            )
        previous = current
    return previous[-1]


def normalize_text(text: str) -> str:
    """Remove the plain space ' ' (no other whitespace) and lowercase, as the reference."""
    return text.replace(" ", "").lower()


def ocr_score(recognized: str, target: str) -> float:
    """The reference metric for one image, from recognised text and the target."""
    rec, tgt = normalize_text(recognized), normalize_text(target)
    if not tgt:
        raise InputError("OCR target text is empty after removing spaces")
    dist = 0 if tgt in rec else levenshtein(rec, tgt)
    dist = min(dist, len(tgt))
    return 1.0 - dist / len(tgt)


class _RapidOcrEngine:
    def __init__(self) -> None:
        from rapidocr_onnxruntime import RapidOCR

        self._engine = RapidOCR()

    def __call__(self, image: np.ndarray) -> list[tuple[str, float]]:
        result, _ = self._engine(image, use_cls=False)
        return [(str(text), float(conf)) for _, text, conf in (result or [])]


class _PaddleOcrEngine:
    def __init__(self) -> None:
        try:
            from paddleocr import PaddleOCR
        except ImportError as exc:
            raise InputError(
                "engine 'paddleocr' needs the optional backend: pip install 'nftkit[paddleocr]'"
            ) from exc
        self._engine = PaddleOCR(use_angle_cls=False, lang="en", show_log=False)

    def __call__(self, image: np.ndarray) -> list[tuple[str, float]]:
        result = self._engine.ocr(image, cls=False)
        lines = result[0] if result and result[0] else []
        return [(str(text), float(conf)) for _, (text, conf) in lines]


ENGINES = {"rapidocr": _RapidOcrEngine, "paddleocr": _PaddleOcrEngine}


class OcrReward(Reward):
    """Text-rendering accuracy of the quoted prompt text, in [0, 1]."""

    name = "ocr"
    higher_is_better = True
    score_range = (0.0, 1.0)
    version = "1"
    input_format = "pil"
    alpha = "white-floor"  # PaddleOCR 2.9.1's alpha_to_color on 4-channel arrays

    def __init__(self, engine: str = "rapidocr", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if engine not in ENGINES:
            raise InputError(f"unknown OCR engine '{engine}'; choose one of {sorted(ENGINES)}")
        self.engine_name = engine
        self._engine: Any = None

    def load(self) -> None:
        """Build the OCR engine (its models ship inside the wheel: no download)."""
        self._engine = ENGINES[self.engine_name]()

    def score_batch(
        self, images: list[Image.Image], prompts: list[str], metadata: list[dict[str, Any]]
    ) -> RewardOutput:
        """Recognise text in each image and score it against the quoted target."""
        targets = [ocr_target(p) for p in prompts]
        scores, details = [], []
        for image, target in zip(images, targets, strict=True):
            try:
                lines = self._engine(np.asarray(image))
                recognized = "".join(text for text, conf in lines if conf > 0)
                score = ocr_score(recognized, target)
            except InputError:
                raise
            except Exception as exc:  # the reference scores any engine failure as 0
                logger.warning("OCR engine failed on one image: %s", exc)
                recognized, score = "", 0.0
            scores.append(score)
            details.append({"target": target, "recognized": recognized})
        return RewardOutput(torch.tensor(scores, dtype=torch.float32), details)
