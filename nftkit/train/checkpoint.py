"""Atomic, pickle-free training checkpoints.

A checkpoint is a folder ``<output>/checkpoints/step-<N>/`` holding tensors in safetensors files
and everything else in JSON. It is written under a temporary name and renamed into place only
once complete (with a ``COMPLETE`` marker written last), so a crash mid-write never leaves a
folder that resume would take for valid. Older checkpoints beyond ``keep`` are removed.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

COMPLETE_MARKER = "COMPLETE"
PREFIX = "step-"


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
    tensor_files: dict[str, dict[str, torch.Tensor]],
    json_files: dict[str, Any],
    keep: int = 2,
) -> Path:
    """Atomically write ``root/step-<step>`` with the given safetensors and JSON files."""
    root.mkdir(parents=True, exist_ok=True)
    final = root / f"{PREFIX}{step:07d}"
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".tmp-{PREFIX}{step:07d}-"))
    try:
        for name, tensors in tensor_files.items():
            save_file(_contiguous_cpu(tensors), str(tmp / f"{name}.safetensors"))
        for name, data in json_files.items():
            (tmp / f"{name}.json").write_text(json.dumps(data, indent=2))
        (tmp / COMPLETE_MARKER).write_text(str(step))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for old in list_checkpoints(root)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def list_checkpoints(root: Path) -> list[Path]:
    """Complete checkpoints under ``root``, oldest first (incomplete ones are ignored)."""
    if not root.is_dir():
        return []
    found = [
        p for p in root.iterdir()
        if p.is_dir() and p.name.startswith(PREFIX) and (p / COMPLETE_MARKER).is_file()
    ]
    return sorted(found, key=lambda p: int(p.name[len(PREFIX):]))


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
