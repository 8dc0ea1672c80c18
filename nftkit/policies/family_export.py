"""``nftkit export --merge`` for the diffusers families: fuse the EMA LoRA (or take a full run's
EMA weights), save the pipeline."""

from __future__ import annotations

from pathlib import Path

import torch

from nftkit.errors import UsageError
from nftkit.policies.diffusers_flow import to_dtype
from nftkit.policies.loading import describe_model, load_policy


def export_merged_family(run_dir: str | Path, output: str | Path, dtype: str | None = None) -> Path:
    """Write the base pipeline with the EMA LoRA fused (bf16 by default) to a new folder."""
    from nftkit.train.export import merge_lora_into_base

    run_dir, output = Path(run_dir), Path(output)
    info = describe_model(run_dir)
    if not (info.get("lora") or info.get("full")):
        raise UsageError(f"{run_dir} is not a training output folder written by `nftkit train`")
    if output.exists() and any(output.iterdir()):
        raise UsageError(f"{output} is not empty; choose a new folder")
    policy = load_policy(run_dir, device="cpu", dtype=torch.float32)
    save = getattr(policy, "save_merged", None)
    if save is None:
        raise UsageError(f"model family '{info.get('family')}' cannot save a merged model")
    merge_lora_into_base(policy.model)
    save(output, to_dtype(dtype, torch.bfloat16))
    return output
