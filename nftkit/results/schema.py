"""SQLAlchemy models of the results database: runs, their metrics and their per-sample rows.

The schema itself is created and evolved by the Alembic migrations in
``nftkit/results/migrations``; these models must stay in step with them (a test compares the
two). Times are stored as UTC and always come back timezone-aware.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

RUN_KINDS = ("train", "eval", "score")
RUN_STATUSES = ("running", "finished", "failed", "interrupted")
TERMINAL_STATUSES = ("finished", "failed", "interrupted")

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """The current time as a timezone-aware UTC datetime."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC; naive datetimes are refused, results are UTC-aware."""

    impl = DateTime(timezone=True)
    cache_ok = True

    @property
    def python_type(self) -> type[datetime]:
        return datetime

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass a timezone-aware time")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":  # SQLite has no time zones: store naive UTC
            value = value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    """Declarative base of the results models."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 (SQLAlchemy reads this class attribute)
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
    }


class Run(Base):
    """One training, evaluation or scoring run."""

    __tablename__ = "runs"
    __table_args__ = (Index(None, "kind", "model", "suite"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    model: Mapped[str] = mapped_column(String(512))
    suite: Mapped[str | None] = mapped_column(String(255))
    config: Mapped[dict[str, Any]]
    config_hash: Mapped[str] = mapped_column(String(64))
    git_sha: Mapped[str | None] = mapped_column(String(64))
    versions: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    output_dir: Mapped[str | None] = mapped_column(Text)


class Metric(Base):
    """A metric value of a run; ``step`` None marks the final value."""

    __tablename__ = "metrics"
    __table_args__ = (
        UniqueConstraint("run_id", "suite", "metric", "step"),
        Index(None, "run_id"),
        Index(None, "suite", "metric"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(32), ForeignKey("runs.id", ondelete="CASCADE"))
    suite: Mapped[str] = mapped_column(String(255))
    metric: Mapped[str] = mapped_column(String(255))
    value: Mapped[float] = mapped_column(Float)
    n: Mapped[int | None] = mapped_column(Integer)
    step: Mapped[int | None] = mapped_column(Integer)
    higher_is_better: Mapped[bool]
    created_at: Mapped[datetime]


class Sample(Base):
    """One generated sample of a run: prompt, seed, image path and its scores."""

    __tablename__ = "samples"
    __table_args__ = (
        UniqueConstraint("run_id", "suite", "prompt_id", "sample_index"),
        Index(None, "run_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(String(32), ForeignKey("runs.id", ondelete="CASCADE"))
    suite: Mapped[str] = mapped_column(String(255))
    prompt_id: Mapped[str] = mapped_column(String(255))
    sample_index: Mapped[int] = mapped_column(Integer)
    seed: Mapped[int | None] = mapped_column(BigInteger)
    prompt: Mapped[str] = mapped_column(Text)
    image_path: Mapped[str | None] = mapped_column(Text)
    scores: Mapped[dict[str, Any]]
    correct: Mapped[bool | None]
