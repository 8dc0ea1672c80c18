"""GenEval's judging rules applied to shapes-world detections, plus the Flow-GRPO variants.

``correct`` is the official GenEval verdict; ``strict`` (exact counts, exclusions ignored) and
``partial`` (mean of per-clause terms) are the training-reward variants of flow_grpo.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nftkit.shapes.detect import Detection, detect
from nftkit.shapes.geometry import relations
from nftkit.shapes.metadata import validate_metadata
from nftkit.shapes.vocab import COLORS

THRESHOLD = 0.3
"""Detections must score above this to count ..."""
COUNTING_THRESHOLD = 0.9
"""... or above this when the tag is "counting"."""
MAX_OBJECTS = 16
"""At most this many detections are kept per class."""

Groups = dict[str, list[Detection]]


@dataclass
class Verdict:
    """The judgement of one image against one metadata dict.

    correct: official GenEval verdict (exclusions included). strict: 1.0 when every include
    clause finds exactly ``count`` objects, all of the requested color and in the requested
    position (exclusions ignored), else 0.0. partial: mean of per-clause terms in [0, 1].
    reason: GenEval-style explanation of the failures ("" when correct). details: per class,
    the kept boxes as [x1, y1, x2, y2, score].
    """

    correct: bool
    reason: str
    strict: float
    partial: float
    details: dict[str, list[list[float]]] = field(default_factory=dict)


def score_threshold(tag: str | None) -> float:
    """The score a detection must exceed for this task tag (0.9 for counting, else 0.3)."""
    return COUNTING_THRESHOLD if tag == "counting" else THRESHOLD


def kept_detections(detections: Sequence[Detection], tag: str | None) -> Groups:
    """Per class: detections sorted by score, above the tag's threshold, at most 16."""
    threshold = score_threshold(tag)
    groups: Groups = {}
    for det in sorted(detections, key=lambda d: -d.score):
        group = groups.setdefault(det.cls, [])
        if det.score > threshold and len(group) < MAX_OBJECTS:
            group.append(det)
    return {cls: group for cls, group in groups.items() if group}


def judge(metadata: dict[str, Any], detections: Sequence[Detection]) -> Verdict:
    """Judge detections against a GenEval-style metadata dict (see Verdict)."""
    validate_metadata(metadata)
    kept = kept_detections(detections, metadata.get("tag"))
    correct, reasons = _official(metadata, kept)
    details = {
        cls: [[*(float(v) for v in d.box), float(d.score)] for d in group]
        for cls, group in kept.items()
    }
    return Verdict(
        correct=correct,
        reason="\n".join(reasons),
        strict=_strict(metadata["include"], kept),
        partial=_partial(metadata["include"], kept),
        details=details,
    )


def judge_image(metadata: dict[str, Any], image: np.ndarray) -> Verdict:
    """Detect the shapes in a uint8 [H, W, 3] image and judge them against ``metadata``."""
    return judge(metadata, detect(image))


def _official(metadata: dict[str, Any], kept: Groups) -> tuple[bool, list[str]]:
    include = metadata["include"]
    reasons: list[str] = []
    matched: list[list[Detection] | None] = []
    for clause in include:
        cls, count = clause["class"], clause["count"]
        found = kept.get(cls, [])[:count]
        if len(found) < count:
            reasons.append(f"expected {cls}>={count}, found {len(found)}")
            matched.append(None)
            continue
        color = clause.get("color")
        if color is not None:
            colors = [d.color for d in found]
            if colors.count(color) < count:
                others = ", ".join(
                    f"{colors.count(c)} {c}" for c in COLORS if c != color and c in colors
                )
                reasons.append(
                    f"expected {color} {cls}>={count}, found {colors.count(color)} {color}"
                    + (f"; and {others}" if others else "")
                )
        matched.append(found)
    for clause, found in zip(include, matched, strict=True):
        if "position" not in clause or found is None:
            continue
        relation, ref = clause["position"]
        targets = matched[ref]
        if targets is None:
            reasons.append(f"no target for {clause['class']} to be {relation}")
            continue
        for a in found:
            bad = [b for b in targets if relation not in relations(a.box, b.box)]
            if bad:
                true_rels = sorted(relations(a.box, bad[0].box)) or ["no relation"]
                reasons.append(
                    f"expected {clause['class']} {relation} target {bad[0].cls}, found "
                    f"{' and '.join(true_rels)}"
                )
                break
    for clause in metadata.get("exclude", []):
        cls, count = clause["class"], clause["count"]
        n = len(kept.get(cls, []))
        if n >= count:
            reasons.append(f"expected {cls}<{count}, found {n}")
    return not reasons, reasons


def _strict(include: list[dict[str, Any]], kept: Groups) -> float:
    for clause in include:
        found = kept.get(clause["class"], [])
        if len(found) != clause["count"]:
            return 0.0
        color = clause.get("color")
        if color is not None and sum(d.color == color for d in found) != clause["count"]:
            return 0.0
        if "position" in clause and not _position_holds(clause, include, kept):
            return 0.0
    return 1.0


def _partial(include: list[dict[str, Any]], kept: Groups) -> float:
    terms: list[float] = []
    for clause in include:
        count = clause["count"]
        found = kept.get(clause["class"], [])
        if count > 0:
            terms.append(max(0.0, 1.0 - abs(count - len(found)) / count))
            color = clause.get("color")
            if color is not None:
                n_color = sum(d.color == color for d in found)
                terms.append(max(0.0, 1.0 - abs(count - n_color) / count))
        if "position" in clause:
            terms.append(1.0 if _position_holds(clause, include, kept) else 0.0)
    return float(np.mean(terms)) if terms else 1.0


def _position_holds(clause: dict[str, Any], include: list[dict[str, Any]], kept: Groups) -> bool:
    """True when the clause's top ``count`` objects all stand in its relation to every one of
    the reference clause's top objects (False when either side found nothing)."""
    relation, ref = clause["position"]
    target_clause = include[ref]
    objects = kept.get(clause["class"], [])[: clause["count"]]
    targets = kept.get(target_clause["class"], [])[: target_clause["count"]]
    if not objects or not targets:
        return False
    return all(relation in relations(a.box, b.box) for a in objects for b in targets)
