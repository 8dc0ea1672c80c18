"""Watching a training run: held-out evals, trackers, monitors, stop rules, throughput.

The runner calls a ``Watch`` at four points: ``start`` (after the run is opened or resumed),
``before_epoch``, ``after_epoch`` (may return why training must stop), ``final_eval`` once
the loop is done, and ``close`` on the way out.
"""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from nftkit.errors import UsageError
from nftkit.train import checkpoint as ckpt
from nftkit.train.eval_during import TrainingEval
from nftkit.train.monitor import StopRule, WatchedComposer, first_stop, parse_stop_rule
from nftkit.train.schedules import ema_decay
from nftkit.train.trackers import Trackers, parse_log_with


@dataclass
class WatchOptions:
    """What to watch: ``eval_suite`` every ``eval_every`` epochs, trackers, monitors, rules."""

    eval_suite: str | None = None
    eval_every: int | None = None
    eval_limit: int | None = None
    eval_settings: dict[str, Any] = field(default_factory=dict)
    log_with: str | None = None
    monitor: str | None = None
    stop_if: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict."""
        return asdict(self)

    def rules(self) -> list[StopRule]:
        """The parsed ``--stop-if`` rules."""
        return [parse_stop_rule(t) for t in self.stop_if]

    def check(self) -> None:
        """One-line errors for options that cannot work together (before anything loads)."""
        if self.eval_suite is None and (self.eval_every is not None or self.eval_limit):
            raise UsageError(
                "--eval-every / --eval-limit need --eval-suite NAME (or a preset "
                "that has an eval suite)"
            )
        self.rules()
        parse_log_with(self.log_with)


def resolve_device(device: str) -> str:
    """``auto`` -> ``cuda`` when a GPU is visible, else ``cpu``; other names unchanged."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def peak_memory() -> dict[str, float]:
    """Peak memory: each CUDA device's allocated GiB, and this process's peak RSS in GiB."""
    out: dict[str, float] = {}
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            out[f"memory/peak_gib_cuda{i}"] = torch.cuda.max_memory_allocated(i) / 2**30
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    out["memory/peak_rss_gib"] = rss / (2**30 if sys.platform == "darwin" else 2**20)
    return out


class Watch:
    """The runner's hooks for one run (see the module docstring)."""

    def __init__(
        self,
        options: WatchOptions,
        output: Path,
        device: str,
        config: dict[str, Any],
        db_url: str | None = None,
    ) -> None:
        options.check()
        self.options = options
        self.db_url = db_url
        self.output = Path(output)
        self.rules = options.rules()
        self.tracker_names = parse_log_with(options.log_with)
        self.evaluation = (
            TrainingEval(
                options.eval_suite,
                options.eval_every,
                self.output,
                device,
                options.eval_limit,
                options.eval_settings,
            )
            if options.eval_suite
            else None
        )
        self.monitors: Any = None
        if options.monitor:
            from nftkit.compose import RewardComposer

            self.monitors = RewardComposer(options.monitor, reward_kwargs={"device": device})
        self.config = config
        self.trackers: Trackers | None = None
        self.trainer: Any = None
        self.store: Any = None
        self.run_id: str | None = None
        self.points: list[dict[str, Any]] = []
        self.stopped: str | None = None

    def start(self, trainer: Any, store: Any | None, run_id: str | None) -> None:
        """Open the trackers; run an evaluation a crash left pending at the resumed epoch."""
        self.trainer, self.store, self.run_id = trainer, store, run_id
        if self.evaluation is not None and getattr(trainer, "collective_forwards", False):
            raise UsageError(
                "held-out evaluation during FSDP training is not supported (the suite's prompts "
                "do not split into equal forwards per process); drop --eval-suite/--eval-every "
                "and evaluate the export: nftkit export RUN --merged -o DIR, then nftkit eval"
            )
        if store is None and trainer.dist.enabled and self.evaluation is not None:
            self.store = self.db_store()  # every process of an evaluation shares its run
        if trainer.dist.is_main:
            self.trackers = Trackers(
                self.tracker_names, self.output, str(run_id or "train"), self.config
            )
        if self.evaluation is not None and self.evaluation.due(trainer.epoch):
            self._evaluate()

    def db_store(self) -> Any:
        """A results store on the run's database (for processes other than the main one)."""
        from nftkit.results.store import ResultsStore, database_url

        return ResultsStore(database_url(self.db_url))

    def before_epoch(self) -> None:
        """Make sure the trainer's (possibly new) composer reports its statistics."""
        trainer = self.trainer
        if not isinstance(trainer.composer, WatchedComposer):
            trainer.composer = WatchedComposer(
                trainer.composer, self.monitors, trainer.config.group_size, trainer.dist.gather
            )
        self._started = time.time()

    def after_epoch(self, record: dict[str, Any]) -> str | None:
        """Add monitors/throughput to ``record``, log it, evaluate when due; why to stop."""
        began = time.perf_counter()
        trainer = self.trainer
        composer = trainer.composer
        inside = composer.seconds if isinstance(composer, WatchedComposer) else 0.0
        if isinstance(composer, WatchedComposer):
            record.update(composer.pending)
            composer.pending = {}
        volatile = self._timing(record)  # wall-clock figures: trackers only, not history
        if trainer.global_step > 0:
            record["ema_decay"] = float(ema_decay(trainer.global_step))
        record["lr"] = float(trainer.optimizer.param_groups[0]["lr"])
        if self.trackers is not None:
            volatile["time/watch_seconds"] = inside + time.perf_counter() - began
            self.trackers.log(
                {k: v for k, v in {**record, **volatile}.items() if k not in ("epoch", "step")},
                step=record["step"],
            )
        self.stopped = first_stop(self.rules, record, trainer.history)
        if self.evaluation is not None and self.evaluation.due(trainer.epoch):
            self._evaluate()
        return self.stopped

    def _timing(self, record: dict[str, Any]) -> dict[str, float]:
        """Seconds per epoch, sampling/training images per second and peak memory."""
        cfg = self.trainer.config
        n_images = cfg.prompts_per_epoch * cfg.group_size
        now = time.time()
        scored = getattr(self.trainer.composer, "scored_at", None) or now
        out = {
            "seconds_per_epoch": now - self._started,
            "time/sample_seconds": scored - self._started,
            "time/train_seconds": now - scored,
        }
        for part in ("sample", "train"):
            if out[f"time/{part}_seconds"] > 0:
                out[f"throughput/{part}_images_per_s"] = n_images / out[f"time/{part}_seconds"]
        out.update(peak_memory())
        return out

    def final_eval(self) -> None:
        """Evaluate the final checkpoint of a finished (or stopped) run, unless done already."""
        if (
            self.evaluation is not None
            and self.trainer is not None
            and self.evaluation.due(self.trainer.epoch, final=True)
        ):
            self._evaluate()

    def close(self) -> None:
        """Flush and close the trackers (also after a failure)."""
        if self.trackers is not None:
            self.trackers.close()
            self.trackers = None

    def _evaluate(self) -> None:
        trainer = self.trainer
        assert self.evaluation is not None
        latest = ckpt.latest_checkpoint(trainer.checkpoint_root)
        if latest is None or latest.name != f"{ckpt.PREFIX}{trainer.epoch:07d}":
            trainer.save_checkpoint()  # so a crash during the evaluation loses nothing
        point = self.evaluation.run(trainer, self.store, self.run_id)
        self.points.append(point)
        if self.trackers is not None:
            suite = point["suite"]
            self.trackers.log(
                {f"eval/{suite}/{k}": v for k, v in point["metrics"].items()}, step=point["step"]
            )
            self.trackers.log_images(
                f"eval/{suite}/samples", _load(self.output, point), step=point["step"]
            )


def _load(output: Path, point: dict[str, Any]) -> list[Any]:
    from PIL import Image

    from nftkit.train.eval_during import eval_folder

    folder = eval_folder(output, point["suite"], point["epoch"])
    return [Image.open(folder / p).copy() for p in point["images"] if (folder / p).is_file()]
