"""The last stage of an evaluation: its outcome (``EvalReport``) and the ``results.jsonl`` file."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nftkit.eval import layout
from nftkit.eval.specs import EvalItem
from nftkit.evaluators.base import Evaluator, SuiteResult


@dataclass
class EvalReport:
    """The outcome of one evaluation, as ``nftkit eval --json`` prints it."""

    run_id: str | None
    suite: str
    model: str
    n_images: int
    metrics: dict[str, float]
    result: SuiteResult
    seconds: float = 0.0
    counts: dict[str, int] = field(default_factory=dict)
    output_dir: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The CLI's JSON object."""
        return {
            "run_id": self.run_id,
            "suite": self.suite,
            "model": self.model,
            "n_images": self.n_images,
            "metrics": self.metrics,
        }


def write_results_file(
    output: Path, evaluator: Evaluator, items: Sequence[EvalItem], rows: Sequence[dict[str, Any]]
) -> None:
    """Write ``output/results.jsonl``: one line per scored row, in the rows' order."""
    specs = {it.key: it.spec for it in items}
    lines = [evaluator.result_line(r, specs[(r["prompt_id"], r["sample_index"])]) for r in rows]
    layout.write_results(output / layout.RESULTS_FILE, lines)
