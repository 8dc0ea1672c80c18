"""Programmatic Alembic migrations of the results database (no alembic.ini needed).

``upgrade`` brings a database to the newest schema; it is a no-op (one SELECT) when the
database is already there. On SQLite the upgrade holds the write lock (``BEGIN IMMEDIATE``)
from the revision check to the commit, and on PostgreSQL a transaction-scoped advisory lock does
the same, so processes opening a new database together migrate it once.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Connection, Engine
from sqlalchemy.exc import DBAPIError

from nftkit.errors import NftkitError
from nftkit.results.engine import WRITE_OPTION, connection_error, make_engine, mask_url

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
MIGRATION_LOCK_KEY = 0x6E66746B6974  # "nftkit": the advisory lock id of migrations (PostgreSQL)


def alembic_config(connection: Connection | None = None, url: str | None = None) -> Config:
    """An Alembic Config pointing at nftkit's migrations, bound to a connection or a URL."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


@lru_cache(maxsize=1)
def _script_directory() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def head_revision() -> str:
    """The newest schema revision this nftkit knows."""
    head = _script_directory().get_current_head()
    if head is None:  # pragma: no cover - the package always ships 0001
        raise NftkitError(f"no migrations found in {MIGRATIONS_DIR}; reinstall nftkit")
    return head


def current_revision(engine_or_url: Engine | str) -> str | None:
    """The schema revision recorded in the database (None for an empty database)."""
    engine, owned = _engine(engine_or_url)
    try:
        with engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()
    except DBAPIError as exc:
        raise connection_error(engine.url, exc) from None
    finally:
        if owned:
            engine.dispose()


def upgrade(engine_or_url: Engine | str, revision: str = "head") -> None:
    """Migrate the database to ``revision`` (default: the newest); no-op when already there."""
    engine, owned = _engine(engine_or_url)
    try:
        current = current_revision(engine)
        _check_known(engine, current)
        if revision == "head" and current == head_revision():
            return
        with engine.execution_options(**{WRITE_OPTION: True}).begin() as conn:
            _lock_for_migration(conn)
            command.upgrade(alembic_config(connection=conn), revision)
    except DBAPIError as exc:
        raise connection_error(engine.url, exc) from None
    except CommandError as exc:
        raise NftkitError(
            f"cannot migrate results database {mask_url(engine.url)}: {exc}"
        ) from None
    finally:
        if owned:
            engine.dispose()


def _lock_for_migration(conn: Connection) -> None:
    """PostgreSQL: serialize migrations of one database (SQLite: ``BEGIN IMMEDIATE`` does it).

    A transaction-scoped advisory lock: processes that open a new database together wait here,
    and Alembic then reads the revision the first one committed instead of creating the tables
    a second time.
    """
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})")


def downgrade(engine_or_url: Engine | str, revision: str) -> None:
    """Migrate the database down to ``revision`` ("base" drops every nftkit table)."""
    engine, owned = _engine(engine_or_url)
    try:
        with engine.execution_options(**{WRITE_OPTION: True}).begin() as conn:
            command.downgrade(alembic_config(connection=conn), revision)
    except DBAPIError as exc:
        raise connection_error(engine.url, exc) from None
    except CommandError as exc:
        raise NftkitError(
            f"cannot migrate results database {mask_url(engine.url)}: {exc}"
        ) from None
    finally:
        if owned:
            engine.dispose()


def new_revision(
    message: str,
    engine_or_url: Engine | str,
    *,
    autogenerate: bool = True,
    version_path: str | Path | None = None,
) -> Path:
    """Developer helper: write the next migration script (``NNNN_<slug>.py``).

    With ``autogenerate`` the script holds the difference between the models and the database
    (which should be at head); review it before committing. Returns the script's path.
    """
    engine, owned = _engine(engine_or_url)
    rev_id = f"{int(head_revision()) + 1:04d}"
    try:
        with engine.execution_options(**{WRITE_OPTION: True}).begin() as conn:
            config = alembic_config(connection=conn)
            if version_path is not None:
                locations = os.pathsep.join([str(MIGRATIONS_DIR / "versions"), str(version_path)])
                config.set_main_option("version_locations", locations.replace("%", "%%"))
            script = command.revision(
                config,
                message=message,
                autogenerate=autogenerate,
                rev_id=rev_id,
                version_path=str(version_path) if version_path is not None else None,
            )
    finally:
        if owned:
            engine.dispose()
    if script is None or isinstance(script, list):  # pragma: no cover - one head, one script
        raise NftkitError("alembic did not write exactly one revision script")
    return Path(script.path)


def _check_known(engine: Engine, current: str | None) -> None:
    if current is None:
        return
    try:
        _script_directory().get_revision(current)
    except CommandError:
        raise NftkitError(
            f"results database {mask_url(engine.url)} has schema revision {current!r}, which this "
            f"nftkit does not know (newest here: {head_revision()}); upgrade nftkit or use "
            "another database (--db or NFTKIT_DB)"
        ) from None


def _engine(engine_or_url: Engine | str) -> tuple[Engine, bool]:
    if isinstance(engine_or_url, Engine):
        return engine_or_url, False
    return make_engine(engine_or_url), True
