"""GenEval's judging rules applied to shapes-world detections, plus the Flow-GRPO variants.

The rules themselves live in ``nftkit.rewards.geneval_rules`` (shared with the ``geneval``
reward); this module validates shapes-world metadata and runs the exact shapes detector.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from nftkit.rewards.geneval_rules import (
    COUNTING_THRESHOLD,
    MAX_OBJECTS,
    THRESHOLD,
    Verdict,
    judge_detections,
    kept_detections,
    score_threshold,
)
from nftkit.shapes.detect import Detection, detect
from nftkit.shapes.metadata import validate_metadata
from nftkit.shapes.vocab import COLORS, SHAPES

__all__ = [
    "COUNTING_THRESHOLD",
    "MAX_OBJECTS",
    "THRESHOLD",
    "Verdict",
    "judge",
    "judge_image",
    "kept_detections",
    "score_threshold",
]


def judge(metadata: dict[str, Any], detections: Sequence[Detection]) -> Verdict:
    """Judge detections against a shapes-world GenEval metadata dict (see Verdict)."""
    validate_metadata(metadata)
    # Clean renders all score 1.0: tied detections keep the detector's order (GenEval's numpy
    # argsort order would pick the last one).
    # nftkit's clamped partial score stays the shapes world's training reward.
    return judge_detections(
        metadata, detections, tuple(COLORS), SHAPES, ties="stable", partial_rule="clamped"
    )


def judge_image(metadata: dict[str, Any], image: np.ndarray) -> Verdict:
    """Detect the shapes in a uint8 [H, W, 3] image and judge them against ``metadata``."""
    return judge(metadata, detect(image))
