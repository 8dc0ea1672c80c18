"""Constants of the shapes world: object classes, palette, background and prompt words."""

from __future__ import annotations

SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
"""The object classes; a plural adds "s"."""

COLORS: dict[str, tuple[int, int, int]] = {
    "red": (215, 25, 35),
    "green": (30, 160, 50),
    "blue": (30, 70, 230),
    "yellow": (240, 230, 10),
    "purple": (140, 40, 170),
    "orange": (250, 135, 0),
}
"""Six saturated colors, at least ~95 apart in RGB from each other and from BACKGROUND."""

BACKGROUND: tuple[int, int, int] = (235, 235, 235)
"""Plain light-gray background of every scene."""

IMAGE_SIZE: int = 32
"""Default side of a square scene image, in pixels."""

NUMBER_WORDS: dict[int, str] = {2: "two", 3: "three", 4: "four"}
"""Counts used by the counting task and their words."""

RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
"""Spatial relations of the position task (image y points down)."""
