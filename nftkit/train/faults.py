"""Crash injection for the crash-safety tests: ``NFTKIT_FAULT=<point>:<n>`` SIGKILLs the process.

Points (``n`` is the value the code reports at that point):

- ``after-step:N``: right after optimizer step N (counted over the whole run), i.e. between
  checkpoints;
- ``mid-checkpoint:N``: while writing the checkpoint of epoch N, after its tensor files and
  before its JSON files and completion marker;
- ``before-rename:N``: the checkpoint of epoch N is complete in its temporary folder but not
  yet renamed into place.

Evaluation (``nftkit eval``; counts are per process, so a resumed run counts from 1 again):

- ``eval-mid-png:N``: the N-th image this process saves is complete under its temporary name
  and not yet renamed into place;
- ``eval-after-png:N``: the images of the N-th generated batch are saved, before they are scored
  and recorded (earlier batches may still be queued for scoring);
- ``mid-add-samples:N``: inside the database transaction of the N-th ``add_samples`` call of
  this process (rows flushed, not committed);
- ``eval-after-batch:N``: right after the rows of the N-th scored batch were committed;
- ``eval-before-finish:N``: all N rows are recorded and results.jsonl written, but the final
  metrics are not logged and the run is not marked finished.

SIGKILL cannot be caught, so nothing runs on the way out: no ``finally``, no atexit, exactly as
with ``kill -9`` or the out-of-memory killer. Unset in normal use: the check is one lookup.
"""

from __future__ import annotations

import os
import signal

FAULT_ENV = "NFTKIT_FAULT"
POINTS = (
    "after-step",
    "mid-checkpoint",
    "before-rename",
    "eval-mid-png",
    "eval-after-png",
    "mid-add-samples",
    "eval-after-batch",
    "eval-before-finish",
)


def fault_point(point: str, value: int) -> None:
    """SIGKILL this process when ``$NFTKIT_FAULT`` is ``<point>:<value>``."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    name, _, count = spec.strip().partition(":")
    if name == point and count.isdigit() and int(count) == value:
        os.kill(os.getpid(), signal.SIGKILL)
