"""Samples in the results store: per-image rows (prompt, seed, image path, scores JSON).

A row written again for the same (prompt id, sample index) replaces the earlier one, so a
resumed evaluation can rewrite the batches it redoes.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from nftkit.errors import NftkitError, UsageError
from nftkit.results.database import IN_CHUNK, StoreBase
from nftkit.results.records import SampleRecord
from nftkit.results.schema import Sample
from nftkit.results.values import check_name, json_default, optional_count, plain
from nftkit.train.faults import fault_point

SAMPLE_KEYS = ("prompt_id", "sample_index", "seed", "prompt", "image_path", "scores", "correct")
REQUIRED_SAMPLE_KEYS = ("prompt_id", "sample_index", "prompt")
ADD_SAMPLES_CALLS = itertools.count(1)  # per process, for the "mid-add-samples" fault


@dataclass(frozen=True)
class SampleRow:
    """A checked sample row, ready to store."""

    prompt_id: str
    sample_index: int
    seed: int | None
    prompt: str
    image_path: str | None
    scores: dict[str, Any]
    correct: bool | None


class SamplesMixin(StoreBase):
    """The samples part of ``ResultsStore``."""

    def add_samples(self, run_id: str, suite: str, rows: Iterable[Mapping[str, Any]]) -> int:
        """Store per-sample rows; a row with an existing (prompt_id, sample_index) replaces it.

        Keys: prompt_id, sample_index, prompt (required); seed, image_path, scores (a JSON
        dict), correct (optional). Returns the number of rows written.
        """
        check_name("suite", suite)
        parsed: dict[tuple[str, int], SampleRow] = {}
        for i, row in enumerate(rows):
            sample = parse_sample(i, row)
            parsed[(sample.prompt_id, sample.sample_index)] = sample  # the last one wins
        if not parsed:
            return 0
        keys = list(parsed)
        call = next(ADD_SAMPLES_CALLS)

        def op(session: Session) -> None:
            run = self._resolve(session, run_id, lock=True)
            existing: dict[tuple[str, int], Sample] = {}
            prompt_ids = sorted({k[0] for k in keys})
            for start in range(0, len(prompt_ids), IN_CHUNK):
                stmt = select(Sample).where(
                    Sample.run_id == run.id,
                    Sample.suite == suite,
                    Sample.prompt_id.in_(prompt_ids[start : start + IN_CHUNK]),
                )
                for row in session.scalars(stmt):
                    existing[(row.prompt_id, row.sample_index)] = row
            for key in keys:
                sample = parsed[key]
                target = existing.get(key)
                if target is None:
                    target = Sample(run_id=run.id, suite=suite)
                    session.add(target)
                target.prompt_id = sample.prompt_id
                target.sample_index = sample.sample_index
                target.seed = sample.seed
                target.prompt = sample.prompt
                target.image_path = sample.image_path
                target.scores = sample.scores
                target.correct = sample.correct
            session.flush()
            fault_point("mid-add-samples", call)  # crash tests only (nftkit/train/faults.py)

        self._transact(op, write=True)
        return len(keys)

    def samples(self, run_id: str, suite: str | None = None) -> list[SampleRecord]:
        """A run's samples ordered by suite, prompt id and sample index."""

        def op(session: Session) -> list[SampleRecord]:
            run = self._resolve(session, run_id)
            stmt = select(Sample).where(Sample.run_id == run.id)
            if suite is not None:
                stmt = stmt.where(Sample.suite == suite)
            stmt = stmt.order_by(Sample.suite, Sample.prompt_id, Sample.sample_index)
            return [sample_record(s) for s in session.scalars(stmt)]

        return self._transact(op, write=False)


def sample_record(s: Sample) -> SampleRecord:
    """The plain record of an ORM sample."""
    return SampleRecord(
        run_id=s.run_id,
        suite=s.suite,
        prompt_id=s.prompt_id,
        sample_index=s.sample_index,
        seed=s.seed,
        prompt=s.prompt,
        image_path=s.image_path,
        scores=s.scores,
        correct=s.correct,
    )


def parse_sample(index: int, row: Mapping[str, Any]) -> SampleRow:
    """Check one sample row and bring it to storable form (UsageError naming the row)."""
    if not isinstance(row, Mapping):
        raise UsageError(f"sample row {index} must be a dict, got {type(row).__name__}")
    unknown = sorted(set(row) - set(SAMPLE_KEYS))
    missing = [k for k in REQUIRED_SAMPLE_KEYS if row.get(k) is None]
    if unknown or missing:
        problems = []
        if missing:
            problems.append(f"missing {', '.join(missing)}")
        if unknown:
            problems.append(f"unknown keys {', '.join(map(str, unknown))}")
        raise UsageError(
            f"sample row {index}: {'; '.join(problems)} (keys: {', '.join(SAMPLE_KEYS)})"
        )
    prompt_id = plain(row["prompt_id"])
    if isinstance(prompt_id, bool) or not isinstance(prompt_id, str | int):
        raise UsageError(f"sample row {index}: prompt_id must be a string, got {prompt_id!r}")
    where = f"sample row {index} (prompt_id {prompt_id!r})"
    sample_index = optional_count(f"{where}: sample_index", row["sample_index"])
    assert sample_index is not None
    seed = plain(row.get("seed"))
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise UsageError(f"{where}: seed must be an integer or None, got {seed!r}")
    prompt = row["prompt"]
    if not isinstance(prompt, str):
        raise UsageError(f"{where}: prompt must be a string, got {type(prompt).__name__}")
    image_path = row.get("image_path")
    if image_path is not None:
        if not isinstance(image_path, str | os.PathLike):
            raise UsageError(f"{where}: image_path must be a path or None, got {image_path!r}")
        image_path = os.fspath(image_path)
    scores = row.get("scores")
    scores = {} if scores is None else scores
    if not isinstance(scores, Mapping):
        raise UsageError(f"{where}: scores must be a dict, got {type(scores).__name__}")
    try:
        scores_json = json.dumps(dict(scores), default=json_default, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise NftkitError(f"{where}: scores are not storable as JSON ({exc})") from None
    correct = plain(row.get("correct"))
    if correct is not None and not isinstance(correct, bool):
        raise UsageError(f"{where}: correct must be True, False or None, got {correct!r}")
    return SampleRow(
        prompt_id=str(prompt_id),
        sample_index=sample_index,
        seed=seed,
        prompt=prompt,
        image_path=image_path,
        scores=json.loads(scores_json),
        correct=correct,
    )
