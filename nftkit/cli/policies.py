"""``nftkit policies list``: the installed model families (entry-point group nftkit.policies)."""

from __future__ import annotations

import typer

from nftkit.cli.plugins import _print
from nftkit.registry import POLICIES

policies_app = typer.Typer(help="Model family (policy) plugins.", no_args_is_help=True)


@policies_app.command("list")
def list_policies(
    as_json: bool = typer.Option(False, "--json", help="Print a JSON array."),
) -> None:
    """List installed model families with their load status."""
    _print(POLICIES, as_json)
