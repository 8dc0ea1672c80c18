"""Shared pieces of the GPU readiness parts: settings, the results log, timing and memory.

Every part is its own process (``python benchmarks/gpu/<module>.py PART --out DIR``) so that
a crash or a timeout in one part leaves the others' figures. A part appends each figure to
``DIR/results.jsonl`` the moment it is measured (one JSON object per line: part, key, data);
``report.py`` merges the lines into ``results.json`` and ``results.md``.

``--dry-run`` (or ``NFTKIT_GPU_DRY_RUN=1``) runs the same code on the CPU with the tiny
builders' configs and small batches, so the script is tested end to end without a GPU.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
CONFIGS = HERE / "configs.json"
RESULTS_LINES = "results.jsonl"
DRY_ENV = "NFTKIT_GPU_DRY_RUN"


CONFIGS_ENV = "NFTKIT_GPU_CONFIGS"


def load_configs() -> dict[str, Any]:
    """The real-size architectures of configs.json ($NFTKIT_GPU_CONFIGS: another file with
    the same keys, e.g. shrunk sizes to exercise the real-size code path on a CPU)."""
    return json.loads(Path(os.environ.get(CONFIGS_ENV, CONFIGS)).read_text())


@dataclass
class Settings:
    """What one part runs with: device, dtype, output folder, time box and dry-run flag."""

    out: Path
    dry_run: bool
    device: torch.device
    dtype: torch.dtype
    budget_s: float
    started: float

    def remaining(self) -> float:
        """Seconds left of this part's time box."""
        return self.budget_s - (time.perf_counter() - self.started)

    def fits(self, estimate_s: float, reserve_s: float = 5.0) -> bool:
        """True when a measurement estimated at ``estimate_s`` still fits the time box."""
        return estimate_s + reserve_s < self.remaining()


def parse_settings(
    description: str, extra: Callable[[argparse.ArgumentParser], None] | None = None
) -> tuple[Settings, argparse.Namespace]:
    """Parse the common command line (--out, --dry-run, --budget) plus a part's own options."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--out", type=Path, required=True, help="output folder")
    parser.add_argument("--dry-run", action="store_true", help="tiny configs on the CPU")
    parser.add_argument("--budget", type=float, default=60.0, help="time box of this part (s)")
    parser.add_argument(
        "--device",
        default=None,
        help="default: cuda (cpu in a dry run); cpu without --dry-run runs the "
        "real-size code path, with configs from $NFTKIT_GPU_CONFIGS",
    )
    if extra is not None:
        extra(parser)
    args = parser.parse_args()
    dry = args.dry_run or os.environ.get(DRY_ENV, "") == "1"
    device = torch.device(args.device or ("cpu" if dry else "cuda"))
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("no CUDA device: run with --dry-run (tiny configs on the CPU) or on a GPU machine")
    dtype = torch.float32 if dry else torch.bfloat16
    args.out.mkdir(parents=True, exist_ok=True)
    settings = Settings(args.out, dry, device, dtype, args.budget, time.perf_counter())
    return settings, args


class Recorder:
    """Appends one part's figures to DIR/results.jsonl as they are measured."""

    def __init__(self, settings: Settings, part: str) -> None:
        self.path = settings.out / RESULTS_LINES
        self.part = part
        self.dry_run = settings.dry_run

    def add(self, key: str, data: Any) -> None:
        """Write {part, key, data} as one line now (flushed), and echo it."""
        line = json.dumps({"part": self.part, "key": key, "data": clean(data)}, sort_keys=True)
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line + "\n")
        print(f"[{self.part}] {key}: {json.dumps(clean(data))}", flush=True)


def clean(value: Any) -> Any:
    """JSON-safe copy: floats rounded to 6 significant digits, NaN/inf as None."""
    if isinstance(value, float):
        return None if not math.isfinite(value) else float(f"{value:.6g}")
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return value


def build_on(device: torch.device, build: Callable[[], Any]) -> Any:
    """``build()`` with ``device`` as the default device (random init where the weights will
    live: seconds instead of a minute of CPU init for billions of parameters); if a library
    does not support that, build on the CPU instead (and say so)."""
    if device.type == "cpu":
        return build()
    try:
        with torch.device(device):
            return build()
    except Exception as exc:  # e.g. a numpy conversion of a tensor created on the GPU
        print(
            f"building on {device} failed ({type(exc).__name__}: {exc}); building on the CPU",
            flush=True,
        )
        return build()


def sync(device: torch.device) -> None:
    """Wait for queued GPU work (no-op on CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], Any], device: torch.device, repeats: int, warmup: int = 1) -> float:
    """Median wall seconds of ``fn`` over ``repeats`` runs after ``warmup`` runs (synchronized)."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(max(repeats, 1)):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def reset_peak(device: torch.device) -> None:
    """Start a new peak-memory window (CUDA only)."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_gib(device: torch.device) -> float | None:
    """Peak CUDA memory allocated since the last reset (GiB); None on CPU."""
    if device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2**30


def is_oom(exc: BaseException) -> bool:
    """True for a CUDA (or CPU allocator) out-of-memory error."""
    return isinstance(exc, torch.cuda.OutOfMemoryError) or "out of memory" in str(exc).lower()


def free_memory(device: torch.device) -> None:
    """Release cached blocks after an OOM."""
    import gc

    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
