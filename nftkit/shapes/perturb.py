"""Plausible wrong variants of a metadata dict: what an imperfect model might draw instead."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np

from nftkit.shapes.metadata import validate_metadata
from nftkit.shapes.vocab import COLORS, RELATIONS, SHAPES

MAX_COUNT = 5
"""Largest count a perturbation may produce (a scene must still fit in the image)."""

Clauses = list[dict[str, Any]]
Edit = Callable[[Clauses], str]


def perturb_metadata(metadata: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    """Return a wrong variant of ``metadata`` for the same prompt.

    One edit is picked at random among those that apply: another count, another color,
    swapped colors, another or swapped relation, swapped objects, a missing object, another
    class. Every edit is chosen so that a scene drawn for the result (``sample_scene``) fails
    the original prompt under the GenEval rules. The result keeps ``tag`` and ``prompt``, has
    no ``exclude`` and names the edit under the extra key ``"perturbation"``.
    """
    validate_metadata(metadata)
    edits = _candidate_edits(metadata, rng)
    if not edits:
        raise ValueError(f"no wrong variant exists for {metadata.get('prompt', metadata)!r}")
    include = copy.deepcopy(metadata["include"])
    description = edits[int(rng.integers(len(edits)))](include)
    out = {k: copy.deepcopy(v) for k, v in metadata.items() if k not in ("include", "exclude")}
    out["include"] = include
    out["perturbation"] = description
    return out


def _candidate_edits(metadata: dict[str, Any], rng: np.random.Generator) -> list[Edit]:
    include: Clauses = metadata["include"]
    edits: list[Edit] = []
    for i, clause in enumerate(include):
        cls, count = clause["class"], clause["count"]
        if count == 0:
            continue
        unique = sum(c["class"] == cls for c in include) == 1
        if unique:
            edits.append(_other_class(i, rng))
            if clause.get("color"):
                edits.append(_other_color(i, rng))
        edits.append(_drop_clause(i))
        if count >= 2:
            edits.append(_set_count(i, count - 1))
        limit = min(
            (c["count"] for c in metadata.get("exclude", []) if c["class"] == cls), default=None
        )
        if limit is not None and count + 1 >= limit and count + 1 <= MAX_COUNT:
            edits.append(_set_count(i, count + 1))
        if clause.get("position"):
            edits.append(_other_relation(i, rng))
            ref = clause["position"][1]
            if include[ref]["class"] != cls and include[ref]["count"] > 0:
                edits.append(_swap_classes(i, ref))
    colored = [i for i, c in enumerate(include) if c.get("color") and c["count"] > 0]
    if len(colored) == 2:
        a, b = colored
        if (
            include[a]["color"] != include[b]["color"]
            and include[a]["class"] != include[b]["class"]
        ):
            edits.append(_swap_colors(a, b))
    return edits


def _other_class(i: int, rng: np.random.Generator) -> Edit:
    def edit(include: Clauses) -> str:
        old = include[i]["class"]
        new = str(rng.choice([s for s in SHAPES if s != old]))
        include[i]["class"] = new
        return f"class of clause {i}: {old} -> {new}"

    return edit


def _other_color(i: int, rng: np.random.Generator) -> Edit:
    def edit(include: Clauses) -> str:
        old = include[i]["color"]
        new = str(rng.choice([c for c in COLORS if c != old]))
        include[i]["color"] = new
        return f"color of clause {i}: {old} -> {new}"

    return edit


def _set_count(i: int, count: int) -> Edit:
    def edit(include: Clauses) -> str:
        old = include[i]["count"]
        include[i]["count"] = count
        return f"count of clause {i}: {old} -> {count}"

    return edit


def _drop_clause(i: int) -> Edit:
    def edit(include: Clauses) -> str:
        dropped = include.pop(i)
        for clause in include:
            if "position" in clause:
                relation, ref = clause["position"]
                if ref == i:
                    del clause["position"]
                else:
                    clause["position"] = [relation, ref - 1 if ref > i else ref]
        return f"missing {dropped['class']} (clause {i})"

    return edit


def _other_relation(i: int, rng: np.random.Generator) -> Edit:
    def edit(include: Clauses) -> str:
        old, ref = include[i]["position"]
        new = str(rng.choice([r for r in RELATIONS if r != old]))
        include[i]["position"] = [new, ref]
        return f"relation of clause {i}: {old} -> {new}"

    return edit


def _swap_classes(i: int, j: int) -> Edit:
    def edit(include: Clauses) -> str:
        include[i]["class"], include[j]["class"] = include[j]["class"], include[i]["class"]
        return f"swapped objects of clauses {i} and {j}"

    return edit


def _swap_colors(i: int, j: int) -> Edit:
    def edit(include: Clauses) -> str:
        include[i]["color"], include[j]["color"] = include[j]["color"], include[i]["color"]
        return f"swapped colors of clauses {i} and {j}"

    return edit
