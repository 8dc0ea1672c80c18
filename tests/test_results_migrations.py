"""Alembic migrations of the results database: upgrade, no-op reopen, models == migrations."""

from __future__ import annotations

import fnmatch
import sqlite3
import threading
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, event, inspect

from nftkit.errors import NftkitError
from nftkit.results import ResultsStore, migrate
from nftkit.results.engine import make_engine
from nftkit.results.schema import Base

TABLES = {"runs", "metrics", "samples"}
REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    """An engine on an empty SQLite file."""
    eng = make_engine(str(tmp_path / "results.db"))
    yield eng
    eng.dispose()


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as conn:
        rows = conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {name for (name,) in rows}


def test_upgrade_empty_database_to_head(tmp_path: Path) -> None:
    path = tmp_path / "results.db"
    assert migrate.current_revision(str(path)) is None
    migrate.upgrade(str(path))
    assert _tables(path) == TABLES | {"alembic_version"}
    with sqlite3.connect(path) as conn:
        versions = conn.execute("SELECT version_num FROM alembic_version").fetchall()
        journal = conn.execute("PRAGMA journal_mode").fetchone()
    assert versions == [(migrate.head_revision(),)] == [("0001",)]
    assert journal == ("wal",)
    assert migrate.current_revision(str(path)) == "0001"


def test_reopening_a_migrated_database_is_a_no_op(engine: Engine, tmp_path: Path) -> None:
    migrate.upgrade(engine)
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(" ".join(statement.split()[:2]).upper())

    event.listen(engine, "before_cursor_execute", record)
    try:
        migrate.upgrade(engine)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert statements  # it did look at the revision, but only read: no DDL, no write lock
    assert all(s.split()[0] in {"BEGIN", "SELECT", "PRAGMA"} for s in statements), statements
    assert "BEGIN IMMEDIATE" not in statements

    path = str(tmp_path / "results.db")
    with ResultsStore(path) as first:
        rid = first.start_run("eval", "m", {"a": 1})
    with ResultsStore(path) as again:
        assert again.get_run(rid).config == {"a": 1}
    assert migrate.current_revision(path) == "0001"


def test_models_and_migration_agree(engine: Engine) -> None:
    migrate.upgrade(engine)
    inspector = inspect(engine)
    assert set(inspector.get_table_names()) == TABLES | {"alembic_version"}
    for table in Base.metadata.sorted_tables:
        reflected = {c["name"]: c for c in inspector.get_columns(table.name)}
        assert list(reflected) == [c.name for c in table.columns], table.name
        for column in table.columns:
            got = reflected[column.name]
            where = f"{table.name}.{column.name}"
            assert got["nullable"] == column.nullable, where
            assert got["type"].python_type is column.type.python_type, where
            assert getattr(got["type"], "length", None) == getattr(column.type, "length", None), (
                where
            )
        pk = inspector.get_pk_constraint(table.name)["constrained_columns"]
        assert pk == [c.name for c in table.primary_key.columns]
        uniques = {tuple(u["column_names"]) for u in inspector.get_unique_constraints(table.name)}
        assert uniques == {
            tuple(c.name for c in u.columns)
            for u in table.constraints
            if u.__class__.__name__ == "UniqueConstraint"
        }
        indexes = {i["name"]: tuple(i["column_names"]) for i in inspector.get_indexes(table.name)}
        assert indexes == {i.name: tuple(c.name for c in i.columns) for i in table.indexes}
        fks = inspector.get_foreign_keys(table.name)
        assert {(tuple(f["constrained_columns"]), f["options"].get("ondelete")) for f in fks} == {
            ((fk.parent.name,), fk.ondelete) for fk in table.foreign_keys
        }
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, Base.metadata) == []


def test_downgrade_to_base_then_upgrade_again(engine: Engine, tmp_path: Path) -> None:
    migrate.upgrade(engine)
    migrate.downgrade(engine, "base")
    assert _tables(tmp_path / "results.db") == {"alembic_version"}
    assert migrate.current_revision(engine) is None
    migrate.upgrade(engine)
    assert migrate.current_revision(engine) == migrate.head_revision()


def test_unknown_revision_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "results.db"
    migrate.upgrade(str(path))
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'fff999'")
    with pytest.raises(NftkitError, match=r"'fff999'.*upgrade nftkit"):
        ResultsStore(str(path))


def test_first_open_from_several_threads_migrates_once(tmp_path: Path) -> None:
    path = str(tmp_path / "results.db")
    errors: list[BaseException] = []

    def open_store() -> None:
        try:
            ResultsStore(path).close()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT version_num FROM alembic_version").fetchall() == [("0001",)]


def test_migration_scripts_are_package_data() -> None:
    pyproject = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["nftkit"]
    package = REPO_ROOT / "nftkit"
    needed = [migrate.MIGRATIONS_DIR / "env.py", *migrate.MIGRATIONS_DIR.glob("versions/*.py")]
    assert len(needed) >= 2
    for path in needed:
        relative = path.relative_to(package).as_posix()
        assert any(fnmatch.fnmatch(relative, p) for p in patterns), relative


def test_new_revision_of_an_up_to_date_database_is_empty(engine: Engine, tmp_path: Path) -> None:
    migrate.upgrade(engine)
    out = tmp_path / "versions"
    out.mkdir()
    script = migrate.new_revision("add nothing", engine, version_path=out)
    assert script.parent == out and script.name == "0002_add_nothing.py"
    text = script.read_text()
    assert 'revision = "0002"' in text or "revision = '0002'" in text
    assert "down_revision = '0001'" in text or 'down_revision = "0001"' in text
    compile(text, str(script), "exec")
    body = text.split("def upgrade() -> None:")[1].split("def downgrade")[0]
    assert "op." not in body  # models and database agree: nothing to migrate
