"""Exact programmatic detector for shapes-world images, robust to mild blur and noise.

Pipeline: each pixel is unmixed as a blend of one palette color with the background and
takes the best-fitting color when it is at least half that color (else background);
isolated single pixels take their neighbors' majority class; same-color 8-connected
components of at least MIN_AREA pixels become detections; the class is the shape template
(fitted to the component's box) with the highest IoU. The score multiplies five
confidences in [0, 1]: template fit, margin over the runner-up template, color purity
(unmixing residual), size and box aspect ratio. Clean renders score 1.0.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nftkit.shapes.components import label_components
from nftkit.shapes.geometry import Box, shape_mask
from nftkit.shapes.vocab import BACKGROUND, COLORS, SHAPES

COLOR_THRESHOLD = 60.0
"""Largest RGB residual of a pixel's color/background unmixing for it to count as that color."""
MIN_AREA = 6
"""Components with fewer pixels are noise and are dropped."""
FULL_AREA = 16
"""Components with at least this many pixels get full size confidence."""
FIT_LOW, FIT_HIGH = 0.6, 0.85
"""Template IoU mapped linearly onto fit confidence 0..1."""
MARGIN_FULL = 0.1
"""IoU lead over the second-best template that gives full margin confidence."""
ASPECT_LOW, ASPECT_HIGH = 0.4, 0.7
"""Box aspect ratio (short / long side) mapped linearly onto confidence 0..1."""
COLOR_SLACK, COLOR_SPAN = 30.0, 40.0
"""Mean unmixing residual up to SLACK is full confidence, falling to 0 at SLACK + SPAN."""

_COLOR_NAMES = tuple(COLORS)
_BACKGROUND = np.array(BACKGROUND, dtype=np.float64)
_DIRECTIONS = np.array(list(COLORS.values()), dtype=np.float64) - _BACKGROUND  # [C, 3]
_SQUARED_NORMS = (_DIRECTIONS**2).sum(axis=1)


@dataclass(eq=False)
class Detection:
    """One detected object: class, color, box (x1, y1, x2, y2), confidence and pixel mask.

    Compared by identity (the mask is an array).
    """

    cls: str
    color: str
    box: Box
    score: float
    mask: np.ndarray = field(repr=False)


def detect(image: np.ndarray) -> list[Detection]:
    """Detect the shapes in a uint8 [H, W, 3] image, sorted by decreasing score."""
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be [H, W, 3], got shape {image.shape}")
    if image.dtype != np.uint8:
        raise ValueError(f"image must be uint8, got {image.dtype}; convert with x*255, round")
    classes, residual = classify_pixels(image)
    classes = despeckle(classes)
    foreground = classes > 0
    labels, n = label_components(classes, foreground)
    detections = []
    for k in range(n):
        mask = labels == k
        area = int(mask.sum())
        if area < MIN_AREA:
            continue
        color = _COLOR_NAMES[int(classes[mask][0]) - 1]
        detections.append(_describe(mask, area, color, float(residual[mask].mean())))
    detections.sort(key=lambda d: -d.score)
    return detections


def classify_pixels(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unmix each pixel as alpha * color + (1 - alpha) * BACKGROUND for every palette color.

    A pixel belongs to the color (1..6, in COLORS order) with the smallest residual among
    those with alpha >= 0.5 and residual <= COLOR_THRESHOLD; otherwise it is background (0).
    Half-covered pixels of a blurred edge thus keep the object's true extent. Returns the
    class map and the residual of the chosen color (0 on background).
    """
    diff = image.astype(np.float64) - _BACKGROUND  # [H, W, 3]
    alpha = np.clip(diff @ _DIRECTIONS.T / _SQUARED_NORMS, 0.0, 1.0)  # [H, W, C]
    residual = np.linalg.norm(diff[:, :, None, :] - alpha[..., None] * _DIRECTIONS, axis=-1)
    residual[alpha < 0.5] = np.inf
    best = residual.argmin(axis=-1)
    best_residual = residual.min(axis=-1)
    keep = best_residual <= COLOR_THRESHOLD
    return np.where(keep, best + 1, 0), np.where(keep, best_residual, 0.0)


def despeckle(classes: np.ndarray) -> np.ndarray:
    """Give a pixel with no 8-neighbor of its class the majority class of its neighbors.

    Only a clear majority (at least 5 neighbors) takes over, so edges and corners stay.
    """
    h, w = classes.shape
    one_hot = np.eye(len(COLORS) + 1, dtype=np.int16)[classes]  # [H, W, C]
    padded = np.pad(one_hot, ((1, 1), (1, 1), (0, 0)))
    votes = np.zeros_like(one_hot)
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            if dy != 1 or dx != 1:
                votes += padded[dy : dy + h, dx : dx + w]
    same = np.take_along_axis(votes, classes[:, :, None], axis=2)[:, :, 0]
    majority = votes.argmax(axis=2)
    flip = (same == 0) & (votes.max(axis=2) >= 5)
    return np.where(flip, majority, classes)


def _describe(mask: np.ndarray, area: int, color: str, mean_residual: float) -> Detection:
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    y1, y2, x1, x2 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    crop = mask[y1:y2, x1:x2]
    h, w = crop.shape
    ious = [max(_iou(t, crop) for t in _templates(shape, h, w)) for shape in SHAPES]
    order = np.argsort(ious)[::-1]
    best, second = ious[order[0]], ious[order[1]]
    fit = np.clip((best - FIT_LOW) / (FIT_HIGH - FIT_LOW), 0.0, 1.0)
    margin = np.clip((best - second) / MARGIN_FULL, 0.0, 1.0)
    purity = np.clip(1.0 - (mean_residual - COLOR_SLACK) / COLOR_SPAN, 0.0, 1.0)
    size = np.clip((area - MIN_AREA + 1) / (FULL_AREA - MIN_AREA + 1), 0.0, 1.0)
    aspect = np.clip((min(h, w) / max(h, w) - ASPECT_LOW) / (ASPECT_HIGH - ASPECT_LOW), 0.0, 1.0)
    score = float(fit * margin * purity * size * aspect)
    box = (float(x1), float(y1), float(x2), float(y2))
    return Detection(SHAPES[int(order[0])], color, box, score, mask)


def _templates(shape: str, h: int, w: int) -> list[np.ndarray]:
    """Masks of ``shape`` fitted to an h x w box; triangles also with a cut-off apex.

    Blur erases the thin apex of a triangle, leaving a trapezoid whose box starts lower, so
    triangles are also tried with the apex 1 or 2 px above the box.
    """
    lifts = (0.0, 1.0, 2.0) if shape == "triangle" else (0.0,)
    return [shape_mask(shape, (0.0, -lift, float(w), float(h)), h, w) for lift in lifts]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0
