"""The Evaluator contract: a benchmark suite's prompts, how to score its images, its summary.

An evaluator lists ``PromptSpec`` items (id, text, metadata), says how many images each prompt
gets (``n_samples``), scores generated images into per-image rows (``score_samples``) and turns
rows into summary metrics (``summarize``), each metric with its direction. Keeping rows and
summary apart lets an interrupted evaluation resume from stored rows and lets tests recompute the
summary from the rows.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from PIL import Image


@dataclass(frozen=True)
class PromptSpec:
    """One prompt of a suite."""

    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class SuiteResult:
    """Per-image rows and summary metrics with their directions."""

    rows: list[dict[str, Any]]
    metrics: dict[str, float]
    higher_is_better: dict[str, bool]

    @property
    def n(self) -> int:
        """Number of scored images."""
        return len(self.rows)


class Evaluator(ABC):
    """Base class of benchmark suites; metadata lives on the class."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    n_samples: ClassVar[int] = 4
    default_steps: ClassVar[int] = 40
    primary_metric: ClassVar[str] = "overall"

    def __init__(self, n_samples: int | None = None, **options: Any) -> None:
        if n_samples is not None and n_samples < 1:
            raise ValueError(f"n_samples must be >= 1, got {n_samples}")
        self.samples_per_prompt = n_samples or self.n_samples
        self.options = options

    @abstractmethod
    def prompts(self) -> list[PromptSpec]:
        """The suite's prompts, in a fixed order."""

    @abstractmethod
    def score_samples(
        self, images: Sequence[Image.Image], specs: Sequence[PromptSpec]
    ) -> list[dict[str, Any]]:
        """One row per image (keys at least ``scores`` dict; ``correct`` when it applies)."""

    @abstractmethod
    def summarize(self, rows: Sequence[dict[str, Any]]) -> SuiteResult:
        """Summary metrics of the rows."""

    def score(self, images: Sequence[Image.Image], specs: Sequence[PromptSpec]) -> SuiteResult:
        """Score images and summarize in one go."""
        return self.summarize(self.score_samples(images, specs))
