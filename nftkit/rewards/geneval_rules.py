"""GenEval's judging rules on detections (REFERENCE.md section 3), shared by every detector.

Works on any detection with ``cls``, ``box`` (x1, y1, x2, y2, y down), ``score`` and ``color``
(a color name, or None when no color was asked for). ``judge_detections`` gives the official
verdict (with its GenEval-style reason) and the two Flow-GRPO training variants: ``strict``
(exact counts and colors on every include clause, exclusions ignored) and ``partial`` (mean of
per-clause terms). The shapes world and the ``geneval`` reward both judge through this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

THRESHOLD = 0.3
"""Detections must score above this to count ..."""
COUNTING_THRESHOLD = 0.9
"""... or above this when the tag is "counting"."""
MAX_OBJECTS = 16
"""At most this many detections are kept per class."""
POSITION_THRESHOLD = 0.1
"""GenEval's margin: each axis offset is reduced by 0.1 * (dim_A + dim_B) before comparing."""

Box = tuple[float, float, float, float]


class DetectionLike(Protocol):
    """What the rules read from a detection."""

    cls: str
    box: Box
    score: float
    color: str | None


Groups = dict[str, list[Any]]


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


def relation_vector(box_a: Box, box_b: Box) -> tuple[float, float] | None:
    """GenEval's normalized, margin-reduced offset of A's center from B's; None if too close.

    revised = max(|offset| - 0.1 * (dim_A + dim_B), 0) * sign(offset) per axis (dim is the box
    width on x, height on y); the result is revised / ||offset||.
    """
    ax1, ay1, ax2, ay2 = box_a
    bx1, by1, bx2, by2 = box_b
    offset = np.array([(ax1 + ax2 - bx1 - bx2) / 2.0, (ay1 + ay2 - by1 - by2) / 2.0])
    dims = np.array([(ax2 - ax1) + (bx2 - bx1), (ay2 - ay1) + (by2 - by1)])
    revised = np.maximum(np.abs(offset) - POSITION_THRESHOLD * dims, 0.0) * np.sign(offset)
    if np.all(np.abs(revised) < 1e-3):
        return None
    dx, dy = revised / np.linalg.norm(offset)
    return float(dx), float(dy)


def relations(box_a: Box, box_b: Box) -> set[str]:
    """Every relation that holds for A relative to reference B ("left of", "below", ...)."""
    vec = relation_vector(box_a, box_b)
    if vec is None:
        return set()
    dx, dy = vec
    found: set[str] = set()
    if dx < -0.5:
        found.add("left of")
    if dx > 0.5:
        found.add("right of")
    if dy < -0.5:
        found.add("above")
    if dy > 0.5:
        found.add("below")
    return found


def score_threshold(tag: str | None) -> float:
    """The score a detection must exceed for this task tag (0.9 for counting, else 0.3)."""
    return COUNTING_THRESHOLD if tag == "counting" else THRESHOLD


def kept_detections(detections: Sequence[Any], tag: str | None) -> Groups:
    """Per class: detections sorted by score, above the tag's threshold, at most 16."""
    threshold = score_threshold(tag)
    groups: Groups = {}
    for det in sorted(detections, key=lambda d: -d.score):
        group = groups.setdefault(det.cls, [])
        if det.score > threshold and len(group) < MAX_OBJECTS:
            group.append(det)
    return {cls: group for cls, group in groups.items() if group}


def judge_kept(metadata: dict[str, Any], kept: Groups, color_names: Sequence[str]) -> Verdict:
    """Judge already-kept detections (see ``kept_detections``) against GenEval metadata.

    ``color_names`` orders the other colors listed in a color failure's reason.
    """
    include = metadata["include"]
    correct, reasons = _official(metadata, kept, color_names)
    details = {
        cls: [[*(float(v) for v in d.box), float(d.score)] for d in group]
        for cls, group in kept.items()
    }
    return Verdict(
        correct=correct,
        reason="\n".join(reasons),
        strict=_strict(include, kept),
        partial=_partial(include, kept),
        details=details,
    )


def judge_detections(
    metadata: dict[str, Any], detections: Sequence[Any], color_names: Sequence[str]
) -> Verdict:
    """Keep detections by the tag's threshold, then judge them (see ``judge_kept``)."""
    return judge_kept(metadata, kept_detections(detections, metadata.get("tag")), color_names)


def _official(
    metadata: dict[str, Any], kept: Groups, color_names: Sequence[str]
) -> tuple[bool, list[str]]:
    include = metadata["include"]
    reasons: list[str] = []
    matched: list[list[Any] | None] = []
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
                    f"{colors.count(c)} {c}" for c in color_names if c != color and c in colors
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
