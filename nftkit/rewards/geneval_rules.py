"""GenEval's judging rules on detections (REFERENCE.md section 3), shared by every detector.

Works on any detection with ``cls``, ``box`` (x1, y1, x2, y2, y down), ``score`` and ``color``
(a color name, or None when no color was asked for). ``judge_detections`` gives the official
verdict of djghosh13/geneval evaluate_images.py (its selection: float32 threshold, numpy 1.23
argsort order, at most 16 per class; its reason strings verbatim, in its order) and the two
Flow-GRPO training variants: ``strict`` (exact counts and colors on every include clause,
exclusions ignored) and ``partial`` (mean of per-clause terms, as DiffusionNFT's gen_eval.py). A clause with a ``"color"`` key
is color-checked even when the color is null (which then fails, as in the reference). The
shapes world and the ``geneval`` reward both judge through this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from nftkit.rewards._reference_sort import descending_order

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
    position (exclusions ignored), else 0.0. partial: mean of per-clause terms (DiffusionNFT's
    evaluate_reward score by default, which can be negative; see ``judge_kept``).
    reason: evaluate_images.py's reason, its lines joined by newlines ("" when correct).
    details: per class (detector label order), the kept boxes as [x1, y1, x2, y2, score] in
    float32 values, as the reference's ``box.tolist()``.
    """

    correct: bool
    reason: str
    strict: float
    partial: float
    details: dict[str, list[list[float]]] = field(default_factory=dict)


def relation_vector(box_a: Box, box_b: Box) -> tuple[float, float] | None:
    """GenEval's normalized, margin-reduced offset of A's center from B's; None if too close.

    revised = max(|offset| - 0.1 * (dim_A + dim_B), 0) * sign(offset) per axis (dim is the box
    width on x, height on y); the result is revised / ||offset||. Computed in float32, as the
    reference does on the detector's float32 boxes.
    """
    boxes = np.array([box_a[:4], box_b[:4]], dtype=np.float32).reshape(2, 2, 2)
    center_a, center_b = boxes.mean(axis=-2)
    dim_a, dim_b = np.abs(np.diff(boxes, axis=-2))[..., 0, :]
    offset = center_a - center_b
    revised = np.maximum(np.abs(offset) - POSITION_THRESHOLD * (dim_a + dim_b), 0) * np.sign(offset)
    if np.all(np.abs(revised) < 1e-3):
        return None
    dx, dy = revised / np.linalg.norm(offset)
    return float(dx), float(dy)


def relations(box_a: Box, box_b: Box) -> set[str]:
    """Every relation that holds for A relative to reference B ("left of", "below", ...).

    A real set filled in the reference's order (left of, right of, above, below): a reason that
    joins two relations iterates it exactly as evaluate_images.py does in the same process.
    """
    found: set[str] = set()
    vec = relation_vector(box_a, box_b)
    if vec is None:
        return found
    dx, dy = vec
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


def kept_detections(
    detections: Sequence[Any],
    tag: str | None,
    class_order: Sequence[str] | None = None,
    ties: str = "reference",
) -> Groups:
    """Per class: detections by decreasing score, above the tag's threshold, at most 16.

    As evaluate_images.py: scores and the threshold compare in float32 (a score of exactly
    float32(0.3) is dropped), and each class's detections, in the order given, are ordered by
    numpy 1.23's ``argsort(scores)[::-1]`` (``ties="reference"``; tied scores then come out in
    that algorithm's order, e.g. the later one first among up to 16). ``ties="stable"`` keeps
    tied detections in the given order instead. Classes come in ``class_order`` (the detector's
    label order, as the reference's dicts) when given, else by first appearance.
    """
    if ties not in ("reference", "stable"):
        raise ValueError(f"ties must be 'reference' or 'stable', got {ties!r}")
    threshold = np.float32(score_threshold(tag))
    by_class: dict[str, list[Any]] = {}
    for det in detections:
        by_class.setdefault(det.cls, []).append(det)
    names = list(by_class)
    if class_order is not None:
        rank = {c: i for i, c in enumerate(class_order)}
        names.sort(key=lambda c: rank.get(c, len(rank)))
    groups: Groups = {}
    for cls in names:
        group = by_class[cls]
        scores = np.array([d.score for d in group], dtype=np.float32)
        if ties == "reference":
            order = descending_order(scores)
        else:
            order = sorted(range(len(group)), key=lambda i: -float(scores[i]))
        kept = [group[i] for i in order if scores[i] > threshold][:MAX_OBJECTS]
        if kept:
            groups[cls] = kept
    return groups


def judge_kept(
    metadata: dict[str, Any],
    kept: Groups,
    color_names: Sequence[str],
    partial_rule: str = "reference",
) -> Verdict:
    """Judge already-kept detections (see ``kept_detections``) against GenEval metadata.

    ``color_names`` orders the colors listed in a color failure's reason (GenEval's COLORS).
    ``partial_rule``: ``"reference"`` computes ``partial`` as DiffusionNFT's gen_eval.py
    evaluate_reward does (see ``_partial_reference``); ``"clamped"`` is nftkit's earlier
    per-clause mean with every term clamped to [0, 1] (the shapes world keeps it).
    """
    if partial_rule not in ("reference", "clamped"):
        raise ValueError(f"partial_rule must be 'reference' or 'clamped', got {partial_rule!r}")
    include = metadata.get("include", [])
    correct, reasons = _official(metadata, kept, color_names)
    details = {
        cls: [[*(_f32(v) for v in d.box[:4]), _f32(d.score)] for d in group]
        for cls, group in kept.items()
    }
    return Verdict(
        correct=correct,
        reason="\n".join(reasons),
        strict=_strict(include, kept),
        partial=(_partial_reference if partial_rule == "reference" else _partial)(include, kept),
        details=details,
    )


def judge_detections(
    metadata: dict[str, Any],
    detections: Sequence[Any],
    color_names: Sequence[str],
    class_order: Sequence[str] | None = None,
    ties: str = "reference",
    partial_rule: str = "reference",
) -> Verdict:
    """Keep detections by the tag's threshold, then judge them (see ``judge_kept``)."""
    kept = kept_detections(detections, metadata.get("tag"), class_order, ties)
    return judge_kept(metadata, kept, color_names, partial_rule)


def _f32(value: float) -> float:
    """The float32 value (as a Python float) that the reference's boxes hold."""
    return float(np.float32(value))


def _official(
    metadata: dict[str, Any], kept: Groups, color_names: Sequence[str]
) -> tuple[bool, list[str]]:
    """evaluate_images.py's ``evaluate``: the verdict and its reason lines, in its order."""
    include = metadata.get("include", [])
    reasons: list[str] = []
    matched_groups: list[list[Any] | None] = []
    # A position may name a later clause (the shapes world does; evaluate_images.py would raise
    # an IndexError): that target is its clause's count and color verdict.
    ahead = [_count_and_color(c, kept) for c in include]
    for clause in include:
        cls, count = clause["class"], clause["count"]
        found = kept.get(cls, [])[:count]
        matched = True
        if len(found) < count:
            matched = False
            reasons.append(f"expected {cls}>={count}, found {len(found)}")
        else:
            if "color" in clause and not _color_ok(clause, found):  # a null color never is
                matched = False
                reasons.append(_color_reason(clause, found, color_names))
            if "position" in clause and matched:
                ref = clause["position"][1]
                targets = matched_groups[ref] if ref < len(matched_groups) else ahead[ref]
                reason = _position_reason(clause, found, targets)
                if reason is not None:
                    matched = False
                    reasons.append(reason)
        matched_groups.append(found if matched else None)
    for clause in metadata.get("exclude", []):
        cls, count = clause["class"], clause["count"]
        n = len(kept.get(cls, []))
        if n >= count:
            reasons.append(f"expected {cls}<{count}, found {n}")
    return not reasons, reasons


def _color_ok(clause: dict[str, Any], found: list[Any]) -> bool:
    return [d.color for d in found].count(clause["color"]) >= clause["count"]


def _count_and_color(clause: dict[str, Any], kept: Groups) -> list[Any] | None:
    """The clause's top ``count`` objects when their count and color hold, else None."""
    found = kept.get(clause["class"], [])[: clause["count"]]
    if len(found) < clause["count"] or ("color" in clause and not _color_ok(clause, found)):
        return None
    return found


def _color_reason(clause: dict[str, Any], found: list[Any], color_names: Sequence[str]) -> str:
    cls, count, want = clause["class"], clause["count"], clause["color"]
    colors = [d.color for d in found]
    present = ", ".join(f"{colors.count(c)} {c}" for c in color_names if c in colors)
    return f"expected {want} {cls}>={count}, found {colors.count(want)} {want}; and {present}"


def _position_reason(
    clause: dict[str, Any], found: list[Any], targets: list[Any] | None
) -> str | None:
    """The reason the clause's position fails (None when it holds), as the reference words it."""
    cls, expected = clause["class"], clause["position"][0]
    if targets is None:
        return f"no target for {cls} to be {expected}"
    for obj in found:
        for target in targets:
            true_rels = relations(obj.box, target.box)
            if expected not in true_rels:
                return f"expected {cls} {expected} target, found {' and '.join(true_rels)} target"
    return None


def _strict(include: list[dict[str, Any]], kept: Groups) -> float:
    for clause in include:
        found = kept.get(clause["class"], [])
        if len(found) != clause["count"]:
            return 0.0
        if "color" in clause and _n_color(clause, found) != clause["count"]:
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
            if "color" in clause:
                terms.append(max(0.0, 1.0 - abs(count - _n_color(clause, found)) / count))
        if "position" in clause:
            terms.append(1.0 if _position_holds(clause, include, kept) else 0.0)
    return float(np.mean(terms)) if terms else 1.0


def _partial_reference(include: list[dict[str, Any]], kept: Groups) -> float:
    """DiffusionNFT's GenEval training score (gen_eval.py evaluate_reward), term by term.

    Per include clause, on all kept objects of its class: 1 - |count - found| / count (not
    clamped: extra objects can make it negative). A wrong count adds one 0 for a color and/or
    position clause. Otherwise a color adds 1 - |count - n_color| / count (a wrong color also
    skips the position); a position adds 0 when its target clause failed, else 1 when every
    pair holds, or 0 and then 1 when one does not (the reference appends both). Mean of the
    terms (0 without terms). Count-0 clauses, a division by zero there, add no term.
    """
    terms: list[float] = []
    groups: list[list[Any] | None] = []
    for clause in include:
        count, found = clause["count"], kept.get(clause["class"], [])
        if count == 0:
            groups.append(found)
            continue
        terms.append(1 - abs(count - len(found)) / count)
        matched = len(found) == count
        if not matched:
            if "color" in clause or "position" in clause:
                terms.append(0.0)
        else:
            if "color" in clause:
                n_color = _n_color(clause, found)
                terms.append(1 - abs(count - n_color) / count)
                matched = n_color == count
            if "position" in clause and matched:
                relation, ref = clause["position"]
                targets = groups[ref] if ref < len(groups) else _exact(include[ref], kept)
                if targets is None:
                    matched = False
                    terms.append(0.0)
                else:
                    if not all(relation in relations(a.box, b.box) for a in found for b in targets):
                        matched = False
                        terms.append(0.0)
                    terms.append(1.0)
        groups.append(found if matched else None)
    return float(sum(terms) / len(terms)) if terms else 0.0


def _exact(clause: dict[str, Any], kept: Groups) -> list[Any] | None:
    """A later clause's objects when their exact count and color hold (forward positions)."""
    found = kept.get(clause["class"], [])
    if len(found) != clause["count"] or (
        "color" in clause and _n_color(clause, found) != len(found)
    ):
        return None
    return found


def _n_color(clause: dict[str, Any], found: list[Any]) -> int:
    """How many of ``found`` have the clause's color (a null color matches none)."""
    want = clause["color"]
    return sum(want is not None and d.color == want for d in found)


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
