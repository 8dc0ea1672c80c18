"""Shared geometry: filled shape masks on the pixel grid and GenEval's relation rule.

Coordinates are continuous pixel units with the origin at the top-left corner of the image;
pixel (row i, column j) covers [j, j + 1) x [i, i + 1) and is inside a shape when its center
(j + 0.5, i + 0.5) is. Boxes are (x1, y1, x2, y2) with y pointing down.
"""

from __future__ import annotations

import numpy as np

from nftkit.shapes.vocab import SHAPES

Box = tuple[float, float, float, float]

POSITION_THRESHOLD = 0.1
"""GenEval's margin: each axis offset is reduced by 0.1 * (dim_A + dim_B) before comparing."""


def shape_mask(shape: str, box: Box, height: int, width: int) -> np.ndarray:
    """Boolean [height, width] mask of ``shape`` filling ``box`` (hard edges, no anti-aliasing).

    A circle is the ellipse inscribed in the box, a square fills the box, a triangle has its
    apex at the top-center of the box and its base along the bottom edge.
    """
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; expected one of {SHAPES}")
    x1, y1, x2, y2 = (float(v) for v in box)
    if x2 <= x1 or y2 <= y1:
        raise ValueError(f"box must have positive width and height, got {box}")
    xs = np.arange(width, dtype=np.float64)[None, :] + 0.5
    ys = np.arange(height, dtype=np.float64)[:, None] + 0.5
    inside_y = (ys >= y1) & (ys <= y2)
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    half_w, half_h = (x2 - x1) / 2.0, (y2 - y1) / 2.0
    if shape == "square":
        return (xs >= x1) & (xs <= x2) & inside_y
    if shape == "circle":
        return ((xs - cx) / half_w) ** 2 + ((ys - cy) / half_h) ** 2 <= 1.0
    depth = (ys - y1) / (y2 - y1)
    return (np.abs(xs - cx) <= depth * half_w) & inside_y


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
    """Every relation that holds for A relative to reference B: subset of RELATIONS."""
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
