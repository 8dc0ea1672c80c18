"""The database side of the results store: engines, migration on open, and transactions.

``StoreBase`` opens the engines (a reader and a writer; SQLite writers take the lock up
front), migrates the schema, runs each operation in its own short transaction with a retry on
SQLite's "database is locked", and turns driver errors into one-line NftkitErrors. The runs,
metrics and samples mixins build the public ``ResultsStore`` on top of it.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable
from typing import Self, TypeVar

from sqlalchemy import select
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
from nftkit.results.schema import Run
from nftkit.results.values import first_line

MIN_PREFIX_LEN = 4
LOCK_RETRIES = 5
IN_CHUNK = 500
"""Most values in one SQL ``IN (...)`` list."""
HEX_RE = re.compile(r"[0-9a-f]+")

T = TypeVar("T")


class StoreBase:
    """An open results database: transactions and run lookup, shared by the store's parts.

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
                    f"results database {self.url} refused the write: {first_line(exc.orig)}"
                ) from None
            except DBAPIError as exc:
                raise NftkitError(
                    f"results database {self.url} failed: {first_line(exc.orig)}"
                ) from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _resolve(self, session: Session, run_id: str, *, lock: bool = False) -> Run:
        """The Run for a full id or a unique prefix; ``lock`` takes a row lock (PostgreSQL)."""
        key = run_id.strip().lower() if isinstance(run_id, str) else ""
        if not key or not HEX_RE.fullmatch(key) or len(key) > 32:
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
