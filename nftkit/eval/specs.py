"""The first stage of an evaluation: what to make, one ``EvalItem`` per image.

Each (prompt, sample) pair gets its own seed, so results depend neither on the batch size nor
on the number of processes, and a rerun reproduces them. Items come from a suite's prompts
(``generation_items``: images still to generate) or from images made elsewhere
(``image_items``: a GenEval layout folder or a JSONL manifest).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nftkit.errors import UsageError
from nftkit.eval import layout
from nftkit.evaluators.base import Evaluator, PromptSpec


@dataclass
class EvalSettings:
    """How images are generated for an evaluation (``shift`` None: the policy's default)."""

    steps: int = 20
    solver: str = "dpm2"
    shift: float | None = None
    cfg: float = 1.0
    seed: int = 0
    batch_size: int = 32
    limit: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict."""
        return dict(self.__dict__)


@dataclass(frozen=True)
class EvalItem:
    """One image of an evaluation: its prompt (index in the suite, spec) and sample index."""

    prompt_index: int
    spec: PromptSpec
    sample_index: int
    seed: int | None = None
    image_path: Path | None = None

    @property
    def key(self) -> tuple[str, int]:
        """(prompt id, sample index): the image's identity in the results store."""
        return (self.spec.id, self.sample_index)


def check_batch_size(batch_size: int) -> None:
    """UsageError unless ``batch_size`` >= 1."""
    if batch_size < 1:
        raise UsageError(f"batch size must be >= 1, got {batch_size}")


def sample_seed(seed: int, prompt_index: int, sample_index: int) -> int:
    """The seed of one (prompt, sample) pair."""
    state = np.random.SeedSequence([seed, prompt_index, sample_index]).generate_state(1)
    return int(state[0])


def evaluation_items(
    evaluator: Evaluator, limit: int | None = None
) -> list[tuple[int, PromptSpec, int]]:
    """(prompt index, spec, sample index) for every image of the suite, in order."""
    specs = evaluator.prompts()
    if limit is not None:
        specs = specs[:limit]
    return [(i, s, k) for i, s in enumerate(specs) for k in range(evaluator.samples_per_prompt)]


def generation_items(
    evaluator: Evaluator, settings: EvalSettings, output: Path | None
) -> list[EvalItem]:
    """The suite's images to generate, with seeds and (given ``output``) their PNG paths."""
    return [
        EvalItem(
            i,
            spec,
            k,
            sample_seed(settings.seed, i, k),
            layout.image_path(output, i, k) if output is not None else None,
        )
        for i, spec, k in evaluation_items(evaluator, settings.limit)
    ]


def image_items(evaluator: Evaluator, source: Path) -> tuple[list[EvalItem], list[dict[str, Any]]]:
    """Items for images made elsewhere, and the prompt lines they were read with."""
    groups = layout.read_image_source(source)
    items: list[EvalItem] = []
    for index, group in enumerate(groups):
        spec = evaluator.spec_from_line(group.prompt_id, group.line)
        items.extend(EvalItem(index, spec, k, None, file) for k, file in sorted(group.images))
    if not items:
        raise UsageError(f"--images {source}: no images to score")
    return items, [g.line for g in groups]
