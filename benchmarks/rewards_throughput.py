"""Throughput of the model rewards on CPU with tiny checkpoints, and the toolkit's overhead.

For each reward: build tiny random-init checkpoints (``nftkit debug make-tiny-weights``), load
the reward, then time scoring ``--batch`` PIL images of ``--size`` px. "toolkit" is the public
call ``reward(images, prompts, metadata)`` (input checks, conversion, batching, output checks);
"bare" is the same preprocessing + model forward on the same inputs without the toolkit layer
(``reward.score_batch``). overhead = toolkit / bare - 1 (target <= 10%). Medians of ``--repeats`` alternating runs.
Prints a table and writes JSON to ``--output``.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/rewards_throughput.py
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from nftkit.debug_tiny import make_tiny_weights
from nftkit.images import to_pil
from nftkit.registry import create_reward

REWARDS = ("pickscore", "clipscore", "hpsv2", "aesthetic", "imagereward", "geneval")
GENEVAL_LINE = {
    "tag": "color_attr",
    "include": [
        {"class": "wine glass", "count": 1, "color": "purple"},
        {"class": "apple", "count": 1, "color": "black"},
    ],
    "prompt": "a photo of a purple wine glass and a black apple",
}


def paired_medians(
    first: Callable[[], Any], second: Callable[[], Any], repeats: int
) -> tuple[float, float]:
    """Median wall times of two functions timed alternately (one warm-up each), so that
    load from other processes on a shared machine hits both alike."""
    first()
    second()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for fn, bucket in ((first, times[0]), (second, times[1])):
            start = time.perf_counter()
            fn()
            bucket.append(time.perf_counter() - start)
    return statistics.median(times[0]), statistics.median(times[1])


def measure(name: str, weights: Path, batch: int, size: int, repeats: int) -> dict[str, Any]:
    """images/s through the toolkit and bare, for one reward."""
    rng = np.random.default_rng(0)
    images = [
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)) for _ in range(batch)
    ]
    prompts = [GENEVAL_LINE["prompt"]] * batch
    metadata = [dict(GENEVAL_LINE) for _ in range(batch)]
    reward = create_reward(name, weights_dir=weights, batch_size=batch)
    reward.ensure_loaded()
    pil = to_pil(images)
    toolkit, bare = paired_medians(
        lambda: reward(images, prompts, metadata),
        lambda: reward.score_batch(pil, prompts, metadata),
        repeats,
    )
    return {
        "reward": name,
        "images_per_s": batch / toolkit,
        "bare_images_per_s": batch / bare,
        "toolkit_s": toolkit,
        "bare_s": bare,
        "overhead": toolkit / bare - 1.0,
    }


def main() -> None:
    """Parse arguments, run every reward, print and save."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--rewards", default=",".join(REWARDS))
    parser.add_argument(
        "--output", type=Path, default=Path(__file__).parent / "results" / "rewards_throughput.json"
    )
    args = parser.parse_args()
    names = [n for n in args.rewards.split(",") if n]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        make_tiny_weights(tmp, names)
        for name in names:
            row = measure(name, Path(tmp), args.batch, args.size, args.repeats)
            rows.append(row)
            print(
                f"{name:12s} {row['images_per_s']:8.1f} img/s  bare {row['bare_images_per_s']:8.1f}"
                f" img/s  overhead {100 * row['overhead']:+5.1f}%",
                flush=True,
            )
    result = {
        "benchmark": "rewards_throughput",
        "device": "cpu",
        "checkpoints": "tiny random-init (nftkit debug make-tiny-weights)",
        "batch": args.batch,
        "image_size": args.size,
        "repeats": args.repeats,
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "rows": rows,
        "max_overhead": max(r["overhead"] for r in rows),
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
