"""bf16 autocast is chosen only where the CPU computes bf16 natively (else float32)."""

from __future__ import annotations

import pytest
import torch

from nftkit.policies import base


@pytest.mark.parametrize(
    ("machine", "avx512_bf16", "amx", "onednn", "expected"),
    [
        ("x86_64", False, False, True, None),  # AVX-512 without BF16: oneDNN converts, slower
        ("x86_64", True, False, True, torch.bfloat16),
        ("x86_64", False, True, True, torch.bfloat16),
        ("aarch64", False, False, True, torch.bfloat16),  # elsewhere: oneDNN's own check
        ("aarch64", False, False, False, None),
    ],
)
def test_cpu_bf16_needs_native_instructions(
    monkeypatch: pytest.MonkeyPatch,
    machine: str,
    avx512_bf16: bool,
    amx: bool,
    onednn: bool,
    expected: torch.dtype | None,
) -> None:
    monkeypatch.setattr(base.platform, "machine", lambda: machine)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: onednn)
    assert base.fast_autocast_dtype("cpu") is expected


def test_a_torch_without_the_probes_runs_in_float32(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base.platform, "machine", lambda: "x86_64")
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported")
    assert base.fast_autocast_dtype("cpu") is None
