"""The Evaluator contract: a benchmark suite's prompts, how to score its images, its summary.

An evaluator lists ``PromptSpec`` items (id, text, metadata), says how many images each prompt
gets (``n_samples``), scores generated images into per-image rows (``score_samples``) and turns
rows into summary metrics (``summarize``), each metric with its direction. Keeping rows and
summary apart lets an interrupted evaluation resume from stored rows and lets tests recompute the
summary from the rows.
"""

from __future__ import annotations

import hashlib
import json
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
    default_solver: ClassVar[str] = "dpm2"
    primary_metric: ClassVar[str] = "overall"
    row_info_keys: ClassVar[tuple[str, ...]] = ()
    """Non-score keys of a row (e.g. tag, reason) kept in the stored scores under "info"."""

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

    def settings(self) -> dict[str, Any]:
        """Suite options that change results (part of the run's config hash)."""
        return {}

    def fingerprint(self) -> str:
        """sha256 of the prompt set (ids, texts, metadata), for the run's config hash."""
        data = [[s.id, s.text, s.metadata] for s in self.prompts()]
        text = json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def prompt_line(self, spec: PromptSpec) -> dict[str, Any]:
        """The prompt's line of ``metadata.jsonl`` in the GenEval folder layout."""
        line = dict(spec.metadata)
        line.setdefault("prompt", spec.text)
        return line

    def spec_from_line(self, prompt_id: str, line: dict[str, Any]) -> PromptSpec:
        """The spec of a prompt read back from ``metadata.jsonl`` or a manifest line."""
        return PromptSpec(
            prompt_id, line["prompt"], {k: v for k, v in line.items() if k != "prompt"}
        )

    def result_line(self, row: dict[str, Any], spec: PromptSpec) -> dict[str, Any]:
        """One line of ``results.jsonl`` for a scored image."""
        line = {
            "filename": row.get("image_path"),
            "prompt": spec.text,
            "sample_index": row.get("sample_index"),
            "scores": row["scores"],
        }
        line.update({k: row[k] for k in self.row_info_keys if k in row})
        return line

    def score(self, images: Sequence[Image.Image], specs: Sequence[PromptSpec]) -> SuiteResult:
        """Score images and summarize in one go."""
        return self.summarize(self.score_samples(images, specs))


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def metadata_problems(cls: type[Evaluator]) -> list[str]:
    """What is wrong with an evaluator class's metadata (empty when it is fine); for the registry."""
    from nftkit.train.sampling import SOLVERS

    problems = []
    for key in ("n_samples", "default_steps"):
        if not _positive_int(getattr(cls, key)):
            problems.append(f"{key} must be an integer >= 1, got {getattr(cls, key)!r}")
    if cls.default_solver not in SOLVERS:
        problems.append(
            f"default_solver must be one of {', '.join(SOLVERS)}, got {cls.default_solver!r}"
        )
    if not isinstance(cls.primary_metric, str) or not cls.primary_metric:
        problems.append(f"primary_metric must be a non-empty string, got {cls.primary_metric!r}")
    if not isinstance(cls.description, str):
        problems.append(f"description must be a string, got {cls.description!r}")
    keys = cls.row_info_keys
    if not isinstance(keys, tuple) or not all(isinstance(k, str) for k in keys):
        problems.append(f"row_info_keys must be a tuple of strings, got {keys!r}")
    return problems
