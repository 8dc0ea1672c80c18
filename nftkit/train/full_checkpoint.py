"""Checkpoints, resume and export of full-parameter training (``finetune = "full"``).

A full checkpoint folder holds ``model_default`` (the trained transformer's state dict),
``model_old`` (the sampling policy), ``ema`` (the evaluation EMA, as a state dict) and
``optimizer`` (AdamW's moments keyed ``<parameter name>#<key>``) as safetensors, plus the
usual JSON files; the reference copy is not saved (it is the base model, loaded again on
resume). Under FSDP each file is gathered to the main process and written before the next one
is gathered, so the main process holds one full state dict at a time. The export of a full run
is ``full/transformer.safetensors`` (the EMA weights in the policy's weight dtype) named in
``nftkit_model.json`` under ``"full"``; ``nftkit export --merged`` turns it into a pipeline.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from safetensors.torch import save_file
from torch import Tensor

from nftkit.train import checkpoint as ckpt

if TYPE_CHECKING:
    from nftkit.train.trainer_base import AdapterTrainer

FULL_DIR = "full"
FULL_FILE = "transformer.safetensors"
_SEP = "#"


def flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """A name-keyed optimizer state dict as flat tensors and a JSON-able rest."""
    tensors: dict[str, Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for name, entry in state.get("state", {}).items():
        for key, value in entry.items():
            if isinstance(value, Tensor):  # own storage: gathered states may share a buffer
                tensors[f"{name}{_SEP}{key}"] = value.detach().to("cpu", copy=True).contiguous()
            else:
                scalars.setdefault(name, {})[key] = value
    return tensors, {"param_groups": state.get("param_groups", []), "scalars": scalars}


def unflatten_optimizer(tensors: dict[str, Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """Inverse of ``flatten_optimizer``."""
    state: dict[str, dict[str, Any]] = {}
    for flat, value in tensors.items():
        name, _, key = flat.rpartition(_SEP)
        state.setdefault(name, {})[key] = value
    for name, values in meta.get("scalars", {}).items():
        state.setdefault(name, {}).update(values)
    groups = [
        {**g, "betas": tuple(g["betas"])} if "betas" in g else g for g in meta["param_groups"]
    ]
    return {"state": state, "param_groups": groups}


def _export_dtype(trainer: AdapterTrainer) -> torch.dtype:
    dtype = getattr(trainer.policy, "dtype", None)
    return dtype if isinstance(dtype, torch.dtype) else torch.float32


def write_export(trainer: AdapterTrainer, ema_state: dict[str, Tensor]) -> Path:
    """Write the EMA weights to ``output/full/`` and ``nftkit_model.json`` (main process)."""
    folder = trainer.output_dir / FULL_DIR
    folder.mkdir(parents=True, exist_ok=True)
    dtype = _export_dtype(trainer)
    weights = {
        k: (v.to(dtype) if v.is_floating_point() else v).contiguous() for k, v in ema_state.items()
    }
    tmp = folder / f".{FULL_FILE}.tmp"
    save_file(weights, str(tmp))
    tmp.replace(folder / FULL_FILE)
    info = {
        **trainer.model_info,
        "full": {"file": f"{FULL_DIR}/{FULL_FILE}", "dtype": str(dtype).removeprefix("torch.")},
        "epoch": trainer.epoch,
        "global_step": trainer.global_step,
    }
    ckpt.write_json_atomic(trainer.output_dir / "nftkit_model.json", info)
    return folder


def export_full(trainer: AdapterTrainer) -> Path:
    """Gather the EMA weights (all processes) and write the export (main process)."""
    state = trainer.module_state.gather(trainer.ema.shadow)
    folder = trainer.output_dir / FULL_DIR
    if trainer.dist.is_main:
        write_export(trainer, state)
    trainer.dist.barrier()
    return folder


def save_full_checkpoint(trainer: AdapterTrainer, json_files: dict[str, Any]) -> Path:
    """Write the full checkpoint of ``trainer.epoch`` and the export (collective under FSDP)."""
    dist = trainer.dist
    root = trainer.checkpoint_root
    path = root / f"{ckpt.PREFIX}{trainer.epoch:07d}"
    done = torch.tensor([float((path / ckpt.COMPLETE_MARKER).is_file())])
    if bool(dist.gather(done)[0]):  # the main process's view decides for every process
        return path
    state_io = trainer.module_state
    meta: dict[str, Any] = {}

    def optimizer() -> dict[str, Tensor]:
        tensors, rest = flatten_optimizer(state_io.optimizer_state(trainer.optimizer))
        meta.update(rest)
        return tensors

    def ema() -> dict[str, Tensor]:
        state = state_io.gather(trainer.ema.shadow)
        if dist.is_main:
            write_export(trainer, state)
        return state

    producers = {
        "optimizer": optimizer,  # first: fills optimizer_meta before the JSON files are written
        "model_default": lambda: state_io.gather(),
        "model_old": lambda: state_io.gather(trainer.full_weights.copies["old"]),
        "ema": ema,
    }
    if dist.is_main:
        path = ckpt.save_checkpoint(
            root,
            trainer.epoch,
            tensor_files=producers,
            json_files={**json_files, "optimizer_meta": meta},
            keep=trainer.config.keep_checkpoints,
        )
    else:
        for produce in producers.values():
            produce()
    dist.barrier()
    return path


def load_full_checkpoint(trainer: AdapterTrainer, loaded: Any) -> None:
    """Restore the trained, old and EMA weights and the optimizer from a full checkpoint."""
    state_io = trainer.module_state
    reads = not state_io.sharded or trainer.dist.is_main  # under FSDP the main process reads

    def read(name: str) -> dict[str, Tensor]:
        return loaded.load(name) if reads else {}

    state_io.scatter(read("model_old"), into=trainer.full_weights.copies["old"])
    state_io.scatter(read("ema"), into=trainer.ema.shadow)
    state_io.scatter(read("model_default"))
    optimizer = (
        unflatten_optimizer(read("optimizer"), loaded.json["optimizer_meta"]) if reads else {}
    )
    state_io.load_optimizer_state(trainer.optimizer, optimizer)
