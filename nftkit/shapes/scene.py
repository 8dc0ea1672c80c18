"""Scenes of flat colored shapes: the data type, the renderer and a metadata-driven sampler."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nftkit.shapes.geometry import Box, relation_vector, shape_mask
from nftkit.shapes.metadata import MetadataError, validate_metadata
from nftkit.shapes.perturb import perturb_metadata
from nftkit.shapes.vocab import BACKGROUND, COLORS, IMAGE_SIZE

__all__ = [
    "Scene",
    "SceneSamplingError",
    "ShapeObject",
    "count_grid",
    "perturb_metadata",
    "render",
    "sample_scene",
]

MIN_SIDE = 7
"""Smallest object side / diameter drawn by the sampler, in pixels."""
MAX_SIDE = 10
"""Largest object side / diameter drawn by the sampler, in pixels."""
GAP = 2
"""Minimum gap between the boxes of two sampled objects, in pixels."""
Region = tuple[int, int, int, int]
"""A rectangle of the image an object must lie in: (x_lo, x_hi, y_lo, y_hi), in pixels."""
CLEAR_MAIN = 0.7
"""A sampled position relation needs |main component| >= this (the judge needs > 0.5)."""
CLEAR_CROSS = 0.3
"""... and |cross component| <= this, so that no second relation holds."""


class SceneSamplingError(MetadataError):
    """No scene satisfying the metadata was found within the allowed number of tries."""


@dataclass
class ShapeObject:
    """One filled shape; (cx, cy) is its center and ``size`` its side / diameter, in pixels.

    A triangle points up and is ``size`` wide and ``size`` tall.
    """

    shape: str
    color: str
    cx: float
    cy: float
    size: float

    @property
    def box(self) -> Box:
        """Its bounding box (x1, y1, x2, y2) in continuous pixel coordinates."""
        half = self.size / 2.0
        return (self.cx - half, self.cy - half, self.cx + half, self.cy + half)


@dataclass
class Scene:
    """A square image of ``size`` x ``size`` pixels holding non-overlapping objects."""

    objects: list[ShapeObject] = field(default_factory=list)
    size: int = IMAGE_SIZE


def render(scene: Scene) -> np.ndarray:
    """Draw ``scene`` as a uint8 [H, W, 3] image: plain BACKGROUND, filled hard-edged shapes."""
    image = np.empty((scene.size, scene.size, 3), dtype=np.uint8)
    image[:] = BACKGROUND
    for obj in scene.objects:
        if obj.color not in COLORS:
            raise ValueError(f"unknown color {obj.color!r}; use one of {list(COLORS)}")
        image[shape_mask(obj.shape, obj.box, scene.size, scene.size)] = COLORS[obj.color]
    return image


def sample_scene(
    metadata: dict[str, Any],
    rng: np.random.Generator,
    size: int = IMAGE_SIZE,
    max_tries: int = 1000,
    reading_order: bool = False,
    count_cells: bool = False,
) -> Scene:
    """Sample a random scene that satisfies ``metadata`` (a GenEval-style dict).

    Each include clause gets exactly ``count`` objects of its class, in its color (a random
    one when the clause names none). Objects are 7-10 px (7-9 px when there are more than
    three), lie fully inside the image on integer pixel boundaries and keep a gap of at least
    2 px between their boxes. Position clauses hold with a clear margin for every pair.
    With ``reading_order``, a scene of several clauses and no position clause is laid out as its
    prompt reads: clause i's objects lie in the i-th of equal vertical bands, left to right
    (pre-training data in which "a red circle and a blue square" always puts the circle first).
    With ``count_cells``, the objects of a one-clause scene of two or more (a counting prompt)
    each get a cell of their own, filled in reading order (``count_grid``): two or three side
    by side, four in a 2x2 grid, five in a 3+2 grid, jittered inside their cell.
    Raises SceneSamplingError if no such scene is found in ``max_tries`` attempts.
    """
    validate_metadata(metadata)
    include = metadata["include"]
    _check_excludes(metadata)
    n_objects = sum(clause["count"] for clause in include)
    max_side = MAX_SIDE if n_objects <= 3 else MAX_SIDE - 1
    if n_objects * (MIN_SIDE + GAP) ** 2 > size * size:
        raise SceneSamplingError(f"{n_objects} objects do not fit in a {size}x{size} image")
    for _ in range(max_tries):
        groups = _place_objects(include, rng, size, max_side, reading_order, count_cells)
        if groups is not None and _positions_hold(include, groups):
            return Scene([obj for group in groups for obj in group], size)
    raise SceneSamplingError(
        f"found no {size}x{size} scene for {metadata.get('prompt', include)!r} in {max_tries} "
        "tries; use fewer objects or a larger size"
    )


def _check_excludes(metadata: dict[str, Any]) -> None:
    for clause in metadata.get("exclude", []):
        included = sum(c["count"] for c in metadata["include"] if c["class"] == clause["class"])
        if included >= clause["count"]:
            raise SceneSamplingError(
                f"metadata asks for {included} {clause['class']} but excludes {clause['count']}"
            )


def _place_objects(
    include: list[dict[str, Any]],
    rng: np.random.Generator,
    size: int,
    max_side: int,
    reading_order: bool = False,
    count_cells: bool = False,
) -> list[list[ShapeObject]] | None:
    """Place every clause's objects at random without overlap; None when it gets stuck."""
    boxes: list[Box] = []
    groups: list[list[ShapeObject]] = []
    ordered = reading_order and len(include) > 1 and not any("position" in c for c in include)
    cells = None
    if count_cells and len(include) == 1 and "position" not in include[0]:
        cells = count_grid(include[0]["count"], size)
    for i, clause in enumerate(include):
        band = (i * size // len(include), (i + 1) * size // len(include)) if ordered else (0, size)
        color = clause.get("color") or str(rng.choice(list(COLORS)))
        group: list[ShapeObject] = []
        for k in range(clause["count"]):
            region = cells[k] if cells else (*band, 0, size)
            obj = _place_one(clause["class"], color, boxes, rng, max_side, region)
            if obj is None:
                return None
            boxes.append(obj.box)
            group.append(obj)
        groups.append(group)
    return groups


def count_grid(count: int, size: int = IMAGE_SIZE) -> list[Region] | None:
    """``count`` cells (x_lo, x_hi, y_lo, y_hi) in reading order: one row of up to three, else
    two rows; None when a cell would be too small for an object (more than six objects)."""
    if count < 2:
        return None
    rows = 1 if count <= 3 else 2
    cols = -(-count // rows)
    if size // cols < MIN_SIDE + GAP or size // rows < MIN_SIDE + GAP:
        return None
    xs = [c * size // cols for c in range(cols + 1)]
    ys = [r * size // rows for r in range(rows + 1)]
    cells = [(xs[c], xs[c + 1], ys[r], ys[r + 1]) for r in range(rows) for c in range(cols)]
    return cells[:count]


def _place_one(
    shape: str,
    color: str,
    boxes: list[Box],
    rng: np.random.Generator,
    max_side: int,
    region: Region,
    tries: int = 30,
) -> ShapeObject | None:
    """One object fully inside ``region`` (x_lo, x_hi, y_lo, y_hi), apart from ``boxes``."""
    x_lo, x_hi, y_lo, y_hi = region
    for _ in range(tries):
        side = int(rng.integers(MIN_SIDE, min(max_side, x_hi - x_lo, y_hi - y_lo) + 1))
        x1 = int(rng.integers(x_lo, x_hi - side + 1))
        y1 = int(rng.integers(y_lo, y_hi - side + 1))
        box = (x1, y1, x1 + side, y1 + side)
        if all(_apart(box, other) for other in boxes):
            return ShapeObject(shape, color, x1 + side / 2.0, y1 + side / 2.0, float(side))
    return None


def _apart(a: Box, b: Box) -> bool:
    """True when boxes a and b are separated by at least GAP pixels along some axis."""
    return a[0] >= b[2] + GAP or b[0] >= a[2] + GAP or a[1] >= b[3] + GAP or b[1] >= a[3] + GAP


_DIRECTIONS = {"left of": (-1, 0), "right of": (1, 0), "above": (0, -1), "below": (0, 1)}


def _positions_hold(include: list[dict[str, Any]], groups: list[list[ShapeObject]]) -> bool:
    """True when every position clause holds, with margin, for all its (A, B) pairs."""
    for clause, group in zip(include, groups, strict=True):
        if "position" not in clause:
            continue
        relation, ref = clause["position"]
        ux, uy = _DIRECTIONS[relation]
        for a in group:
            for b in groups[ref]:
                vec = relation_vector(a.box, b.box)
                if vec is None:
                    return False
                main = vec[0] * ux + vec[1] * uy
                cross = abs(vec[0] * uy) + abs(vec[1] * ux)
                if main < CLEAR_MAIN or cross > CLEAR_CROSS:
                    return False
    return True
