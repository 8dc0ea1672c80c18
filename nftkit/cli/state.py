"""Global CLI options shared by every command (set by the root callback)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class CliState:
    """Options given before the command: database URL, weights directory, debug tracebacks."""

    db: str | None = None
    weights_dir: str | None = None
    debug: bool = False


STATE = CliState()
