"""An OS file lock on a training run folder, so that two processes never train in one.

The lock is ``fcntl.flock`` on ``<run>/.nftkit.lock`` with the holder's pid written in it. The
kernel drops it when the holder exits in any way, kill -9 included, so a stale lock file never
blocks a later resume; only a live holder does, and the error names its pid.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path
from types import TracebackType

from nftkit.errors import UsageError

LOCK_FILE = ".nftkit.lock"


class RunFolderLocked(UsageError):
    """Another live process holds the run folder's lock."""


class RunLock:
    """Exclusive, non-blocking lock on a run folder (a context manager).

    ``acquire()`` takes it (idempotent); entering the context takes it at once when the folder
    exists already, so that a second ``--resume`` fails before loading anything. A folder that
    does not exist yet is locked by a later ``acquire()``, right after it was created.
    """

    def __init__(self, folder: Path, enabled: bool = True) -> None:
        self.folder = Path(folder)
        self.enabled = enabled
        self._fd: int | None = None

    @property
    def path(self) -> Path:
        """The lock file."""
        return self.folder / LOCK_FILE

    @property
    def held(self) -> bool:
        """True while this object holds the lock."""
        return self._fd is not None

    def acquire(self) -> None:
        """Take the lock, or raise RunFolderLocked naming the holder's pid."""
        if not self.enabled or self._fd is not None:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"pid {holder}" if holder else "another process"
            raise RunFolderLocked(
                f"{self.folder} is in use: {who} is training in it; wait for it to finish "
                "(or stop it) before resuming, or choose another --output"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Drop the lock (the file stays; its content no longer matters)."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def __enter__(self) -> RunLock:
        if self.folder.is_dir():
            self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    """The pid written in an open lock file, or None."""
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        return int(text) if text else None
    except (OSError, ValueError):
        return None


def lock_holder(folder: Path) -> int | None:
    """The pid of the live process holding ``folder``'s lock, or None when it is free."""
    path = Path(folder) / LOCK_FILE
    if not path.is_file():
        return None
    fd = os.open(path, os.O_RDONLY)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_pid(fd) or -1
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
