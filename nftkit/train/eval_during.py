"""Held-out evaluation during training: the suite on the EMA weights every N epochs.

Each evaluation point writes its images and results.jsonl under
``OUTPUT/evals/SUITE-epochNNNNNNN/`` and is an ``eval`` run in the results database whose
config names the training run (``train_run_id``) and its ``train_epoch`` / ``train_step``; the
metrics are also logged on the training run under suite ``eval:SUITE`` at the optimizer step.
The trainer checkpoints before an evaluation, and a ``done.json`` marker is written after it,
so a crash during an evaluation loses nothing: ``--resume`` re-runs the pending point from the
checkpoint (same EMA weights) and the eval package reuses the images already in the folder.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nftkit.errors import UsageError
from nftkit.train.checkpoint import write_json_atomic

DONE_FILE = "done.json"
GRID_IMAGES = 8


def eval_folder(output: Path, suite: str, epoch: int) -> Path:
    """Where the evaluation at ``epoch`` keeps its images and marker."""
    return output / "evals" / f"{suite}-epoch{epoch:07d}"


def completed_evals(output: Path) -> list[dict[str, Any]]:
    """The finished evaluation points of a training folder, in epoch order."""
    rows = [json.loads(p.read_text()) for p in (output / "evals").glob(f"*/{DONE_FILE}")]
    return sorted(rows, key=lambda r: (r["epoch"], r["suite"]))


class TrainingEval:
    """Runs one suite on a trainer's EMA weights at its evaluation points."""

    def __init__(
        self,
        suite: str,
        every: int | None,
        output: Path,
        device: str,
        limit: int | None = None,
        settings: dict[str, Any] | None = None,
    ) -> None:
        from nftkit.eval import EvalSettings
        from nftkit.registry import evaluator_class

        if every is not None and every < 1:
            raise UsageError(f"--eval-every must be >= 1, got {every}")
        if limit is not None and limit < 1:
            raise UsageError(f"--eval-limit must be >= 1, got {limit}")
        cls = evaluator_class(suite)
        try:
            self.evaluator = cls(device=device)
        except TypeError:
            self.evaluator = cls()
        self.suite = suite
        self.every = every
        self.output = Path(output)
        options = {
            "steps": self.evaluator.default_steps,
            "solver": self.evaluator.default_solver,
            **(settings or {}),
        }
        self.settings = EvalSettings(limit=limit, **options)

    def due(self, epoch: int, final: bool = False) -> bool:
        """True when ``epoch`` is an evaluation point that has not been evaluated yet."""
        if epoch < 1:
            return False
        point = final or (self.every is not None and epoch % self.every == 0)
        return point and not (eval_folder(self.output, self.suite, epoch) / DONE_FILE).is_file()

    def run(self, trainer: Any, store: Any | None, run_id: str | None) -> dict[str, Any]:
        """Evaluate the trainer's EMA weights now; returns the point (metrics, images)."""
        from nftkit.eval import run_evaluation

        epoch, step = trainer.epoch, trainer.global_step
        folder = eval_folder(self.output, self.suite, epoch)
        link = {"train_run_id": run_id, "train_epoch": epoch, "train_step": step}
        with trainer.ema.swapped_in(trainer.trainable):
            report = run_evaluation(
                trainer.policy,
                self.evaluator,
                str(self.output.resolve()),
                self.settings,
                store=store,
                adapter="default",
                output_dir=folder,
                dist=trainer.dist,
                extra_config=link,
            )
        point = {
            "suite": self.suite,
            "epoch": epoch,
            "step": step,
            "eval_run_id": report.run_id,
            "metrics": dict(report.metrics),
            "images": sample_images(folder),
        }
        if trainer.dist.is_main:
            if store is not None and run_id is not None:
                store.log_metrics(
                    run_id, f"eval:{self.suite}", report.metrics, step=step, n=report.n_images
                )
            write_json_atomic(folder / DONE_FILE, point)
        return point


def sample_images(folder: Path, n: int = GRID_IMAGES) -> list[str]:
    """Paths (relative to ``folder``) of the first ``n`` images of an evaluation folder."""
    found = sorted(folder.glob("*/samples/*.png")) or sorted(folder.glob("**/*.png"))
    return [str(p.relative_to(folder)) for p in found[:n]]
