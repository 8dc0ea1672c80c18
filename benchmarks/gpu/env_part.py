"""The machine part: device, versions, the policy families present, and the bf16 matmul ceiling.

python benchmarks/gpu/env_part.py --out DIR [--dry-run]
"""

from __future__ import annotations

import importlib.metadata as md
import platform
import time
from typing import Any

import torch
from common import Recorder, load_configs, parse_settings, sync

PACKAGES = (
    "torch",
    "diffusers",
    "transformers",
    "peft",
    "accelerate",
    "open_clip_torch",
    "timm",
    "onnxruntime",
    "rapidocr_onnxruntime",
    "sqlalchemy",
    "numpy",
    "pillow",
    "nftkit",
)
POLICY_GROUP = "nftkit.policies"


def versions() -> dict[str, str | None]:
    """Installed versions of the packages the parts use (None when absent)."""
    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = md.version(name)
        except md.PackageNotFoundError:
            found[name] = None
    return found


def policy_families() -> dict[str, str]:
    """Model families present (built-ins + the ``nftkit.policies`` entry points) and whether
    this run measures them at real size (a section of configs.json) or not."""
    import importlib

    configs = load_configs()
    measured: dict[str, list[str]] = {"sd3": ["sd3.5-medium"]} if "sd3.5-medium" in configs else {}
    for key, section in configs.get("families", {}).items():
        if key.startswith("_"):
            continue
        module, _, attr = section["policy"].partition(":")
        family = getattr(importlib.import_module(module), attr).family
        measured.setdefault(family, []).append(key)
    families = {"sd3", "shapes"} | {ep.name for ep in md.entry_points(group=POLICY_GROUP)}
    status = {}
    for family in sorted(families):
        keys = measured.get(family)
        if family == "shapes":
            status[family] = "tiny by design (trains on CPU): not part of the GPU run"
        elif keys:
            status[family] = f"measured at real size ({', '.join(keys)})"
        else:
            status[family] = "present, not measured: add its real-size config and part"
    return status


def matmul_tflops(device: torch.device, n: int, dtype: torch.dtype, repeats: int = 10) -> float:
    """TFLOP/s of an n x n x n product on random data (mean of ``repeats`` after 3 warm-ups)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    sync(device)
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e12


def main() -> None:
    """Record the machine."""
    settings, _ = parse_settings(__doc__.split("\n")[0])
    rec = Recorder(settings, "env")
    device = settings.device
    info: dict[str, Any] = {
        "dry_run": settings.dry_run,
        "versions": versions(),
        "cpu_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            device=props.name,
            memory_gib=props.total_memory / 2**30,
            multiprocessors=props.multi_processor_count,
            cuda=torch.version.cuda,
            capability=f"{props.major}.{props.minor}",
        )
    else:
        info["device"] = f"cpu ({platform.machine()})"
    rec.add("machine", info)
    rec.add("policy_families", policy_families())
    n = 256 if settings.dry_run else 8192
    rec.add(
        "matmul",
        {
            "n": n,
            "dtype": str(settings.dtype).replace("torch.", ""),
            "tflops": matmul_tflops(device, n, settings.dtype),
            "peak_used_for_mfu": load_configs()["peak_bf16_tflops"],
        },
    )


if __name__ == "__main__":
    main()
