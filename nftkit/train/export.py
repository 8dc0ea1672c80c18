"""Export a training output: the diffusers LoRA folder, or a full model with the LoRA fused.

``export_lora`` copies ``DIR/lora/pytorch_lora_weights.safetensors`` (the EMA adapter in
diffusers format). ``export_merged`` loads the base model with the EMA adapter, adds the LoRA
delta into the base weights (peft's merge), removes the LoRA layers and saves a plain model:
a diffusers pipeline folder for Stable Diffusion 3, the shapes format for shapes models. A
full-parameter run (``finetune = "full"``) has no LoRA: ``export_merged`` saves the base
model with its EMA weights, and ``export_lora`` says to use ``--merged``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn

from nftkit.errors import UsageError
from nftkit.policies.loading import describe_model, load_policy

DIFFUSERS_LORA_FILE = "pytorch_lora_weights.safetensors"


def _require_training_output(run_dir: Path) -> dict:
    info = describe_model(run_dir)
    if not (info.get("lora") or info.get("full")):
        raise UsageError(f"{run_dir} is not a training output folder written by `nftkit train`")
    return info


def export_lora(run_dir: str | Path, output: str | Path) -> Path:
    """Copy the diffusers-format LoRA of ``run_dir`` into the folder ``output``."""
    run_dir, output = Path(run_dir), Path(output)
    if _require_training_output(run_dir).get("full"):
        raise UsageError(
            f"{run_dir} trained every weight (finetune=full), so it has no LoRA to export; "
            f"write the full model with: nftkit export {run_dir} -o {output} --merged"
        )
    source = run_dir / "lora" / DIFFUSERS_LORA_FILE
    if not source.is_file():
        raise UsageError(f"no diffusers LoRA at {source}")
    output.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source, output / DIFFUSERS_LORA_FILE)
    return output


@torch.no_grad()
def merge_lora_into_base(model: nn.Module, adapter: str = "default") -> int:
    """Fuse ``adapter`` into the base weights and replace every LoRA layer by its base layer.

    Returns the number of layers merged. Other adapters (e.g. "old") are dropped.
    """
    tuner = [(name, m) for name, m in model.named_modules() if isinstance(m, BaseTunerLayer)]
    for name, layer in tuner:
        layer.merge(adapter_names=[adapter])
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, layer.get_base_layer())
    return len(tuner)


def export_merged(run_dir: str | Path, output: str | Path, dtype: str | None = None) -> Path:
    """Write the base model with the EMA LoRA fused to ``output`` (a new folder)."""
    run_dir, output = Path(run_dir), Path(output)
    info = _require_training_output(run_dir)
    if output.exists() and any(output.iterdir()):
        raise UsageError(f"{output} is not empty; choose a new folder")
    family = info.get("family", "shapes")
    if family == "sd3":
        from nftkit.policies.sd3 import parse_dtype

        policy = load_policy(run_dir, device="cpu", dtype=torch.float32)
        merge_lora_into_base(policy.model)
        pipeline = policy.pipeline  # type: ignore[attr-defined]
        pipeline.to(dtype=parse_dtype(dtype, torch.bfloat16))
        pipeline.save_pretrained(str(output), safe_serialization=True)
    elif family == "shapes":
        from nftkit.policies.sd3 import parse_dtype

        policy = load_policy(run_dir, device="cpu")
        merge_lora_into_base(policy.model)
        policy.save_pretrained(output, dtype=parse_dtype(dtype, torch.float16))  # type: ignore[attr-defined]
    else:
        raise UsageError(f"cannot export model family '{family}'")
    return output
