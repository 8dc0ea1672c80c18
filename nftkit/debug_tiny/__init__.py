"""Tiny random-init checkpoints for every reward, laid out as ``--weights-dir`` expects.

``make_tiny_weights(DIR)`` writes DIR/<reward>/ for each model reward in the model's real
on-disk format, so tests and benchmarks run the real loading code offline. The scores mean
nothing; only shapes, formats and code paths are real.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import torch

from nftkit.debug_tiny.clip import write_tiny_clip
from nftkit.debug_tiny.models import write_tiny_hps, write_tiny_imagereward, write_tiny_mask2former


def _pickscore(folder: Path) -> None:
    write_tiny_clip(folder, seed=1)


def _clipscore(folder: Path) -> None:
    write_tiny_clip(folder, seed=2)


def _aesthetic(folder: Path) -> None:
    from nftkit.debug_tiny.clip import TINY_CLIP_PROJECTION
    from nftkit.rewards._mlp import LinearHead
    from nftkit.rewards.aesthetic import MLP_FILE

    write_tiny_clip(folder, seed=3)
    torch.manual_seed(3)
    head = LinearHead((TINY_CLIP_PROJECTION, 32, 16, 8, 4, 1))
    torch.save(head.state_dict(), folder / MLP_FILE)


def _hpsv2(folder: Path) -> None:
    from nftkit.rewards.hpsv2 import HPS_FILES

    write_tiny_hps(folder, tuple(HPS_FILES.values()), seed=4)


def _imagereward(folder: Path) -> None:
    from nftkit.rewards.imagereward import CHECKPOINT

    write_tiny_imagereward(folder, CHECKPOINT, seed=5)


def _geneval(folder: Path) -> None:
    from nftkit.rewards.geneval import CLIP_SUBDIR, DETECTOR_SUBDIR, GENEVAL_CLASSES

    write_tiny_mask2former(folder / DETECTOR_SUBDIR, list(GENEVAL_CLASSES), seed=6)
    write_tiny_clip(folder / CLIP_SUBDIR, seed=7)


TINY_BUILDERS: dict[str, Callable[[Path], None]] = {
    "pickscore": _pickscore,
    "clipscore": _clipscore,
    "aesthetic": _aesthetic,
    "hpsv2": _hpsv2,
    "imagereward": _imagereward,
    "geneval": _geneval,
    "hpsv3": lambda folder: _hpsv3(folder),
}
"""Reward name -> writer of DIR/<reward>/ (rewards without weights are absent)."""


def _hpsv3(folder: Path) -> None:
    from nftkit.debug_tiny.qwen2vl import write_tiny_hpsv3

    write_tiny_hpsv3(folder)


def make_tiny_weights(root: str | Path, names: Iterable[str] | None = None) -> dict[str, Path]:
    """Write tiny checkpoints for ``names`` (default: all) under ``root``; returns their folders."""
    root = Path(root)
    chosen = list(TINY_BUILDERS) if names is None else list(names)
    unknown = [n for n in chosen if n not in TINY_BUILDERS]
    if unknown:
        raise ValueError(f"no tiny checkpoint for {unknown}; known: {sorted(TINY_BUILDERS)}")
    written = {}
    for name in chosen:
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        TINY_BUILDERS[name](folder)
        written[name] = folder
    return written
