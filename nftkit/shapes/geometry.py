"""Shared geometry: filled shape masks on the pixel grid; GenEval's relation rule re-exported.

Coordinates are continuous pixel units with the origin at the top-left corner of the image;
pixel (row i, column j) covers [j, j + 1) x [i, i + 1) and is inside a shape when its center
(j + 0.5, i + 0.5) is. Boxes are (x1, y1, x2, y2) with y pointing down.
"""

from __future__ import annotations

import numpy as np

from nftkit.rewards.geneval_rules import POSITION_THRESHOLD, relation_vector, relations
from nftkit.shapes.vocab import SHAPES

__all__ = ["POSITION_THRESHOLD", "Box", "relation_vector", "relations", "shape_mask"]

Box = tuple[float, float, float, float]


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
