"""Engines for the results database: URL handling, SQLite settings and user-facing errors.

SQLite connections run in WAL mode with a 30 s busy timeout and foreign keys on; SQLAlchemy
emits BEGIN itself (DEFERRED for reads, IMMEDIATE for writes) so that DDL is transactional and
a writer waits for the lock instead of failing half way. PostgreSQL goes through psycopg 3.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from nftkit.errors import NftkitError, UsageError

DEFAULT_DB_URL = "sqlite:///nftkit.db"
DB_ENV = "NFTKIT_DB"
SQLITE_BUSY_TIMEOUT_MS = 30_000
PG_CONNECT_TIMEOUT_S = 10
WRITE_OPTION = "nftkit_write"
"""Execution option that marks a connection as a writer (SQLite: ``BEGIN IMMEDIATE``)."""

_PASSWORD_RE = re.compile(r"(://[^:/@]*:)[^@/]*@")


def database_url(explicit: str | None = None) -> str:
    """The results database URL: ``explicit`` (--db), else $NFTKIT_DB, else ``./nftkit.db``.

    A bare filesystem path is turned into a SQLite URL; ``postgresql://`` means psycopg 3.
    """
    if explicit is not None:
        return normalize_url(explicit)
    env = os.environ.get(DB_ENV, "").strip()
    return normalize_url(env) if env else DEFAULT_DB_URL


def normalize_url(url: str) -> str:
    """Turn a bare filesystem path into a SQLite URL and map PostgreSQL URLs to psycopg 3."""
    url = url.strip()
    if not url:
        raise UsageError("empty database URL: give a SQLAlchemy URL or a path to a SQLite file")
    if "://" not in url:
        return "sqlite:///" + str(Path(url).expanduser())
    scheme, rest = url.split("://", 1)
    if scheme in ("postgresql", "postgres"):
        return "postgresql+psycopg://" + rest
    return url


def mask_url(url: str | URL) -> str:
    """The URL as text with its password replaced by ``***``."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # unparsable: mask by pattern
        return _PASSWORD_RE.sub(r"\1***@", url)


def parse_url(url: str) -> URL:
    """Parse a (normalized) database URL, raising NftkitError naming the masked URL."""
    try:
        return make_url(url)
    except (ArgumentError, ValueError) as exc:
        raise NftkitError(
            f"bad database URL {mask_url(url)}: {_first_line(exc)}; expected e.g. "
            "sqlite:///nftkit.db or postgresql+psycopg://user:pass@host/db (--db or NFTKIT_DB)"
        ) from None


def make_engine(url: str) -> Engine:
    """Create an engine for a results database URL (or bare SQLite path)."""
    parsed = parse_url(normalize_url(url))
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "postgresql" and "connect_timeout" not in parsed.query:
        kwargs["connect_args"] = {"connect_timeout": PG_CONNECT_TIMEOUT_S}
    try:
        engine = create_engine(parsed, **kwargs)
    except (NoSuchModuleError, ModuleNotFoundError, ImportError, ArgumentError) as exc:
        raise NftkitError(
            f"cannot use database URL {mask_url(parsed)}: {_first_line(exc)}; check the URL "
            "scheme and that its driver is installed (PostgreSQL: pip install 'nftkit[postgres]')"
        ) from None
    if engine.dialect.name == "sqlite":
        _configure_sqlite(engine)
    return engine


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN (see _on_begin)
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys = ON")
            cursor.execute("PRAGMA journal_mode = WAL")
            cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        write = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


def is_locked_error(exc: BaseException) -> bool:
    """True for SQLite's transient "database is locked" errors (another writer holds the lock)."""
    text = str(getattr(exc, "orig", exc)).lower()
    return "database is locked" in text or "database table is locked" in text


def connection_error(url: str | URL, exc: BaseException) -> NftkitError:
    """One-line NftkitError for a database that cannot be opened, with the password masked."""
    masked = mask_url(url)
    parsed = url if isinstance(url, URL) else None
    if parsed is None:
        try:
            parsed = make_url(url)
        except Exception:
            parsed = None
    detail = _first_line(getattr(exc, "orig", None) or exc)
    if parsed is not None and parsed.password:
        detail = detail.replace(str(parsed.password), "***")
    if parsed is not None and parsed.get_backend_name() == "sqlite":
        hint = "check that the directory exists and is writable and the file is a SQLite database"
    else:
        hint = (
            "check that the server is running and reachable and the host, port, database, "
            "user and password"
        )
    return NftkitError(
        f"cannot open results database {masked}: {detail}; {hint} (set --db or NFTKIT_DB)"
    )


def _first_line(exc: BaseException | str) -> str:
    text = str(exc).strip()
    first = text.splitlines()[0].strip() if text else type(exc).__name__
    return first.rstrip(".;")
