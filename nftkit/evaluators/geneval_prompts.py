"""GenEval-protocol prompts: the text of a metadata line, and a seeded generator of new sets.

Templates (REFERENCE.md section 3, checked against all 553 official prompts):
single_object "a photo of a/an {cls}"; two_object "a photo of a/an {A} and a/an {B}";
counting "a photo of {two|three|four} {plural}"; colors "a photo of a/an {color} {cls}";
position "a photo of a/an {A} {relation} a/an {B}" (metadata: B first, then A with
``position: [relation, 0]``); color_attr "a photo of a/an {c1} {A} and a/an {c2} {B}".
"an" comes before a vowel; plurals add "es" after a final "s", else "s"; "person" never gets a
color; pairs use two different classes (and two different colors). Lines keep GenEval's key
order: tag, include, exclude (counting only), prompt.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from nftkit.errors import UsageError
from nftkit.geneval_vocab import (
    GENEVAL_CLASSES,
    GENEVAL_COLORS,
    GENEVAL_TASKS,
    NUMBER_WORDS,
    RELATIONS,
    UNCOLORED_CLASSES,
)

GENEVAL_SEED = 43
"""The seed of GenEval's own generator (100 candidates per task, then de-duplicated)."""
_MAX_MISSES = 2000


def article(word: str) -> str:
    """ "an" before a vowel, else "a"."""
    return "an" if word[:1].lower() in "aeiou" else "a"


def with_article(phrase: str) -> str:
    """``phrase`` preceded by its indefinite article."""
    return f"{article(phrase)} {phrase}"


def plural(cls: str) -> str:
    """GenEval's plural: "es" after a final "s", else "s" ("bus" -> "buses", "knife" -> "knifes")."""
    return cls + ("es" if cls.endswith("s") else "s")


def _object(clause: dict[str, Any]) -> str:
    color = clause.get("color")
    return with_article(f"{color} {clause['class']}" if color else clause["class"])


def prompt_text(metadata: dict[str, Any]) -> str:
    """The prompt that GenEval's templates give for a metadata line (UsageError if malformed)."""
    tag, include = metadata.get("tag"), metadata.get("include") or []
    try:
        if tag == "counting":
            count = include[0]["count"]
            return f"a photo of {NUMBER_WORDS[count]} {plural(include[0]['class'])}"
        if tag in ("single_object", "colors"):
            return f"a photo of {_object(include[0])}"
        if tag in ("two_object", "color_attr"):
            return f"a photo of {_object(include[0])} and {_object(include[1])}"
        if tag == "position":
            relation, ref = include[1]["position"]
            return f"a photo of {_object(include[1])} {relation} {_object(include[ref])}"
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise UsageError(f"malformed GenEval metadata {metadata!r}: {exc}") from None
    raise UsageError(f"unknown GenEval tag {tag!r}: choose one of {', '.join(GENEVAL_TASKS)}")


def _line(tag: str, include: list[dict[str, Any]], exclude: list | None = None) -> dict[str, Any]:
    line: dict[str, Any] = {"tag": tag, "include": include}
    if exclude is not None:
        line["exclude"] = exclude
    line["prompt"] = prompt_text(line)
    return line


def _pick(rng: np.random.Generator, pool: Sequence[str], k: int = 1) -> list[str]:
    return [pool[i] for i in rng.choice(len(pool), size=k, replace=False)]


_COLORABLE = tuple(c for c in GENEVAL_CLASSES if c not in UNCOLORED_CLASSES)


def _single_object(rng: np.random.Generator) -> dict[str, Any]:
    (cls,) = _pick(rng, GENEVAL_CLASSES)
    return _line("single_object", [{"class": cls, "count": 1}])


def _two_object(rng: np.random.Generator) -> dict[str, Any]:
    a, b = _pick(rng, GENEVAL_CLASSES, 2)
    return _line("two_object", [{"class": a, "count": 1}, {"class": b, "count": 1}])


def _counting(rng: np.random.Generator) -> dict[str, Any]:
    (cls,) = _pick(rng, GENEVAL_CLASSES)
    count = int(rng.choice(sorted(NUMBER_WORDS)))
    return _line("counting", [{"class": cls, "count": count}], [{"class": cls, "count": count + 1}])


def _colors(rng: np.random.Generator) -> dict[str, Any]:
    (cls,), (color,) = _pick(rng, _COLORABLE), _pick(rng, GENEVAL_COLORS)
    return _line("colors", [{"class": cls, "count": 1, "color": color}])


def _position(rng: np.random.Generator) -> dict[str, Any]:
    a, b = _pick(rng, GENEVAL_CLASSES, 2)
    (relation,) = _pick(rng, RELATIONS)
    return _line(
        "position", [{"class": b, "count": 1}, {"class": a, "count": 1, "position": [relation, 0]}]
    )


def _color_attr(rng: np.random.Generator) -> dict[str, Any]:
    a, b = _pick(rng, _COLORABLE, 2)
    c1, c2 = _pick(rng, GENEVAL_COLORS, 2)
    return _line(
        "color_attr", [{"class": a, "count": 1, "color": c1}, {"class": b, "count": 1, "color": c2}]
    )


TASK_GENERATORS: dict[str, Callable[[np.random.Generator], dict[str, Any]]] = {
    "single_object": _single_object,
    "two_object": _two_object,
    "counting": _counting,
    "colors": _colors,
    "position": _position,
    "color_attr": _color_attr,
}
"""One random GenEval metadata line per call, per task."""


def parse_tasks(tasks: str | Sequence[str] | None) -> list[str]:
    """Task names from a comma-separated string or a list (None: all six, in GenEval's order)."""
    if tasks is None:
        return list(GENEVAL_TASKS)
    names = [t.strip() for t in tasks.split(",")] if isinstance(tasks, str) else list(tasks)
    names = [t for t in names if t]
    unknown = [t for t in names if t not in TASK_GENERATORS]
    if unknown or not names:
        raise UsageError(
            f"unknown GenEval task(s) {unknown or names}: choose from {', '.join(GENEVAL_TASKS)}"
        )
    return list(dict.fromkeys(names))


def generate_geneval_prompts(
    n: int, seed: int = GENEVAL_SEED, tasks: str | Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """``n`` distinct GenEval metadata lines, tasks taken in turn, reproducible from ``seed``.

    A task whose prompts run out (single_object has 80) drops out of the rotation; UsageError
    when all chosen tasks run out before ``n`` prompts.
    """
    if n < 1:
        raise UsageError(f"--n must be >= 1, got {n}")
    names = parse_tasks(tasks)
    rngs = {t: np.random.default_rng([seed, GENEVAL_TASKS.index(t)]) for t in names}
    seen: set[str] = set()
    lines: list[dict[str, Any]] = []
    active = list(names)
    while len(lines) < n and active:
        for task in list(active):
            if len(lines) == n:
                break
            for _ in range(_MAX_MISSES):
                line = TASK_GENERATORS[task](rngs[task])
                if line["prompt"] not in seen:
                    seen.add(line["prompt"])
                    lines.append(line)
                    break
            else:
                active.remove(task)
    if len(lines) < n:
        raise UsageError(
            f"only {len(lines)} distinct prompts exist for tasks {', '.join(names)}; ask for fewer"
        )
    return lines
