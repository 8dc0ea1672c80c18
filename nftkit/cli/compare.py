"""``nftkit compare RUN RUN ...``: training curves of several runs in one PNG and HTML page."""

from __future__ import annotations

from pathlib import Path

import typer

from nftkit.cli.state import STATE
from nftkit.errors import NftkitError, UsageError


def training_folder(run: str) -> Path | None:
    """The training output folder ``run`` names (a folder, or a train run id), else None."""
    path = Path(run)
    if path.is_dir():
        if not (path / "history.jsonl").is_file():
            raise UsageError(f"{path} is not a training output folder (no history.jsonl)")
        return path
    from nftkit.results.store import ResultsStore, database_url

    try:
        record = ResultsStore(database_url(STATE.db)).get_run(run)
    except NftkitError:
        return None
    if record.kind == "train" and record.output_dir and Path(record.output_dir).is_dir():
        return Path(record.output_dir)
    return None


def write_page(output: Path, page: str) -> Path:
    """Write an HTML page (one-line error when the folder cannot be written)."""
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise NftkitError(f"cannot write {output}: {exc.strerror or exc}") from None
    return output


def compare(
    runs: list[str] = typer.Argument(..., help="Training output folders or train run ids."),
    output: Path = typer.Option(..., "--output", "-o", help="HTML file (a .png goes next to it)."),
) -> None:
    """Overlay the training curves of several runs (e.g. NFT vs GRPO) in one PNG and HTML."""
    from nftkit.report.compare import compare_runs

    folders = []
    for run in runs:
        folder = training_folder(run)
        if folder is None:
            raise UsageError(f"{run} is neither a training output folder nor a train run id")
        folders.append(folder)
    page, png = compare_runs(folders, output)
    typer.echo(f"comparison written to {page} and {png}", err=True)
