"""What watching costs: a shapes epoch plain vs with TensorBoard logging and a jpeg monitor.

Side by side, one run each, same preset, seed and epochs; the figure is the mean wall time
between the end of consecutive epochs (the first epoch is warm-up and not counted), which
includes the monitor scoring, the statistics and the tracker writes. Held-out evaluations are
not part of it (they are a separate, chosen cost). Target (issue 21): <= 3%. On a shared,
loaded machine the side-by-side figure is noise; ``in_run_watch_share_pct`` (the watch's own
time over the epoch time, same epochs) is the robust one.

    python benchmarks/watch_overhead.py [--epochs 4] [--preset shapes] [--output DIR]
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import time
from pathlib import Path
from typing import Any

from nftkit.train.presets import get_preset
from nftkit.train.runner import TrainSpec, run_training
from nftkit.train.watch import WatchOptions


def timed_run(preset: str, epochs: int, output: Path, watch: WatchOptions) -> list[float]:
    """Seconds between consecutive epoch ends of one training run."""
    base = get_preset(preset)
    shutil.rmtree(output, ignore_errors=True)
    output.parent.mkdir(parents=True, exist_ok=True)
    spec = TrainSpec(
        model=base.model,
        rewards=base.rewards,
        prompts=base.prompts,
        config=base.train_config(epochs=epochs, checkpoint_every=10**6),
        output=output,
        preset=preset,
        policy_options=dict(base.policy),
        watch=watch,
    )
    ends: list[float] = []

    def on_epoch(record: dict[str, Any]) -> None:
        ends.append(time.perf_counter())

    run_training(
        spec, db_url=f"sqlite:///{output.parent / (output.name + '.db')}", on_epoch=on_epoch
    )
    return [b - a for a, b in itertools.pairwise(ends)]


def watch_share(output: Path) -> float:
    """Seconds spent watching over seconds per epoch, in percent, from the TensorBoard events.

    Robust to a loaded machine: both figures come from the same epochs of the same run.
    """
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    spent, total = 0.0, 0.0
    for events in (output / "trackers").rglob("events.out.tfevents.*"):
        acc = EventAccumulator(str(events), size_guidance={"scalars": 0})
        acc.Reload()
        if "time/watch_seconds" in acc.Tags()["scalars"]:
            spent += sum(e.value for e in acc.Scalars("time/watch_seconds"))
            total += sum(e.value for e in acc.Scalars("seconds_per_epoch"))
    return 100.0 * spent / total if total else float("nan")


def main() -> None:
    """Run both configurations and print the overhead."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="shapes")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/watch_overhead"))
    parser.add_argument(
        "--watched-only",
        action="store_true",
        help="only the watched run (the in-run share needs no plain run)",
    )
    args = parser.parse_args()
    result: dict[str, Any] = {"preset": args.preset}
    if not args.watched_only:
        plain = timed_run(args.preset, args.epochs, args.output / "plain", WatchOptions())
    watched = timed_run(
        args.preset,
        args.epochs,
        args.output / "watched",
        WatchOptions(log_with="tensorboard", monitor="jpeg"),
    )
    share = watch_share(args.output / "watched")
    result.update({"watched_epochs_s": watched, "in_run_watch_share_pct": share})
    if not args.watched_only:
        mean_plain, mean_watched = sum(plain) / len(plain), sum(watched) / len(watched)
        result.update(
            {
                "plain_s_per_epoch": mean_plain,
                "watched_s_per_epoch": mean_watched,
                "side_by_side_overhead_pct": 100.0 * (mean_watched - mean_plain) / mean_plain,
                "plain_epochs_s": plain,
            }
        )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
