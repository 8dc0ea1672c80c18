"""Plain, immutable records that the results store returns (never ORM objects)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

OVERALL = "overall"
"""The metric that orders a suite's leaderboard when the suite reports it."""


@dataclass(frozen=True)
class RunRecord:
    """A run as stored: identity, configuration, provenance and status."""

    id: str
    kind: str
    model: str
    suite: str | None
    config: dict[str, Any]
    config_hash: str
    git_sha: str | None
    versions: dict[str, Any]
    status: str
    started_at: datetime
    finished_at: datetime | None
    output_dir: str | None

    @property
    def short_id(self) -> str:
        """The first 8 hex digits of the id, enough to name the run on the command line."""
        return self.id[:8]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (times as ISO 8601 strings)."""
        data = asdict(self)
        data["started_at"] = self.started_at.isoformat()
        data["finished_at"] = self.finished_at.isoformat() if self.finished_at else None
        return data


@dataclass(frozen=True)
class MetricRecord:
    """One metric value of a run; ``step`` None is the final value."""

    run_id: str
    suite: str
    metric: str
    value: float
    n: int | None
    step: int | None
    higher_is_better: bool
    created_at: datetime


@dataclass(frozen=True)
class SampleRecord:
    """One generated sample of a run with its scores."""

    run_id: str
    suite: str
    prompt_id: str
    sample_index: int
    seed: int | None
    prompt: str
    image_path: str | None
    scores: dict[str, Any]
    correct: bool | None


@dataclass(frozen=True)
class LeaderboardRow:
    """The latest finished eval run of one model on one suite, with its final metrics."""

    suite: str
    model: str
    run_id: str
    finished_at: datetime | None
    metrics: dict[str, float]
    higher_is_better: dict[str, bool]
    n: int | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form (time as ISO 8601 string, floats at full precision)."""
        return {
            "suite": self.suite,
            "model": self.model,
            "run_id": self.run_id,
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "n": self.n,
            "metrics": dict(self.metrics),
            "higher_is_better": dict(self.higher_is_better),
        }
