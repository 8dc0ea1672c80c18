"""Checks on GenEval-style metadata dicts restricted to the shapes world's vocabulary."""

from __future__ import annotations

from typing import Any

from nftkit.shapes.vocab import COLORS, RELATIONS, SHAPES


class MetadataError(ValueError):
    """A metadata dict that is malformed or names something outside the shapes world."""


def validate_metadata(metadata: dict[str, Any]) -> None:
    """Raise MetadataError unless ``metadata`` is a well-formed shapes-world GenEval dict.

    Checks the include clauses (class, count >= 0, optional color and [relation, index]
    position) and the optional exclude clauses (class, count >= 1).
    """
    if not isinstance(metadata, dict) or not isinstance(metadata.get("include"), list):
        raise MetadataError("metadata must be a dict with an 'include' list of clauses")
    include = metadata["include"]
    for i, clause in enumerate(include):
        _check_class_count(clause, f"include[{i}]", min_count=0)
        color = clause.get("color")
        if color is not None and color not in COLORS:
            raise MetadataError(f"include[{i}]: unknown color {color!r}; use one of {list(COLORS)}")
        position = clause.get("position")
        if position is not None:
            if len(position) != 2 or position[0] not in RELATIONS:
                raise MetadataError(
                    f"include[{i}]: position must be [relation, index] with a relation in "
                    f"{RELATIONS}, got {position!r}"
                )
            ref = position[1]
            if not isinstance(ref, int) or not 0 <= ref < len(include) or ref == i:
                raise MetadataError(
                    f"include[{i}]: position index {ref!r} must name another include clause"
                )
    for i, clause in enumerate(metadata.get("exclude", [])):
        _check_class_count(clause, f"exclude[{i}]", min_count=1)


def _check_class_count(clause: Any, where: str, min_count: int) -> None:
    if not isinstance(clause, dict):
        raise MetadataError(f"{where}: a clause must be a dict, got {type(clause).__name__}")
    if clause.get("class") not in SHAPES:
        raise MetadataError(f"{where}: unknown class {clause.get('class')!r}; use one of {SHAPES}")
    count = clause.get("count")
    if not isinstance(count, int) or isinstance(count, bool) or count < min_count:
        raise MetadataError(f"{where}: count must be an integer >= {min_count}, got {count!r}")
