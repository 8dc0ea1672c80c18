"""Reading training checkpoints back, falling back past damaged ones.

A checkpoint folder with its ``COMPLETE`` marker can still be damaged afterwards (a truncated
safetensors file, a deleted file, a JSON file edited by hand). Resume reads every file of the
newest complete checkpoint into memory before touching the trainer; when one of them cannot be
read it warns, moves the folder aside as ``corrupt-step-<N>`` (kept for inspection, and so that
a later save at that step writes a fresh one) and tries the previous checkpoint. When none can
be read it raises an error instead of starting over.

A full-parameter checkpoint (``finetune = "full"`` in its trainer state) holds whole model state
dicts, too large to read on every process up front: its safetensors files are checked (header
and size, which catches a truncated file) and read later with ``CheckpointState.load``.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file

from nftkit.errors import NftkitError
from nftkit.train.checkpoint import PREFIX, list_checkpoints

TENSOR_FILES = ("adapter_default", "adapter_old", "ema", "optimizer")
FULL_TENSOR_FILES = ("model_default", "model_old", "ema", "optimizer")
JSON_FILES = ("trainer_state", "optimizer_meta")
CORRUPT_PREFIX = "corrupt-"


class CheckpointUnreadableError(NftkitError):
    """No complete checkpoint of a run folder could be read."""


@dataclass
class CheckpointState:
    """Every file of one checkpoint, read into memory (``files``: checked, read on ``load``)."""

    path: Path
    tensors: dict[str, dict[str, torch.Tensor]]
    json: dict[str, Any]
    files: dict[str, Path] = field(default_factory=dict)

    def load(self, name: str) -> dict[str, torch.Tensor]:
        """The tensors of file ``name`` (read now when it was only checked)."""
        if name in self.tensors:
            return self.tensors[name]
        return load_file(str(self.files[name]))


def read_checkpoint(
    path: Path,
    tensor_files: tuple[str, ...] | None = None,
    json_files: tuple[str, ...] = JSON_FILES,
) -> CheckpointState:
    """Read all of ``path``'s files; a missing or damaged one raises ValueError naming it.

    ``tensor_files`` None: the LoRA files, or for a full-parameter checkpoint the full files,
    only checked here (``CheckpointState.load`` reads them).
    """
    data = _read_json_files(path, json_files)
    full = is_full_checkpoint(data)
    names = tensor_files or (FULL_TENSOR_FILES if full else TENSOR_FILES)
    tensors: dict[str, dict[str, torch.Tensor]] = {}
    files: dict[str, Path] = {}
    for name in names:
        file = path / f"{name}.safetensors"
        try:
            if full:
                with safe_open(str(file), "pt") as handle:
                    handle.keys()
                files[name] = file
            else:
                tensors[name] = load_file(str(file))
        except (OSError, SafetensorError, ValueError) as exc:
            raise ValueError(f"{file.name}: {_reason(exc)}") from exc
    return CheckpointState(path, tensors, data, files)


def is_full_checkpoint(data: dict[str, Any]) -> bool:
    """True when the checkpoint's trainer state says ``finetune = "full"``."""
    config = data.get("trainer_state", {}).get("config", {})
    return isinstance(config, dict) and config.get("finetune", "lora") == "full"


def _read_json_files(path: Path, json_files: tuple[str, ...]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for name in json_files:
        file = path / f"{name}.json"
        try:
            data[name] = json.loads(file.read_text())
        except (OSError, ValueError) as exc:
            raise ValueError(f"{file.name}: {_reason(exc)}") from exc
        if not isinstance(data[name], dict):
            raise ValueError(f"{file.name}: expected a JSON object")
    return data


def _reason(exc: BaseException) -> str:
    if isinstance(exc, FileNotFoundError):
        return "missing"
    return " ".join(f"{type(exc).__name__}: {exc}".split())[:200]


def warn(message: str) -> None:
    """Print a one-line warning on stderr."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


def newest_readable_checkpoint(
    root: Path,
    check: Callable[[CheckpointState], None] | None = None,
    on_warning: Callable[[str], None] = warn,
    set_aside: bool = True,
) -> CheckpointState | None:
    """The newest complete checkpoint under ``root`` whose files all read (and pass ``check``).

    None when ``root`` has no complete checkpoint at all. Damaged checkpoints on the way are
    renamed ``corrupt-step-<N>`` (when ``set_aside``: the main process) with a warning; if every
    one is damaged,
    CheckpointUnreadableError says which and why, and nothing restarts from scratch.
    """
    found = list_checkpoints(root)
    if not found:
        return None
    problems = []
    for path in reversed(found):
        try:
            state = read_checkpoint(path)
            if check is not None:
                check(state)
            return state
        except (ValueError, KeyError, TypeError) as exc:
            problems.append(f"{path.name}: {exc}")
            if set_aside:
                moved = _set_aside(path)
                on_warning(
                    f"checkpoint {path} is damaged ({exc}); moved it to {moved.name}, "
                    "falling back to the previous one"
                )
    raise CheckpointUnreadableError(
        f"no readable checkpoint in {root} ({'; '.join(problems)}); the damaged ones are kept "
        f"as {CORRUPT_PREFIX}{PREFIX}*. Restore a copy, or start over with another --output"
    )


def _set_aside(path: Path) -> Path:
    """Rename a damaged checkpoint so that it no longer counts as complete."""
    target = path.with_name(f"{CORRUPT_PREFIX}{path.name}")
    n = 1
    while target.exists():
        target = path.with_name(f"{CORRUPT_PREFIX}{path.name}.{n}")
        n += 1
    path.rename(target)
    return target
