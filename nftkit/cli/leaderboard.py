"""``nftkit leaderboard``: the latest evaluation of every model, per suite."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from nftkit.cli.state import STATE


def leaderboard(
    suite: str = typer.Option(None, "--suite", "-s", help="Only this suite."),
    fmt: str = typer.Option("table", "--format", "-f", help="table, markdown, csv, json or html."),
    plot: Path = typer.Option(None, "--plot", help="Also draw a grouped bar chart to this PNG."),
) -> None:
    """Show one row per model with its latest metrics."""
    from nftkit.results.leaderboard import (
        format_leaderboard,
        plot_leaderboard,
        transposed_table,
    )
    from nftkit.results.store import ResultsStore, database_url

    store = ResultsStore(database_url(STATE.db))
    rows = store.leaderboard(suite)
    rendered = format_leaderboard(rows, fmt)
    if isinstance(rendered, Table):
        console = Console()
        if (
            console.measure(rendered, options=console.options.update_width(10_000)).maximum
            > console.width
            and len(rows) <= 8
        ):
            rendered = transposed_table(rows)  # one column per model reads better than "…"
        console.print(rendered)
    else:
        typer.echo(rendered)
    if plot is not None:
        plot_leaderboard(rows, plot)
        typer.echo(f"plot written to {plot}", err=True)
