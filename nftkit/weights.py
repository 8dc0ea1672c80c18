"""Where reward weights come from: a hub id by default, or ``--weights-dir`` / NFTKIT_WEIGHTS_DIR.

With a weights directory, every reward reads ``DIR/<reward name>/`` in the model's real on-disk
format (a Hugging Face model folder, an open_clip state dict, ...). Nothing is downloaded then.
"""

from __future__ import annotations

import os
from pathlib import Path

from nftkit.errors import MissingWeightsError

WEIGHTS_DIR_ENV = "NFTKIT_WEIGHTS_DIR"


def weights_root(explicit: str | Path | None = None) -> Path | None:
    """The weights directory from the argument or NFTKIT_WEIGHTS_DIR, or None for the hub."""
    value = explicit if explicit is not None else os.environ.get(WEIGHTS_DIR_ENV)
    return Path(value).expanduser() if value else None


def local_weights(reward_name: str, explicit: str | Path | None = None) -> Path | None:
    """``<weights dir>/<reward_name>`` when a weights directory is configured, else None.

    Raises MissingWeightsError when a weights directory is configured but lacks this reward.
    """
    root = weights_root(explicit)
    if root is None:
        return None
    folder = root / reward_name
    if not folder.is_dir():
        raise MissingWeightsError(
            f"weights for reward '{reward_name}' not found: looked in {folder} "
            f"(from --weights-dir / {WEIGHTS_DIR_ENV}={root}). Put the model files there in "
            f"their original format, or unset {WEIGHTS_DIR_ENV} to load from the Hugging Face hub."
        )
    return folder


def require_file(folder: Path, name: str, reward_name: str, hint: str) -> Path:
    """Path of ``folder/name``, or a MissingWeightsError that says what file is expected."""
    path = folder / name
    if not path.is_file():
        raise MissingWeightsError(
            f"weights for reward '{reward_name}' are incomplete: expected {path} ({hint})."
        )
    return path
