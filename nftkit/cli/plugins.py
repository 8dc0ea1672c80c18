"""``nftkit rewards list``, ``nftkit rewards download`` and ``nftkit evaluators list``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from nftkit.registry import EVALUATORS, REWARDS, Registry

rewards_app = typer.Typer(help="Reward plugins.", no_args_is_help=True)
evaluators_app = typer.Typer(help="Benchmark evaluator plugins.", no_args_is_help=True)


def _rows(registry: Registry) -> list[dict[str, Any]]:
    rows = []
    for status in registry.statuses():
        row = status.as_dict()
        if status.status == "ok":
            obj = registry.load(status.name)
            row["description"] = (getattr(obj, "description", "") or obj.__doc__ or "").strip()
            row["description"] = row["description"].split("\n")[0]
            if hasattr(obj, "higher_is_better"):
                row["higher_is_better"] = bool(obj.higher_is_better)
        rows.append(row)
    return rows


def _print(registry: Registry, as_json: bool) -> None:
    rows = _rows(registry)
    if as_json:
        keys = ("name", "distribution", "version", "status", "error")
        typer.echo(json.dumps([{k: r[k] for k in keys} for r in rows], indent=2))
        return
    kind = registry.kind
    table = Table(title=f"nftkit {kind[:-1] + 'ies' if kind.endswith('y') else kind + 's'}")
    for column in ("name", "status", "distribution", "version", "description / error"):
        table.add_column(column)
    for r in rows:
        status = "[green]ok[/]" if r["status"] == "ok" else f"[red]{r['status']}[/]"
        text = r.get("description", "") if r["status"] == "ok" else r["error"]
        table.add_row(r["name"], status, r["distribution"] or "", r["version"] or "", text or "")
    Console().print(table)


@rewards_app.command("list")
def list_rewards(
    as_json: bool = typer.Option(False, "--json", help="Print a JSON array."),
) -> None:
    """List installed reward plugins with their status (ok, failed to import, invalid)."""
    _print(REWARDS, as_json)


@rewards_app.command("download")
def download_rewards(
    names: list[str] = typer.Argument(..., help="Reward names, e.g. pickscore hpsv2."),
    to: Path = typer.Option(
        None, "--to", help="Write DIR/<reward>/ for --weights-dir instead of the hub cache."
    ),
) -> None:
    """Pre-fetch reward weights into the Hugging Face cache (or a --weights-dir layout)."""
    classes = [(name, REWARDS.load(name)) for name in names]  # unknown names fail first
    for name, cls in classes:
        download = getattr(cls, "download", None)
        if download is None:
            typer.echo(f"{name}: no weights to download")
            continue
        for path in download(to):
            typer.echo(f"{name}\t{path}")


@evaluators_app.command("list")
def list_evaluators(
    as_json: bool = typer.Option(False, "--json", help="Print a JSON array."),
) -> None:
    """List installed evaluator plugins with their status (ok, failed to import, invalid)."""
    _print(EVALUATORS, as_json)
