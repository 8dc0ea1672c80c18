"""``nftkit report``: a self-contained HTML page for one run."""

from __future__ import annotations

from pathlib import Path

import typer

from nftkit.cli.state import STATE
from nftkit.errors import UsageError


def report(
    run_id: str = typer.Argument(
        ..., help="Run id (or a unique prefix of at least 4 digits), or a training output folder."
    ),
    output: Path = typer.Option(..., "--output", "-o", help="HTML file to write."),
    max_samples: int = typer.Option(200, "--max-samples", help="Sample cards to include."),
) -> None:
    """Write a run's metrics and a grid of its samples (embedded thumbnails) as one HTML file."""
    from nftkit.results.report import write_report
    from nftkit.results.store import ResultsStore, database_url

    if max_samples < 0:
        raise UsageError("--max-samples must be >= 0")
    from nftkit.cli.compare import training_folder, write_page

    folder = training_folder(run_id)
    if folder is not None:  # a training run: curves, eval grids, config
        from nftkit.report.training import render_training_report

        path = write_page(output, render_training_report(folder))
        typer.echo(f"report written to {path}", err=True)
        return
    store = ResultsStore(database_url(STATE.db))
    path = write_report(store, run_id, output, max_samples)
    typer.echo(f"report written to {path}", err=True)
