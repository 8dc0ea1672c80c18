"""A GenEval-like prompt grammar over the shapes world, emitting GenEval metadata dicts.

Each prompt is ``{"tag", "include": [{"class", "count", "color"?, "position"?}],
"exclude"?: [{"class", "count"}], "prompt"}``. As in GenEval, a position prompt "a photo of
a A left of a B" lists the reference B first and carries ``"position": ["left of", 0]`` on
A's clause, and color_attr prompts use two different classes and two different colors.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable
from typing import Any

import numpy as np

from nftkit.shapes.vocab import COLORS, NUMBER_WORDS, RELATIONS, SHAPES

ALL_TASKS: tuple[str, ...] = (
    "single_object",
    "two_object",
    "counting",
    "colors",
    "position",
    "color_attr",
)
"""The six GenEval task tags, in GenEval's order."""

PAD, UNK = "<pad>", "<unk>"

Metadata = dict[str, Any]


def with_article(word: str) -> str:
    """``word`` preceded by "a", or "an" before a vowel ("an orange")."""
    return f"{'an' if word[0] in 'aeiou' else 'a'} {word}"


def plural(word: str) -> str:
    """GenEval's plural: +"es" after a final "s", else +"s"."""
    return word + ("es" if word.endswith("s") else "s")


def all_prompts(task: str) -> list[Metadata]:
    """Every distinct prompt of ``task``, in a fixed order."""
    if task == "single_object":
        return [_single(c) for c in SHAPES]
    if task == "two_object":
        return [_two(a, b) for a, b in itertools.permutations(SHAPES, 2)]
    if task == "counting":
        return [_counting(c, n) for c in SHAPES for n in NUMBER_WORDS]
    if task == "colors":
        return [_colors(c, color) for c in SHAPES for color in COLORS]
    if task == "position":
        return [
            _position(a, rel, b) for a, b in itertools.permutations(SHAPES, 2) for rel in RELATIONS
        ]
    if task == "color_attr":
        return [
            _color_attr(c1, a, c2, b)
            for a, b in itertools.permutations(SHAPES, 2)
            for c1, c2 in itertools.permutations(COLORS, 2)
        ]
    raise ValueError(f"unknown task {task!r}; use one of {ALL_TASKS}")


def generate_prompts(
    n_per_task: int, seed: int, tasks: Iterable[str] = ALL_TASKS
) -> list[Metadata]:
    """Draw ``n_per_task`` prompts per task at random, then drop repeats (as GenEval does).

    Deterministic for a seed; a task may end up with fewer than ``n_per_task`` prompts.
    """
    if n_per_task < 0:
        raise ValueError(f"n_per_task must be >= 0, got {n_per_task}")
    rng = np.random.default_rng(seed)
    seen: set[str] = set()
    out: list[Metadata] = []
    for task in tasks:
        pool = all_prompts(task)
        for i in rng.integers(len(pool), size=n_per_task):
            meta = pool[int(i)]
            if meta["prompt"] not in seen:
                seen.add(meta["prompt"])
                out.append(meta)
    return out


def split_prompts(
    seed: int = 0, holdout_fraction: float = 0.3
) -> tuple[list[Metadata], list[Metadata]]:
    """Deterministic (train, held-out) split of every task's prompts, stratified by task.

    Each task holds out round(holdout_fraction * its size) prompts, at least one when the
    fraction is positive.
    """
    if not 0.0 <= holdout_fraction < 1.0:
        raise ValueError(f"holdout_fraction must be in [0, 1), got {holdout_fraction}")
    train: list[Metadata] = []
    held_out: list[Metadata] = []
    for k, task in enumerate(ALL_TASKS):
        pool = all_prompts(task)
        order = np.random.default_rng([seed, k]).permutation(len(pool))
        n_out = round(holdout_fraction * len(pool))
        if holdout_fraction > 0:
            n_out = max(n_out, 1)
        held = set(order[:n_out].tolist())
        for i, meta in enumerate(pool):
            (held_out if i in held else train).append(meta)
    return train, held_out


def task_balanced(
    prompts: list[Metadata], weights: dict[str, float] | None = None
) -> list[Metadata]:
    """Every task's prompts repeated (cyclically) to the size of the largest task.

    The shapes suite scores the unweighted mean of task accuracies, as GenEval does, while the
    grammar makes some tasks far larger than others (color attributes dwarf single objects);
    drawing training prompts uniformly from this list gives every task the same weight.
    ``weights`` (task -> factor, default 1) scales a task's share: ``{"counting": 2}`` draws
    counting prompts twice as often as any other task.
    """
    weights = weights or {}
    unknown = sorted(set(weights) - set(ALL_TASKS))
    if unknown:
        raise ValueError(f"unknown task(s) {unknown}; use {', '.join(ALL_TASKS)}")
    if any(not w > 0 for w in weights.values()):
        raise ValueError(f"task weights must be > 0, got {weights}")
    by_task: dict[str, list[Metadata]] = {}
    for meta in prompts:
        by_task.setdefault(meta["tag"], []).append(meta)
    size = max((len(group) for group in by_task.values()), default=0)
    return [
        group[i % len(group)]
        for task, group in by_task.items()
        for i in range(round(size * weights.get(task, 1.0)))
    ]


def tokenize(prompt: str) -> list[str]:
    """Lowercase words of a prompt ("left of" gives two words)."""
    return re.findall(r"[a-z]+", prompt.lower())


def token_ids(prompt: str, length: int | None = None) -> list[int]:
    """Indices into VOCAB of the prompt's words (<unk> for others), padded/cut to ``length``."""
    ids = [_INDEX.get(word, _INDEX[UNK]) for word in tokenize(prompt)]
    if length is None:
        return ids
    return (ids + [_INDEX[PAD]] * length)[:length]


def _single(cls: str) -> Metadata:
    return {
        "tag": "single_object",
        "include": [{"class": cls, "count": 1}],
        "prompt": f"a photo of {with_article(cls)}",
    }


def _two(a: str, b: str) -> Metadata:
    return {
        "tag": "two_object",
        "include": [{"class": a, "count": 1}, {"class": b, "count": 1}],
        "prompt": f"a photo of {with_article(a)} and {with_article(b)}",
    }


def _counting(cls: str, n: int) -> Metadata:
    return {
        "tag": "counting",
        "include": [{"class": cls, "count": n}],
        "exclude": [{"class": cls, "count": n + 1}],
        "prompt": f"a photo of {NUMBER_WORDS[n]} {plural(cls)}",
    }


def _colors(cls: str, color: str) -> Metadata:
    return {
        "tag": "colors",
        "include": [{"class": cls, "count": 1, "color": color}],
        "prompt": f"a photo of {with_article(color)} {cls}",
    }


def _position(a: str, relation: str, b: str) -> Metadata:
    return {
        "tag": "position",
        "include": [
            {"class": b, "count": 1},
            {"class": a, "count": 1, "position": [relation, 0]},
        ],
        "prompt": f"a photo of {with_article(a)} {relation} {with_article(b)}",
    }


def _color_attr(c1: str, a: str, c2: str, b: str) -> Metadata:
    return {
        "tag": "color_attr",
        "include": [
            {"class": a, "count": 1, "color": c1},
            {"class": b, "count": 1, "color": c2},
        ],
        "prompt": f"a photo of {with_article(c1)} {a} and {with_article(c2)} {b}",
    }


VOCAB: list[str] = [
    PAD,
    UNK,
    *sorted({w for task in ALL_TASKS for m in all_prompts(task) for w in tokenize(m["prompt"])}),
]
"""Every word the grammar can produce, after "<pad>" (index 0) and "<unk>" (index 1)."""

_INDEX = {word: i for i, word in enumerate(VOCAB)}
