"""Runs in the results store: start, status, lookup, deletion, and the provenance they record.

A run records its configuration (canonical JSON and its sha256), the git commit of the
working directory and the versions of the main packages, so a result can be traced back.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import subprocess
import uuid
from collections.abc import Iterable, Mapping
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from nftkit.errors import NftkitError, UsageError
from nftkit.results.database import HEX_RE, StoreBase
from nftkit.results.records import RunRecord
from nftkit.results.schema import (
    RUN_KINDS,
    RUN_STATUSES,
    TERMINAL_STATUSES,
    Metric,
    Run,
    Sample,
    utcnow,
)
from nftkit.results.values import canonical_json, check_choice, check_name

VERSIONED_DISTRIBUTIONS = ("nftkit", "torch", "diffusers", "transformers", "peft")
GIT_TIMEOUT_S = 2.0
SHA_RE = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


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
    return sha if proc.returncode == 0 and SHA_RE.fullmatch(sha) else None


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


class RunsMixin(StoreBase):
    """The runs part of ``ResultsStore``."""

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
        check_choice("run kind", kind, RUN_KINDS)
        check_name("model", model)
        if suite is not None:
            check_name("suite", suite)
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
            if len(rid) != 32 or not HEX_RE.fullmatch(rid):
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
        check_choice("final run status", status, TERMINAL_STATUSES)
        self.set_status(run_id, status)

    def set_status(self, run_id: str, status: str) -> None:
        """Set a run's status; an ending status stamps ``finished_at``, "running" clears it."""
        check_choice("run status", status, RUN_STATUSES)

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
        return self._transact(lambda s: run_record(self._resolve(s, run_id)), write=False)

    def list_runs(self, kind: str | None = None, limit: int | None = 50) -> list[RunRecord]:
        """Runs, newest first, optionally of one kind; ``limit`` None lists all."""
        if kind is not None:
            check_choice("run kind", kind, RUN_KINDS)
        stmt = select(Run).order_by(Run.started_at.desc(), Run.id.desc())
        if kind is not None:
            stmt = stmt.where(Run.kind == kind)
        if limit is not None:
            stmt = stmt.limit(limit)
        return self._transact(lambda s: [run_record(r) for r in s.scalars(stmt)], write=False)

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
            return run_record(run) if run is not None else None

        return self._transact(op, write=False)


def run_record(run: Run) -> RunRecord:
    """The plain record of an ORM run."""
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
