"""The third stage of an evaluation: score each batch while the next one is produced.

The calling thread produces images batch by batch (generating or loading them); a scoring
thread consumes a queue of batches, scores each one and hands its rows to a recorder, so the model generates batch k + 1 while the
rewards score batch k. A failure on either side stops both and is raised in the caller.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any

from PIL import Image

from nftkit.eval.specs import EvalItem
from nftkit.evaluators.base import Evaluator

_POLL_S = 0.1

Producer = Callable[[Sequence[EvalItem]], list[Image.Image]]
Recorder = Callable[[list[dict[str, Any]]], None]


class _Scorer(threading.Thread):
    """Scores queued batches and records their rows until it reads ``None``."""

    def __init__(
        self, evaluator: Evaluator, record: Recorder, on_scored: Callable[[int], None] | None
    ) -> None:
        super().__init__(name="nftkit-eval-scorer", daemon=True)
        self.evaluator = evaluator
        self.record = record
        self.on_scored = on_scored
        self.jobs: queue.Queue[tuple[Sequence[EvalItem], list[Image.Image]] | None] = queue.Queue(
            maxsize=2
        )
        self.error: BaseException | None = None
        self.stopped = threading.Event()

    def run(self) -> None:
        while not self.stopped.is_set():
            try:
                job = self.jobs.get(timeout=_POLL_S)
            except queue.Empty:
                continue
            if job is None:
                return
            try:
                self._score(*job)
            except BaseException as exc:
                self.error = exc
                return

    def _score(self, items: Sequence[EvalItem], images: list[Image.Image]) -> None:
        rows = self.evaluator.score_samples(images, [it.spec for it in items])
        for item, row in zip(items, rows, strict=True):
            row.update(
                {
                    "prompt_id": item.spec.id,
                    "sample_index": item.sample_index,
                    "seed": item.seed,
                    "prompt": item.spec.text,
                    "image_path": str(item.image_path) if item.image_path else None,
                }
            )
        self.record(rows)
        if self.on_scored is not None:
            self.on_scored(len(rows))

    def put(self, job: tuple[Sequence[EvalItem], list[Image.Image]] | None) -> None:
        """Queue a job, waiting for room; raises the scorer's error if it has failed."""
        while True:
            self.check()
            try:
                self.jobs.put(job, timeout=_POLL_S)
                return
            except queue.Full:
                continue

    def check(self) -> None:
        """Raise the scorer's error, if any."""
        if self.error is not None:
            raise self.error
        if not self.is_alive() and self.jobs.qsize() and not self.stopped.is_set():
            raise RuntimeError("the scoring thread stopped unexpectedly")


def produce_and_score(
    items: Sequence[EvalItem],
    produce: Producer,
    evaluator: Evaluator,
    record: Recorder,
    batch_size: int,
    on_scored: Callable[[int], None] | None = None,
) -> None:
    """Produce images for ``items`` in batches while a thread scores and records them."""
    scorer = _Scorer(evaluator, record, on_scored)
    scorer.start()
    try:
        for start in range(0, len(items), batch_size):
            batch = items[start : start + batch_size]
            scorer.check()
            scorer.put((batch, produce(batch)))
        scorer.put(None)
        while scorer.is_alive():
            scorer.join(timeout=_POLL_S)
        scorer.check()
    except BaseException:
        scorer.stopped.set()
        scorer.join(timeout=60)
        raise
