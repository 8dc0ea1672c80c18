"""Metrics in the results store: log a run's values (final or per step), read them, rank runs.

The leaderboard is a query over final metrics: per (suite, model) the latest finished eval
run, ordered by the suite's "overall" metric when it reports one.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from nftkit.errors import UsageError
from nftkit.results.database import IN_CHUNK, StoreBase
from nftkit.results.records import OVERALL, LeaderboardRow, MetricRecord
from nftkit.results.schema import Metric, Run, utcnow
from nftkit.results.values import check_name, finite, optional_count


class MetricsMixin(StoreBase):
    """The metrics (and leaderboard) part of ``ResultsStore``."""

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
        check_name("suite", suite)
        step = optional_count("step", step)
        n = optional_count("n", n)
        values: dict[str, tuple[float, bool]] = {}
        for name, raw in metrics.items():
            check_name("metric name", name)
            value = finite(name, suite, raw)
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
            return [metric_record(m) for m in session.scalars(stmt)]

        records = self._transact(op, write=False)
        return sorted(records, key=lambda m: (m.suite, m.metric, m.step is None, m.step or 0))

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
            for start in range(0, len(run_ids), IN_CHUNK):
                stmt = select(Metric).where(
                    Metric.run_id.in_(run_ids[start : start + IN_CHUNK]), Metric.step.is_(None)
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


def metric_record(m: Metric) -> MetricRecord:
    """The plain record of an ORM metric."""
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
