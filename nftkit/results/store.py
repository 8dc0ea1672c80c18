"""The results store: runs, metrics and samples in a SQLAlchemy database, and the leaderboard.

Every method opens its own short transaction and returns plain records (``records.py``), so a
store can be shared by threads and used from several processes on one SQLite file. Opening a
store migrates its database to the newest schema.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import platform
import re
import subprocess
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Self, TypeVar

from sqlalchemy import Select, delete, select
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.orm import Session

from nftkit.errors import NftkitError, UsageError
from nftkit.results import migrate
from nftkit.results.engine import (
    WRITE_OPTION,
    connection_error,
    is_locked_error,
    make_engine,
    mask_url,
    normalize_url,
)
from nftkit.results.records import OVERALL, LeaderboardRow, MetricRecord, RunRecord, SampleRecord
from nftkit.results.schema import (
    RUN_KINDS,
    RUN_STATUSES,
    TERMINAL_STATUSES,
    Metric,
    Run,
    Sample,
    utcnow,
)
from nftkit.train.faults import fault_point

DEFAULT_DB_URL = "sqlite:///nftkit.db"
DB_ENV = "NFTKIT_DB"

VERSIONED_DISTRIBUTIONS = ("nftkit", "torch", "diffusers", "transformers", "peft")
MIN_PREFIX_LEN = 4
LOCK_RETRIES = 5
GIT_TIMEOUT_S = 2.0
SAMPLE_KEYS = ("prompt_id", "sample_index", "seed", "prompt", "image_path", "scores", "correct")
_REQUIRED_SAMPLE_KEYS = ("prompt_id", "sample_index", "prompt")
_IN_CHUNK = 500
_ADD_SAMPLES_CALLS = itertools.count(1)  # per process, for the "mid-add-samples" fault
_HEX_RE = re.compile(r"[0-9a-f]+")
_SHA_RE = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")

T = TypeVar("T")


def database_url(explicit: str | None = None) -> str:
    """The results database URL: ``explicit`` (--db), else $NFTKIT_DB, else ``./nftkit.db``.

    A bare filesystem path is turned into a SQLite URL; ``postgresql://`` means psycopg 3.
    """
    if explicit is not None:
        return normalize_url(explicit)
    env = os.environ.get(DB_ENV, "").strip()
    return normalize_url(env) if env else DEFAULT_DB_URL


def canonical_json(value: Any) -> str:
    """Key-sorted, compact JSON of ``value``; NftkitError when it is not plain JSON data."""
    try:
        return json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        raise NftkitError(f"not storable as JSON: {exc}") from None


def config_hash(config: Mapping[str, Any]) -> str:
    """sha256 hex digest of the canonical JSON of a run configuration."""
    return hashlib.sha256(canonical_json(dict(config)).encode("utf-8")).hexdigest()


def git_sha(cwd: str | os.PathLike[str] | None = None) -> str | None:
    """HEAD commit of the git repository around ``cwd`` (default: the working directory)."""
    try:
        proc = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    sha = proc.stdout.strip()
    return sha if proc.returncode == 0 and _SHA_RE.fullmatch(sha) else None


def package_versions() -> dict[str, str | None]:
    """Python's version and those of nftkit and its main backends (None when not installed).

    Read from installed metadata: nothing is imported.
    """
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for dist in VERSIONED_DISTRIBUTIONS:
        try:
            versions[dist] = version(dist)
        except PackageNotFoundError:
            versions[dist] = None
    return versions


@dataclass(frozen=True)
class _SampleRow:
    prompt_id: str
    sample_index: int
    seed: int | None
    prompt: str
    image_path: str | None
    scores: dict[str, Any]
    correct: bool | None


class ResultsStore:
    """Runs, metrics and samples in the database at ``url`` (SQLAlchemy URL or SQLite path).

    Opening migrates the database to the newest schema. An unreachable database or a bad URL
    raises NftkitError naming the URL with its password masked.
    """

    def __init__(self, url: str | os.PathLike[str]) -> None:
        self._url = normalize_url(os.fspath(url))
        self._engine = make_engine(self._url)
        self._write_engine = self._engine.execution_options(**{WRITE_OPTION: True})
        self._sqlite = self._engine.dialect.name == "sqlite"
        try:
            migrate.upgrade(self._engine)
        except BaseException:
            self._engine.dispose()
            raise

    @property
    def url(self) -> str:
        """The database URL with its password masked."""
        return mask_url(self._engine.url)

    def close(self) -> None:
        """Release pooled connections; the store must not be used afterwards."""
        self._engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ResultsStore({self.url!r})"

    # -- runs -----------------------------------------------------------------------------

    def start_run(
        self,
        kind: str,
        model: str,
        config: Mapping[str, Any],
        suite: str | None = None,
        output_dir: str | os.PathLike[str] | None = None,
        run_id: str | None = None,
    ) -> str:
        """Record a new run with status "running"; returns its 32-hex id.

        Also records the git sha of the working directory's repository (if any) and the
        versions of python, nftkit, torch, diffusers, transformers and peft.
        """
        _check_choice("run kind", kind, RUN_KINDS)
        _check_name("model", model)
        if suite is not None:
            _check_name("suite", suite)
        if not isinstance(config, Mapping):
            raise UsageError(f"run config must be a dict, got {type(config).__name__}")
        try:
            text = canonical_json(dict(config))
        except NftkitError as exc:
            raise NftkitError(f"run config is {exc}") from None
        if run_id is None:
            rid = uuid.uuid4().hex
        else:
            rid = run_id.strip().lower()
            if len(rid) != 32 or not _HEX_RE.fullmatch(rid):
                raise UsageError(f"bad run id {run_id!r}: expected 32 hex digits")
        fields: dict[str, Any] = dict(
            id=rid,
            kind=kind,
            model=model,
            suite=suite,
            config=json.loads(text),
            config_hash=hashlib.sha256(text.encode("utf-8")).hexdigest(),
            git_sha=git_sha(),
            versions=package_versions(),
            status="running",
            started_at=utcnow(),
            finished_at=None,
            output_dir=os.fspath(output_dir) if output_dir is not None else None,
        )

        def op(session: Session) -> None:
            if session.get(Run, rid) is not None:
                raise NftkitError(f"run {rid} already exists in {self.url}")
            session.add(Run(**fields))

        self._transact(op, write=True)
        return rid

    def finish_run(self, run_id: str, status: str = "finished") -> None:
        """Mark a run as ended ("finished", "failed" or "interrupted") and stamp its end time."""
        _check_choice("final run status", status, TERMINAL_STATUSES)
        self.set_status(run_id, status)

    def set_status(self, run_id: str, status: str) -> None:
        """Set a run's status; an ending status stamps ``finished_at``, "running" clears it."""
        _check_choice("run status", status, RUN_STATUSES)

        def op(session: Session) -> None:
            run = self._resolve(session, run_id, lock=True)
            run.status = status
            run.finished_at = None if status == "running" else utcnow()

        self._transact(op, write=True)

    def delete_run(self, run_id: str) -> None:
        """Delete a run with its metrics and samples."""

        def op(session: Session) -> None:
            run = self._resolve(session, run_id, lock=True)
            rid = run.id
            session.expunge(run)
            session.execute(delete(Metric).where(Metric.run_id == rid))
            session.execute(delete(Sample).where(Sample.run_id == rid))
            session.execute(delete(Run).where(Run.id == rid))

        self._transact(op, write=True)

    def get_run(self, run_id: str) -> RunRecord:
        """The run with this id, or with this unique id prefix (at least 4 hex digits)."""
        return self._transact(lambda s: _run_record(self._resolve(s, run_id)), write=False)

    def list_runs(self, kind: str | None = None, limit: int | None = 50) -> list[RunRecord]:
        """Runs, newest first, optionally of one kind; ``limit`` None lists all."""
        if kind is not None:
            _check_choice("run kind", kind, RUN_KINDS)
        stmt = select(Run).order_by(Run.started_at.desc(), Run.id.desc())
        if kind is not None:
            stmt = stmt.where(Run.kind == kind)
        if limit is not None:
            stmt = stmt.limit(limit)
        return self._transact(lambda s: [_run_record(r) for r in s.scalars(stmt)], write=False)

    def find_run(
        self,
        kind: str,
        model: str,
        suite: str | None,
        config_hash: str,
        status: str | Iterable[str] | None = None,
    ) -> RunRecord | None:
        """The latest run with this kind, model, suite and config hash (any status by default).

        Used to resume an evaluation: the caller looks at the returned run's status.
        """
        stmt = select(Run).where(
            Run.kind == kind, Run.model == model, Run.config_hash == config_hash
        )
        stmt = stmt.where(Run.suite.is_(None) if suite is None else Run.suite == suite)
        if status is not None:
            statuses = [status] if isinstance(status, str) else list(status)
            stmt = stmt.where(Run.status.in_(statuses))
        stmt = stmt.order_by(Run.started_at.desc(), Run.id.desc()).limit(1)

        def op(session: Session) -> RunRecord | None:
            run = session.scalars(stmt).first()
            return _run_record(run) if run is not None else None

        return self._transact(op, write=False)

    # -- metrics --------------------------------------------------------------------------

    def log_metrics(
        self,
        run_id: str,
        suite: str,
        metrics: Mapping[str, float],
        *,
        step: int | None = None,
        n: int | None = None,
        higher_is_better: Mapping[str, bool] | bool = True,
    ) -> None:
        """Store metric values of a run; ``step`` None marks final values.

        A value logged again for the same (suite, metric, step) replaces the earlier one.
        ``higher_is_better`` is one direction for all metrics or a dict naming each of them.
        Non-finite values raise NftkitError naming the metric.
        """
        _check_name("suite", suite)
        step = _optional_count("step", step)
        n = _optional_count("n", n)
        values: dict[str, tuple[float, bool]] = {}
        for name, raw in metrics.items():
            _check_name("metric name", name)
            value = _finite(name, suite, raw)
            if isinstance(higher_is_better, bool):
                direction = higher_is_better
            elif name in higher_is_better:
                direction = bool(higher_is_better[name])
            else:
                raise UsageError(
                    f"higher_is_better has no entry for metric {name!r}: give a bool for every "
                    "metric, or one bool for all"
                )
            values[name] = (value, direction)
        if not values:
            return

        def op(session: Session) -> None:
            run = self._resolve(session, run_id, lock=True)
            stmt = select(Metric).where(
                Metric.run_id == run.id,
                Metric.suite == suite,
                Metric.metric.in_(list(values)),
                Metric.step.is_(None) if step is None else Metric.step == step,
            )
            existing: dict[str, Metric] = {}
            for row in session.scalars(stmt.order_by(Metric.id)):
                if row.metric in existing:  # a duplicate final row: keep one
                    session.delete(row)
                else:
                    existing[row.metric] = row
            now = utcnow()
            for name, (value, direction) in values.items():
                row = existing.get(name)
                if row is None:
                    session.add(
                        Metric(
                            run_id=run.id,
                            suite=suite,
                            metric=name,
                            value=value,
                            n=n,
                            step=step,
                            higher_is_better=direction,
                            created_at=now,
                        )
                    )
                else:
                    row.value = value
                    row.n = n
                    row.higher_is_better = direction
                    row.created_at = now

        self._transact(op, write=True)

    def metrics(
        self, run_id: str, suite: str | None = None, final_only: bool = False
    ) -> list[MetricRecord]:
        """A run's metrics ordered by suite, metric and step (final values last)."""

        def op(session: Session) -> list[MetricRecord]:
            run = self._resolve(session, run_id)
            stmt = select(Metric).where(Metric.run_id == run.id)
            if suite is not None:
                stmt = stmt.where(Metric.suite == suite)
            if final_only:
                stmt = stmt.where(Metric.step.is_(None))
            return [_metric_record(m) for m in session.scalars(stmt)]

        records = self._transact(op, write=False)
        return sorted(records, key=lambda m: (m.suite, m.metric, m.step is None, m.step or 0))

    # -- samples --------------------------------------------------------------------------

    def add_samples(self, run_id: str, suite: str, rows: Iterable[Mapping[str, Any]]) -> int:
        """Store per-sample rows; a row with an existing (prompt_id, sample_index) replaces it.

        Keys: prompt_id, sample_index, prompt (required); seed, image_path, scores (a JSON
        dict), correct (optional). Returns the number of rows written.
        """
        _check_name("suite", suite)
        parsed: dict[tuple[str, int], _SampleRow] = {}
        for i, row in enumerate(rows):
            sample = _parse_sample(i, row)
            parsed[(sample.prompt_id, sample.sample_index)] = sample  # the last one wins
        if not parsed:
            return 0
        keys = list(parsed)
        call = next(_ADD_SAMPLES_CALLS)

        def op(session: Session) -> None:
            run = self._resolve(session, run_id, lock=True)
            existing: dict[tuple[str, int], Sample] = {}
            prompt_ids = sorted({k[0] for k in keys})
            for start in range(0, len(prompt_ids), _IN_CHUNK):
                stmt = select(Sample).where(
                    Sample.run_id == run.id,
                    Sample.suite == suite,
                    Sample.prompt_id.in_(prompt_ids[start : start + _IN_CHUNK]),
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
            return [_sample_record(s) for s in session.scalars(stmt)]

        return self._transact(op, write=False)

    # -- leaderboard ----------------------------------------------------------------------

    def leaderboard(self, suite: str | None = None) -> list[LeaderboardRow]:
        """Per (suite, model): the latest finished eval run and its final metrics.

        Rows are grouped by suite; within a suite they are ordered by the "overall" metric
        (best first) when reported, otherwise by model name.
        """
        candidates: Select[Any] = (
            select(Metric.suite, Run.model, Run.id, Run.finished_at, Run.started_at)
            .join(Run, Run.id == Metric.run_id)
            .where(Run.kind == "eval", Run.status == "finished", Metric.step.is_(None))
            .distinct()
        )
        if suite is not None:
            candidates = candidates.where(Metric.suite == suite)

        def op(session: Session) -> list[LeaderboardRow]:
            latest: dict[tuple[str, str], tuple[datetime, datetime, str, datetime | None]] = {}
            for m_suite, model, rid, finished_at, started_at in session.execute(candidates):
                rank = (finished_at or started_at, started_at, rid, finished_at)
                key = (m_suite, model)
                if key not in latest or rank[:3] > latest[key][:3]:
                    latest[key] = rank
            wanted = {(rid, m_suite) for (m_suite, _), (_, _, rid, _) in latest.items()}
            finals: dict[tuple[str, str], list[Metric]] = {}
            run_ids = sorted({rid for rid, _ in wanted})
            for start in range(0, len(run_ids), _IN_CHUNK):
                stmt = select(Metric).where(
                    Metric.run_id.in_(run_ids[start : start + _IN_CHUNK]), Metric.step.is_(None)
                )
                for m in session.scalars(stmt.order_by(Metric.id)):
                    if (m.run_id, m.suite) in wanted:
                        finals.setdefault((m.run_id, m.suite), []).append(m)
            rows = []
            for (m_suite, model), (_, _, rid, finished_at) in latest.items():
                final = sorted(
                    finals.get((rid, m_suite), []), key=lambda m: (m.metric != OVERALL, m.metric)
                )
                rows.append(
                    LeaderboardRow(
                        suite=m_suite,
                        model=model,
                        run_id=rid,
                        finished_at=finished_at,
                        metrics={m.metric: m.value for m in final},
                        higher_is_better={m.metric: m.higher_is_better for m in final},
                        n=_leaderboard_n(final),
                    )
                )
            return rows

        return sorted(self._transact(op, write=False), key=_leaderboard_key)

    # -- internals ------------------------------------------------------------------------

    def _transact(self, fn: Callable[[Session], T], *, write: bool) -> T:
        """Run ``fn`` in one transaction; retry SQLite "database is locked" with backoff."""
        engine = self._write_engine if write else self._engine
        delay = 0.05
        for attempt in range(LOCK_RETRIES + 1):
            try:
                with Session(engine, expire_on_commit=False) as session, session.begin():
                    return fn(session)
            except OperationalError as exc:
                if self._sqlite and is_locked_error(exc):
                    if attempt < LOCK_RETRIES:
                        time.sleep(delay)
                        delay *= 2
                        continue
                    raise NftkitError(
                        f"results database {self.url} stayed locked by another writer; "
                        "try again when the other nftkit process is done"
                    ) from None
                raise connection_error(self._engine.url, exc) from None
            except InterfaceError as exc:
                raise connection_error(self._engine.url, exc) from None
            except IntegrityError as exc:
                raise NftkitError(
                    f"results database {self.url} refused the write: {_first_line(exc.orig)}"
                ) from None
            except DBAPIError as exc:
                raise NftkitError(
                    f"results database {self.url} failed: {_first_line(exc.orig)}"
                ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _resolve(self, session: Session, run_id: str, *, lock: bool = False) -> Run:
        """The Run for a full id or a unique prefix; ``lock`` takes a row lock (PostgreSQL)."""
        key = run_id.strip().lower() if isinstance(run_id, str) else ""
        if not key or not _HEX_RE.fullmatch(key) or len(key) > 32:
            raise UsageError(f"bad run id {run_id!r}: expected up to 32 hex digits")
        if len(key) == 32:
            run = session.get(Run, key, with_for_update=lock)
            if run is None:
                raise NftkitError(f"no run {key} in {self.url}")
            return run
        if len(key) < MIN_PREFIX_LEN:
            raise UsageError(
                f"run id prefix {run_id!r} is too short: give at least {MIN_PREFIX_LEN} hex digits"
            )
        ids = list(session.scalars(select(Run.id).where(Run.id.startswith(key)).limit(5)))
        if not ids:
            raise NftkitError(f"no run with id starting {key!r} in {self.url}")
        if len(ids) > 1:
            shown = ", ".join(i[:12] for i in ids[:4])
            raise UsageError(
                f"run id prefix {key!r} is ambiguous (matches {shown}...): give more digits"
            )
        run = session.get(Run, ids[0], with_for_update=lock)
        assert run is not None
        return run


def _run_record(run: Run) -> RunRecord:
    return RunRecord(
        id=run.id,
        kind=run.kind,
        model=run.model,
        suite=run.suite,
        config=run.config,
        config_hash=run.config_hash,
        git_sha=run.git_sha,
        versions=run.versions,
        status=run.status,
        started_at=run.started_at,
        finished_at=run.finished_at,
        output_dir=run.output_dir,
    )


def _metric_record(m: Metric) -> MetricRecord:
    return MetricRecord(
        run_id=m.run_id,
        suite=m.suite,
        metric=m.metric,
        value=m.value,
        n=m.n,
        step=m.step,
        higher_is_better=m.higher_is_better,
        created_at=m.created_at,
    )


def _sample_record(s: Sample) -> SampleRecord:
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


def _leaderboard_n(final: list[Metric]) -> int | None:
    for m in final:
        if m.metric == OVERALL and m.n is not None:
            return m.n
    counts = [m.n for m in final if m.n is not None]
    return max(counts) if counts else None


def _leaderboard_key(row: LeaderboardRow) -> tuple[Any, ...]:
    if OVERALL in row.metrics:
        value = row.metrics[OVERALL]
        best_first = -value if row.higher_is_better.get(OVERALL, True) else value
        return (row.suite, 0, best_first, row.model)
    return (row.suite, 1, 0.0, row.model)


def _check_choice(what: str, value: object, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UsageError(f"unknown {what} {value!r}: choose one of {', '.join(choices)}")


def _check_name(what: str, value: object) -> None:
    if not isinstance(value, str) or not value.strip():
        raise UsageError(f"{what} must be a non-empty string, got {value!r}")


def _plain(value: Any) -> Any:
    """numpy / torch scalars to Python scalars; everything else unchanged."""
    if not isinstance(value, str | bytes | int | float | bool) and callable(
        getattr(value, "item", None)
    ):
        try:
            return value.item()
        except (TypeError, ValueError):
            return value
    return value


def _optional_count(what: str, value: Any) -> int | None:
    value = _plain(value)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UsageError(f"{what} must be a non-negative integer or None, got {value!r}")
    return value


def _finite(name: str, suite: str, raw: Any) -> float:
    raw = _plain(raw)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise NftkitError(f"metric {name!r} of suite {suite!r} is not a number: {raw!r}") from None
    if not math.isfinite(value):
        raise NftkitError(
            f"metric {name!r} of suite {suite!r} is {value}: only finite values can be stored"
        )
    return value


def _json_default(value: Any) -> Any:
    plain = _plain(value)
    if plain is not value:
        return plain
    if callable(getattr(value, "tolist", None)):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def _parse_sample(index: int, row: Mapping[str, Any]) -> _SampleRow:
    if not isinstance(row, Mapping):
        raise UsageError(f"sample row {index} must be a dict, got {type(row).__name__}")
    unknown = sorted(set(row) - set(SAMPLE_KEYS))
    missing = [k for k in _REQUIRED_SAMPLE_KEYS if row.get(k) is None]
    if unknown or missing:
        problems = []
        if missing:
            problems.append(f"missing {', '.join(missing)}")
        if unknown:
            problems.append(f"unknown keys {', '.join(map(str, unknown))}")
        raise UsageError(
            f"sample row {index}: {'; '.join(problems)} (keys: {', '.join(SAMPLE_KEYS)})"
        )
    prompt_id = _plain(row["prompt_id"])
    if isinstance(prompt_id, bool) or not isinstance(prompt_id, str | int):
        raise UsageError(f"sample row {index}: prompt_id must be a string, got {prompt_id!r}")
    where = f"sample row {index} (prompt_id {prompt_id!r})"
    sample_index = _optional_count(f"{where}: sample_index", row["sample_index"])
    assert sample_index is not None
    seed = _plain(row.get("seed"))
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
        scores_json = json.dumps(dict(scores), default=_json_default, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise NftkitError(f"{where}: scores are not storable as JSON ({exc})") from None
    correct = _plain(row.get("correct"))
    if correct is not None and not isinstance(correct, bool):
        raise UsageError(f"{where}: correct must be True, False or None, got {correct!r}")
    return _SampleRow(
        prompt_id=str(prompt_id),
        sample_index=sample_index,
        seed=seed,
        prompt=prompt,
        image_path=image_path,
        scores=json.loads(scores_json),
        correct=correct,
    )


def _first_line(exc: object) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
