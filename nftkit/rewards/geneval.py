"""GenEval (Ghosh et al. 2023) as a reward: detector + color classifier + GenEval's judge.

Weights: a Mask2Former Swin-S COCO instance-segmentation folder (hub
``facebook/mask2former-swin-small-coco-instance``) in DIR/geneval/detector/ and CLIP ViT-L/14
(``openai/clip-vit-large-patch14``) for colors in DIR/geneval/clip/. ``backend="mmdet"`` runs
GenEval's own mmdet config from DIR/geneval/mmdet/ instead of the transformers detector.
Needs each sample's GenEval metadata (include/exclude clauses, tag).
Modes (REFERENCE.md section 3): ``"partial"`` (default, the training reward: DiffusionNFT's
gen_eval.py evaluate_reward score, a mean of per-clause terms that is not clamped, so extra
objects can push it below 0, down to 1 - 16 for a count-1 clause), ``"strict"`` (exact counts
and colors, exclusions ignored) and ``"official"`` (1.0 when evaluate_images.py's verdict is
correct). strict and official lie in [0, 1].
"""

from __future__ import annotations

from typing import Any

import torch
from PIL import Image

from nftkit.errors import InputError
from nftkit.geneval_vocab import GENEVAL_CLASSES, GENEVAL_COLORS, RELATIONS
from nftkit.rewards._clip import ClipBundle, load_clip
from nftkit.rewards._geneval_color import ColorClassifier, masked_crop
from nftkit.rewards._geneval_detect import (
    DetectorBackend,
    GenevalDetection,
    Mask2FormerDetector,
    MmdetDetector,
)
from nftkit.rewards._sources import WeightSource, download_sources, resolve
from nftkit.rewards.base import Reward, RewardOutput
from nftkit.rewards.geneval_rules import judge_kept, kept_detections, score_threshold
from nftkit.weights import local_weights

MODES = ("partial", "strict", "official")
BACKENDS = ("mask2former", "mmdet")
DETECTOR_SUBDIR, CLIP_SUBDIR, MMDET_SUBDIR = "detector", "clip", "mmdet"


def validate_geneval_metadata(metadata: dict[str, Any]) -> None:
    """Raise InputError unless ``metadata`` is a GenEval line (COCO classes, GenEval colors)."""
    include = metadata.get("include")
    if not isinstance(include, list) or not include:
        raise InputError("geneval metadata needs a non-empty 'include' list of clauses")
    for where, clauses, low in (
        ("include", include, 0),
        ("exclude", metadata.get("exclude", []), 1),
    ):
        for i, clause in enumerate(clauses):
            if not isinstance(clause, dict) or clause.get("class") not in GENEVAL_CLASSES:
                raise InputError(f"geneval metadata {where}[{i}]: unknown class in {clause!r}")
            count = clause.get("count")
            if not isinstance(count, int) or isinstance(count, bool) or count < low:
                raise InputError(f"geneval metadata {where}[{i}]: bad count {count!r}")
            color = clause.get("color")
            if color is not None and color not in GENEVAL_COLORS:
                raise InputError(f"geneval metadata {where}[{i}]: unknown color {color!r}")
            position = clause.get("position")
            if position is not None and (
                len(position) != 2
                or position[0] not in RELATIONS
                or not isinstance(position[1], int)
                or not 0 <= position[1] < len(include)
                or position[1] == i
            ):
                raise InputError(f"geneval metadata {where}[{i}]: bad position {position!r}")


class GenevalReward(Reward):
    """GenEval judge on real images (Mask2Former + CLIP colors); partial/strict/official, [0, 1]."""

    name = "geneval"
    higher_is_better = True
    score_range = (-15.0, 1.0)
    version = "2"
    input_format = "pil"
    needs_metadata = True
    alpha = "drop"  # GenEval: mmdet reads files as 3-channel BGR, colors use convert("RGB")

    SOURCES = (
        WeightSource("facebook/mask2former-swin-small-coco-instance", subdir=DETECTOR_SUBDIR),
        WeightSource("openai/clip-vit-large-patch14", subdir=CLIP_SUBDIR),
    )

    def __init__(self, mode: str = "partial", backend: str = "mask2former", **kwargs: Any) -> None:
        """``mode``: partial | strict | official; ``backend``: mask2former | mmdet."""
        super().__init__(**kwargs)
        if mode not in MODES:
            raise InputError(f"unknown geneval mode {mode!r}; choose one of {MODES}")
        if backend not in BACKENDS:
            raise InputError(f"unknown geneval backend {backend!r}; choose one of {BACKENDS}")
        self.mode, self.backend = mode, backend
        self._detector: DetectorBackend | None = None
        self._colors: ColorClassifier | None = None

    @classmethod
    def download(cls, target: Any = None) -> list[Any]:
        """Pre-fetch the Mask2Former detector and CLIP ViT-L/14."""
        return download_sources(cls.name, cls.SOURCES, target)

    def load(self) -> None:
        """Load the detector backend and the CLIP color classifier."""
        clip_source = resolve(self.name, self.SOURCES[1], self.weights_dir)
        if self.backend == "mmdet":
            folder = local_weights(self.name, self.weights_dir)
            if folder is None:
                raise InputError(
                    "geneval backend 'mmdet' reads DIR/geneval/mmdet/: pass --weights-dir"
                )
            self._detector = MmdetDetector(folder / MMDET_SUBDIR, GENEVAL_CLASSES, self.device)
        else:
            detector_source = resolve(self.name, self.SOURCES[0], self.weights_dir)
            self._detector = Mask2FormerDetector(
                detector_source, GENEVAL_CLASSES, self.device, self.dtype
            )
        clip: ClipBundle = load_clip(clip_source, clip_source, self.device, self.dtype)
        self._colors = ColorClassifier(clip, GENEVAL_COLORS)

    def _add_colors(
        self, image: Image.Image, metadata: dict[str, Any], kept: dict[str, list[Any]]
    ) -> None:
        """Classify the color of every kept object whose class has a clause with a "color" key
        (a null color too: the reference classifies, then fails the clause)."""
        assert self._colors is not None
        for cls in dict.fromkeys(c["class"] for c in metadata["include"] if "color" in c):
            objects: list[GenevalDetection] = kept.get(cls, [])
            crops = [masked_crop(image, d.mask, d.box) for d in objects]
            for det, color in zip(objects, self._colors.classify(crops, cls), strict=True):
                det.color = color

    def score_batch(
        self, images: list[Image.Image], prompts: list[str], metadata: list[dict[str, Any]]
    ) -> RewardOutput:
        """Detect, keep by the tag's threshold, classify colors, judge."""
        assert self._detector is not None
        for meta in metadata:
            validate_geneval_metadata(meta)
        thresholds = [score_threshold(m.get("tag")) for m in metadata]
        detections = self._detector.detect(images, thresholds)
        scores, details = [], []
        for image, meta, dets in zip(images, metadata, detections, strict=True):
            kept = kept_detections(dets, meta.get("tag"), GENEVAL_CLASSES)
            self._add_colors(image, meta, kept)
            verdict = judge_kept(meta, kept, GENEVAL_COLORS)
            by_mode = {
                "partial": verdict.partial,
                "strict": verdict.strict,
                "official": float(verdict.correct),
            }
            scores.append(by_mode[self.mode])
            details.append(
                {
                    "correct": verdict.correct,
                    "reason": verdict.reason,
                    "strict": verdict.strict,
                    "partial": verdict.partial,
                    "details": verdict.details,
                }
            )
        return RewardOutput(torch.tensor(scores, dtype=torch.float32), details)
