"""What watching costs: a shapes epoch plain vs with TensorBoard logging and a jpeg monitor.

Side by side, one run each, same preset, seed and epochs; the figure is the mean wall time
between the end of consecutive epochs (the first epoch is warm-up and not counted), which
includes the monitor scoring, the statistics and the tracker writes. Held-out evaluations are
not part of it (they are a separate, chosen cost). Target (issue 21): <= 3%.

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
    spec = TrainSpec(model=base.model, rewards=base.rewards, prompts=base.prompts,
                     config=base.train_config(epochs=epochs, checkpoint_every=10**6),
                     output=output, preset=preset, policy_options=dict(base.policy),
                     watch=watch)
    ends: list[float] = []

    def on_epoch(record: dict[str, Any]) -> None:
        ends.append(time.perf_counter())

    run_training(spec, db_url=f"sqlite:///{output.parent / (output.name + '.db')}",
                 on_epoch=on_epoch)
    return [b - a for a, b in itertools.pairwise(ends)]


def main() -> None:
    """Run both configurations and print the overhead."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="shapes")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/watch_overhead"))
    args = parser.parse_args()
    plain = timed_run(args.preset, args.epochs, args.output / "plain", WatchOptions())
    watched = timed_run(args.preset, args.epochs, args.output / "watched",
                        WatchOptions(log_with="tensorboard", monitor="jpeg"))
    mean_plain, mean_watched = sum(plain) / len(plain), sum(watched) / len(watched)
    result = {"preset": args.preset, "epochs_timed": len(plain),
              "plain_s_per_epoch": mean_plain, "watched_s_per_epoch": mean_watched,
              "overhead_pct": 100.0 * (mean_watched - mean_plain) / mean_plain,
              "plain_epochs_s": plain, "watched_epochs_s": watched}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
