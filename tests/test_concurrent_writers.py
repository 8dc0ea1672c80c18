"""Four processes write runs, metrics and per-sample rows into one database at once; none is lost.

The writers open a database that does not exist yet (so they also race to create the schema),
wait on a barrier and then write as fast as they can: SQLite relies on WAL, the busy timeout and
the store's retry with backoff on "database is locked"; PostgreSQL on its row locks and the
advisory lock around migrations.
"""

from __future__ import annotations

import multiprocessing as mp
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nftkit.results.store import ResultsStore

WRITERS = 4
RUNS_PER_WRITER = 6
BATCHES_PER_RUN = 4
SAMPLES_PER_BATCH = 10
TIMEOUT_S = 120


def _writer(url: str, worker: int, barrier: Any, queue: Any) -> None:
    """One writer process: open the store, then write its runs; report ids or the error."""
    try:
        barrier.wait(timeout=TIMEOUT_S)
        with ResultsStore(url) as store:
            ids = []
            for r in range(RUNS_PER_WRITER):
                rid = store.start_run(
                    "eval", f"model-{worker}", {"worker": worker, "run": r}, suite="concurrent"
                )
                for b in range(BATCHES_PER_RUN):
                    rows = [
                        {
                            "prompt_id": f"p{b:02d}",
                            "sample_index": i,
                            "seed": i,
                            "prompt": f"prompt {worker} {r} {b}",
                            "scores": {"x": worker + i / 100},
                        }
                        for i in range(SAMPLES_PER_BATCH)
                    ]
                    store.add_samples(rid, "concurrent", rows)
                    store.log_metrics(rid, "concurrent", {"running": float(b)}, step=b)
                store.log_metrics(rid, "concurrent", {"overall": float(worker)})
                store.finish_run(rid)
                ids.append(rid)
        queue.put((worker, ids, None))
    except BaseException as exc:  # reported to the parent, which fails the test
        queue.put((worker, [], f"{type(exc).__name__}: {exc}"))


def _write_concurrently(url: str) -> list[str]:
    """Run the writers; returns every run id they created (fails on any writer error)."""
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(WRITERS)
    queue = ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(url, w, barrier, queue)) for w in range(WRITERS)]
    for proc in procs:
        proc.start()
    results = [queue.get(timeout=TIMEOUT_S) for _ in procs]
    for proc in procs:
        proc.join(timeout=TIMEOUT_S)
    assert [p.exitcode for p in procs] == [0] * WRITERS
    errors = [f"writer {w}: {e}" for w, _, e in results if e]
    assert not errors, errors
    return [rid for _, ids, _ in results for rid in ids]


def _check_nothing_lost(url: str, run_ids: list[str]) -> None:
    assert len(set(run_ids)) == WRITERS * RUNS_PER_WRITER
    with ResultsStore(url) as store:
        total = 0
        for rid in run_ids:
            run = store.get_run(rid)
            assert run.status == "finished"
            samples = store.samples(rid)
            assert len(samples) == BATCHES_PER_RUN * SAMPLES_PER_BATCH
            worker = int(run.config["worker"])
            assert all(s.scores["x"] == worker + s.sample_index / 100 for s in samples)
            assert len(store.metrics(rid)) == BATCHES_PER_RUN + 1
            total += len(samples)
    assert total == WRITERS * RUNS_PER_WRITER * BATCHES_PER_RUN * SAMPLES_PER_BATCH  # 960


def test_four_processes_share_one_sqlite_file(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    run_ids = _write_concurrently(url)
    _check_nothing_lost(url, run_ids)
    with ResultsStore(url) as store:
        assert len(store.list_runs(limit=None)) == WRITERS * RUNS_PER_WRITER


@pytest.fixture
def fresh_pg_database(pg_url: str) -> Iterator[str]:
    """A new, empty PostgreSQL database on the test server (dropped afterwards).

    Falls back to the configured database itself where the user may not create databases (the
    rows are still counted; only the race to create the schema is not exercised then).
    """
    import psycopg
    from sqlalchemy.engine import make_url

    base = make_url(pg_url)
    name = f"nftkit_w_{uuid.uuid4().hex[:10]}"
    dsn = base.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.errors.InsufficientPrivilege:
        yield pg_url
        return
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_four_processes_share_one_postgresql_database(fresh_pg_database: str) -> None:
    run_ids = _write_concurrently(fresh_pg_database)
    _check_nothing_lost(fresh_pg_database, run_ids)
