"""The fourth stage of an evaluation: its run in the store; find or start it, record rows, finish.

A run is identified by its config hash (suite, model, sampling settings, prompt-set
fingerprint, suite options and output folder; not the batch size nor the number of
processes). With an output folder, a rerun of the same config continues the latest such run:
its recorded rows count as done. Rows go to the database after every scored batch, so a
killed evaluation loses at most the batches in flight. Several processes share one run: the
main process opens it, the others find it after a barrier.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Sequence
from typing import Any

from nftkit.errors import NftkitError
from nftkit.evaluators.base import Evaluator
from nftkit.train.distributed import Distributed
from nftkit.train.faults import fault_point

INFO_KEY = "info"


def row_to_record(row: dict[str, Any], evaluator: Evaluator) -> dict[str, Any]:
    """A scored row as a store sample (info keys kept under scores["info"])."""
    scores = dict(row["scores"])
    info = {k: row[k] for k in evaluator.row_info_keys if k in row}
    if info:
        scores[INFO_KEY] = info
    return {
        "prompt_id": row["prompt_id"],
        "sample_index": row["sample_index"],
        "seed": row.get("seed"),
        "prompt": row["prompt"],
        "image_path": row.get("image_path"),
        "scores": scores,
        "correct": row.get("correct"),
    }


def record_to_row(record: Any, evaluator: Evaluator) -> dict[str, Any]:
    """A store sample (record or dict) back to the row form that ``summarize`` reads."""
    get = record.get if isinstance(record, dict) else lambda k: getattr(record, k)
    scores = dict(get("scores") or {})
    info = scores.pop(INFO_KEY, {}) if evaluator.row_info_keys else {}
    return {
        "prompt_id": get("prompt_id"),
        "sample_index": get("sample_index"),
        "seed": get("seed"),
        "prompt": get("prompt"),
        "image_path": get("image_path"),
        "correct": get("correct"),
        "scores": scores,
        **info,
    }


class EvalSession:
    """One evaluation's run in the store (or in memory when there is no store)."""

    def __init__(
        self,
        evaluator: Evaluator,
        model: str,
        config: dict[str, Any],
        store: Any | None = None,
        output_dir: str | None = None,
        dist: Distributed | None = None,
    ) -> None:
        self.evaluator = evaluator
        self.model = model
        self.config = config
        self.store = store
        self.output_dir = output_dir
        self.dist = dist or Distributed()
        self.run_id: str | None = None
        self.resumed = False
        self._memory: dict[tuple[str, int], dict[str, Any]] = {}
        self._lock = threading.Lock()
        self._recorded_batches = 0

    def open(self) -> str | None:
        """Find the run to continue (same config, with an output folder) or start one."""
        if self.store is None:
            if self.dist.enabled:
                raise NftkitError("several processes need a results database to share the run")
            return None
        from nftkit.results.values import config_hash

        digest = config_hash(self.config)
        suite = self.evaluator.name
        if self.dist.is_main:
            found = None
            if self.output_dir is not None:
                found = self.store.find_run("eval", self.model, suite, digest)
            if found is not None:
                self.run_id, self.resumed = found.id, True
                self.store.set_status(found.id, "running")
            else:
                self.run_id = self.store.start_run(
                    "eval", self.model, self.config, suite=suite, output_dir=self.output_dir
                )
        self.dist.barrier()
        if not self.dist.is_main:
            found = self.store.find_run("eval", self.model, suite, digest, status="running")
            if found is None:
                raise NftkitError("the main process did not open the evaluation run")
            self.run_id = found.id
        return self.run_id

    def done(self) -> dict[tuple[str, int], dict[str, Any]]:
        """Rows already recorded, by (prompt id, sample index)."""
        if self.store is None or self.run_id is None:
            with self._lock:
                return dict(self._memory)
        records = self.store.samples(self.run_id, self.evaluator.name)
        return {(r.prompt_id, r.sample_index): record_to_row(r, self.evaluator) for r in records}

    def record(self, rows: Sequence[dict[str, Any]]) -> None:
        """Store scored rows (a row already stored for the same image is replaced)."""
        samples = [row_to_record(r, self.evaluator) for r in rows]
        if self.store is not None and self.run_id is not None:
            self.store.add_samples(self.run_id, self.evaluator.name, samples)
            self._recorded_batches += 1
            fault_point("eval-after-batch", self._recorded_batches)  # crash tests (faults.py)
        else:
            with self._lock:
                for s in samples:
                    self._memory[(s["prompt_id"], s["sample_index"])] = record_to_row(
                        s, self.evaluator
                    )

    def rows_for(self, keys: Iterable[tuple[str, int]]) -> list[dict[str, Any]]:
        """The recorded rows of ``keys``, in that order (missing ones raise NftkitError)."""
        done = self.done()
        keys = list(keys)
        missing = [k for k in keys if k not in done]
        if missing:
            raise NftkitError(
                f"{len(missing)} images of the evaluation were not scored (first: prompt "
                f"{missing[0][0]}, sample {missing[0][1]}); rerun with the same --output to finish"
            )
        return [done[k] for k in keys]

    def finish(self, metrics: dict[str, float], higher_is_better: dict[str, bool], n: int) -> None:
        """Log the final metrics and mark the run finished."""
        if self.store is None or self.run_id is None:
            return
        self.store.log_metrics(
            self.run_id, self.evaluator.name, metrics, n=n, higher_is_better=higher_is_better
        )
        self.store.finish_run(self.run_id, status="finished")

    def fail(self, interrupted: bool = False) -> None:
        """Mark the run failed (or interrupted); rows recorded so far stay for a resume."""
        if self.store is None or self.run_id is None:
            return
        with contextlib.suppress(NftkitError):  # the original error matters more
            self.store.finish_run(self.run_id, status="interrupted" if interrupted else "failed")
