"""The --plan memory estimate: monotone where it must be, exact parameter counts, CLI line."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import save_file

from nftkit.train.memory_plan import KNOWN, architecture_for, estimate_memory, safetensors_numel
from nftkit.train.presets import get_preset
from tests.family_helpers import invoke

FLUX = KNOWN["black-forest-labs/flux.1"]


def _peak(config: object, **policy: object) -> float:
    return estimate_memory(FLUX, config, {"resolution": 512, **policy}).peak_gb


def test_estimate_grows_with_batch_and_resolution_and_shrinks_with_savings() -> None:
    config = get_preset("flux-dev-pickscore").train_config()
    bigger = replace(config, train_batch_size=8, sample_batch_size=16)
    assert _peak(bigger) > _peak(config)
    assert _peak(config, resolution=1024) > _peak(config, resolution=512)
    assert _peak(config, gradient_checkpointing=True) < _peak(config)
    assert _peak(config, text_encoder_device="cpu") < _peak(config)
    assert _peak(replace(config, lora_rank=64)) > _peak(config)
    weights = FLUX.transformer * 2 / 1e9
    assert weights < _peak(config) < 80  # the bf16 weights and less than an 80 GB card


def test_header_count_equals_the_tensors(tmp_path: Path) -> None:
    tensors = {"a": torch.zeros(3, 5), "b": torch.zeros(7), "c": torch.zeros(2, 2, 2)}
    (tmp_path / "sub").mkdir()
    save_file(tensors, tmp_path / "sub" / "model.safetensors")
    save_file({"d": torch.zeros(4, dtype=torch.bfloat16)}, tmp_path / "more.safetensors")
    assert safetensors_numel(tmp_path) == 15 + 7 + 8 + 4


def test_tiny_flux_folder_is_counted_from_its_files(tmp_path: Path) -> None:
    from diffusers import FluxTransformer2DModel

    invoke("debug", "make-tiny", "--family", "flux", str(tmp_path / "dev"))
    arch = architecture_for(str(tmp_path / "dev"))
    assert arch is not None
    model = FluxTransformer2DModel.from_pretrained(tmp_path / "dev" / "transformer")
    assert arch.transformer == sum(p.numel() for p in model.parameters())
    assert arch.blocks == len(model.transformer_blocks) + len(model.single_transformer_blocks)
    assert arch.text_encoders > 0 and arch.vae > 0


def test_plan_prints_the_estimate_without_a_download() -> None:
    out = invoke("train", "--preset", "flux-dev-pickscore", "--plan").output
    line = next(x for x in out.splitlines() if x.startswith("estimated peak GPU memory"))
    assert " GB in " in line and "FLUX.1" in line
    shapes = invoke("train", "--preset", "shapes", "--plan").output
    assert "n/a (the shapes model runs on the CPU)" in shapes
