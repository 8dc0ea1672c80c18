"""``nftkit prompts ...``: write prompt sets (GenEval-protocol training prompts)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from nftkit.errors import NftkitError

prompts_app = typer.Typer(
    help="Write prompt sets for training and evaluation.", no_args_is_help=True
)


@prompts_app.command("geneval")
def geneval_prompts(
    n: int = typer.Option(..., "--n", help="Number of distinct prompts."),
    seed: int = typer.Option(43, "--seed", help="Random seed (GenEval's own generator uses 43)."),
    output: Path = typer.Option(..., "--output", "-o", help="JSONL file to write."),
    tasks: str = typer.Option(None, "--tasks", help="Comma-separated tasks (default: all six)."),
) -> None:
    """GenEval-protocol prompts with their metadata, tasks in turn, one JSON line each."""
    from nftkit.evaluators.geneval_prompts import generate_geneval_prompts

    lines = generate_geneval_prompts(n, seed=seed, tasks=tasks)
    text = "".join(json.dumps(line) + "\n" for line in lines)
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise NftkitError(f"cannot write {output}: {exc.strerror or exc}") from None
    typer.echo(f"{len(lines)} prompts written to {output}", err=True)
