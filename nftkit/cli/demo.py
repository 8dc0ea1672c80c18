"""``nftkit demo``: the embedded default end to end, on the CPU, with no downloads.

Trains the shapes preset from ``shapes-base`` with DiffusionNFT, evaluates the base and the tuned
model on the held-out shapes suite, and prints the leaderboard.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import typer
from rich.console import Console

from nftkit.cli.state import STATE


def demo(
    output: Path = typer.Option(Path("demo-out"), "--output", "-o", help="Output folder."),
    steps: int = typer.Option(None, "--steps", help="Training epochs (preset default)."),
    fresh: bool = typer.Option(False, "--fresh", help="Delete a previous demo output first."),
    per_task: int = typer.Option(
        12, "--per-task", min=1, help="Held-out prompts per task in the evaluation (4 images each)."
    ),
) -> None:
    """Train the shapes world, evaluate base vs tuned, show the leaderboard."""
    import shutil

    from nftkit.cli.leaderboard import leaderboard
    from nftkit.cli.train import train
    from nftkit.eval import EvalSettings, run_evaluation
    from nftkit.evaluators.shapes import ShapesEvaluator
    from nftkit.policies.loading import load_policy
    from nftkit.results.store import ResultsStore

    console = Console(stderr=True)
    if fresh and output.exists():
        shutil.rmtree(output)
    output.mkdir(parents=True, exist_ok=True)
    if STATE.db is None:
        STATE.db = f"sqlite:///{output.resolve() / 'nftkit.db'}"
    start = time.time()
    resume = (output / "train" / "checkpoints").is_dir()
    console.rule("1/3  DiffusionNFT training on the shapes world (CPU)")
    # Every parameter explicitly: a typer command called as a function gets no CLI defaults.
    train(
        preset="shapes",
        algo=None,
        model=None,
        rewards=None,
        prompts=None,
        output=output / "train",
        epochs=steps,
        steps=None,
        plan=False,
        processes=None,
        resume=resume,
        seed=None,
        device="cpu",
        checkpoint_every=None,
        config_file=None,
        overrides=None,
        quiet=False,
        eval_suite=None,
        eval_every=None,
        eval_limit=None,
        log_with=None,
        monitor=None,
        stop_if=None,
    )
    console.rule("2/3  held-out shapes suite: base vs tuned")
    store = ResultsStore(STATE.db)
    results = {}
    for name, model in (("shapes-base", "shapes-base"), ("tuned", str(output / "train"))):
        evaluator = ShapesEvaluator(per_task=per_task)
        policy = load_policy(model)
        report = run_evaluation(policy, evaluator, model, EvalSettings(steps=20), store=store)
        results[name] = report.metrics
        console.print(
            f"{name}: overall {report.metrics['overall']:.3f} "
            f"({report.n_images} images, {report.seconds:.0f}s)"
        )
    console.rule("3/3  leaderboard")
    leaderboard(suite="shapes", fmt="table", plot=output / "leaderboard.png")
    summary = {
        "base_overall": results["shapes-base"]["overall"],
        "tuned_overall": results["tuned"]["overall"],
        "wall_seconds": round(time.time() - start, 1),
        "output": str(output),
    }
    (output / "demo_summary.json").write_text(json.dumps(summary, indent=2))
    typer.echo(json.dumps(summary))
