"""``nftkit eval``: generate a suite's images with a model and score them."""

from __future__ import annotations

import json

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from nftkit.cli.state import STATE
from nftkit.errors import UsageError


def evaluate(
    model: str = typer.Option(..., "--model", "-m", help="Model: name, folder or training dir."),
    suite: str = typer.Option(..., "--suite", "-s", help="Evaluator name, e.g. 'shapes'."),
    n_samples: int = typer.Option(None, "--n-samples", help="Images per prompt."),
    steps: int = typer.Option(None, "--steps", help="Sampling steps (suite default if unset)."),
    solver: str = typer.Option("dpm2", "--solver", help="dpm2, euler or sde."),
    cfg: float = typer.Option(1.0, "--cfg", help="Guidance scale (1.0 = CFG-free)."),
    seed: int = typer.Option(0, "--seed", help="Base seed; each (prompt, sample) derives one."),
    batch_size: int = typer.Option(32, "--batch-size", help="Images per generation batch."),
    limit: int = typer.Option(None, "--limit", help="Only the first N prompts."),
    device: str = typer.Option("cpu", help="Torch device."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Evaluate a model on a benchmark suite and record the run."""
    from nftkit.evaluate import EvalSettings, run_evaluation
    from nftkit.policies.loading import load_policy
    from nftkit.registry import evaluator_class
    from nftkit.results.store import ResultsStore, database_url

    if cfg != 1.0:
        raise UsageError("only CFG-free sampling (--cfg 1.0) is supported for this model family")
    if batch_size < 1 or (limit is not None and limit < 1):
        raise UsageError("--batch-size and --limit must be >= 1")
    evaluator = evaluator_class(suite)(n_samples=n_samples)
    store = ResultsStore(database_url(STATE.db))
    policy = load_policy(model, device=device)
    settings = EvalSettings(
        steps=steps or evaluator.default_steps, solver=solver, seed=seed,
        batch_size=batch_size, limit=limit,
    )
    progress = Progress(
        TextColumn(f"[bold]eval {suite}[/]"), BarColumn(), MofNCompleteColumn(),
        TimeElapsedColumn(), console=Console(stderr=True), disable=as_json,
    )
    with progress:
        task = progress.add_task("eval", total=None)
        report = run_evaluation(
            policy, evaluator, model, settings, store=store,
            progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
    if as_json:
        typer.echo(json.dumps(report.as_json()))
        return
    table = Table(title=f"{suite} - {model} ({report.n_images} images, {report.seconds:.0f}s)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in report.metrics.items():
        table.add_row(key, f"{value:.4f}")
    Console().print(table)
