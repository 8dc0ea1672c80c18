"""``nftkit debug ...``: developer tools (tiny offline checkpoints for tests and local runs)."""

from __future__ import annotations

import typer

debug_app = typer.Typer(
    help="Developer tools: tiny random-init checkpoints in the real on-disk formats.",
    no_args_is_help=True,
)
