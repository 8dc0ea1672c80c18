"""Atomic, pickle-free training checkpoints.

A checkpoint is a folder ``<output>/checkpoints/step-<N>/`` holding tensors in safetensors files
and everything else in JSON. It is written under a temporary name and renamed into place only
once complete (with a ``COMPLETE`` marker written last), so a crash mid-write never leaves a
folder that resume would take for valid. Files and folders are fsynced before the rename, so a
complete checkpoint also survives a power cut. Temporary folders that a killed process left
behind are removed by the next save. Older checkpoints beyond ``keep`` are removed.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from nftkit.train.faults import fault_point

COMPLETE_MARKER = "COMPLETE"
PREFIX = "step-"
TMP_PREFIX = f".tmp-{PREFIX}"


def _contiguous_cpu(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to ``path`` through a temporary file and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(data, handle, indent=2)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def optimizer_to_tensors(optimizer: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    """Split an optimizer state dict into flat tensors (safetensors) and JSON-able rest."""
    state = optimizer.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, entry in state["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    return tensors, {"param_groups": state["param_groups"], "scalars": scalars}


def optimizer_from_tensors(
    optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict
) -> None:
    """Inverse of optimizer_to_tensors."""
    state: dict[int, dict[str, Any]] = {}
    for name, value in tensors.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    for index, values in meta.get("scalars", {}).items():
        state.setdefault(int(index), {}).update(values)
    optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def save_checkpoint(
    root: Path,
    step: int,
    tensor_files: dict[str, dict[str, torch.Tensor] | Callable[[], dict[str, torch.Tensor]]],
    json_files: dict[str, Any],
    keep: int = 2,
) -> Path:
    """Atomically write ``root/step-<step>`` with the given safetensors and JSON files.

    A ``tensor_files`` value may be a callable returning the tensors: it is called when its
    file is written (in order, all before the JSON files), so that only one large set is in
    memory at a time.

    A complete checkpoint of the same step that is already there is kept as it is: training is
    deterministic per step, so a second save at that step (on the way out right after a regular
    save, or right after a resume) holds the same state, and deleting the old folder before
    renaming the new one would open a window in which a crash loses it.
    """
    root.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(root)
    final = root / f"{PREFIX}{step:07d}"
    if (final / COMPLETE_MARKER).is_file():
        return final
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f"{TMP_PREFIX}{step:07d}-"))
    try:
        for name, tensors in tensor_files.items():
            values = tensors() if callable(tensors) else tensors
            save_file(_contiguous_cpu(values), str(tmp / f"{name}.safetensors"))
            del values
            _fsync_path(tmp / f"{name}.safetensors")
        fault_point("mid-checkpoint", step)
        for name, data in json_files.items():
            _write_synced(tmp / f"{name}.json", json.dumps(data, indent=2))
        _write_synced(tmp / COMPLETE_MARKER, str(step))  # last: marks the folder complete
        _fsync_path(tmp)
        fault_point("before-rename", step)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
        _fsync_path(root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in list_checkpoints(root)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def remove_stale_temporaries(root: Path) -> list[Path]:
    """Delete temporary checkpoint folders that a killed writer left in ``root``."""
    stale = [p for p in root.glob(f"{TMP_PREFIX}*") if p.is_dir()] if root.is_dir() else []
    for path in stale:
        shutil.rmtree(path, ignore_errors=True)
    return stale


def _write_synced(path: Path, text: str) -> None:
    with path.open("w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def _fsync_path(path: Path) -> None:
    """fsync a file or a folder (a folder's entries: makes a rename durable)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints under ``root``, oldest first (incomplete ones are ignored)."""
    if not root.is_dir():
        return []
    found = [
        p
        for p in root.iterdir()
        if p.is_dir() and p.name.startswith(PREFIX) and (p / COMPLETE_MARKER).is_file()
    ]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX) :]))


def latest_checkpoint(root: Path) -> Path | None:
    """The newest complete checkpoint, or None."""
    found = list_checkpoints(root)
    return found[-1] if found else None


def load_tensors(folder: Path, name: str) -> dict[str, torch.Tensor]:
    """Read ``folder/name.safetensors``."""
    return load_file(str(folder / f"{name}.safetensors"))


def load_json(folder: Path, name: str) -> Any:
    """Read ``folder/name.json``."""
    return json.loads((folder / f"{name}.json").read_text())
