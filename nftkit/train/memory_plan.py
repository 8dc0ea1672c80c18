"""Estimated peak GPU memory per training process, from parameter counts and activation sizes.

Arithmetic, not a measurement: it tells a user before a download whether a preset fits a card.

Parameters come from the safetensors headers of a local pipeline folder (exact, no weights
read) or, for a hub id, from the table of known architectures below (counts of the public
checkpoints). Activations follow the transformer-layer model of Korthikanti et al. (2022,
"Reducing Activation Recomputation in Large Transformer Models"): a block that keeps its
activations for the backward stores about 34 bytes x tokens x width per sample in 16-bit with a
fused (flash) attention kernel; with gradient checkpointing only each block's input (2 bytes x
tokens x width) is kept, plus one block's full set while it is recomputed. Without gradients
(sampling) a block needs about 10 x 2 bytes x tokens x width of working memory. The VAE decodes
one image at a time (sliced): about 1 KiB per output pixel (a 128-channel 16-bit feature map,
four alive). LoRA is kept in float32 with its gradient, two AdamW moments and the EMA (old)
copy: 5 x 4 bytes per LoRA parameter.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GB = 1e9


@dataclass(frozen=True)
class Architecture:
    """What the estimate needs of a model family's pipeline."""

    transformer: float
    """Transformer parameters."""
    width: int
    """Hidden width of the transformer blocks."""
    blocks: int
    """Transformer blocks (FLUX: double + single stream)."""
    latent_factor: int
    """Pixels per latent cell along one side (VAE downsampling)."""
    patch: int
    """Latent cells per token along one side."""
    text_tokens: int
    """Text tokens the transformer attends to."""
    text_encoders: float
    """Text-encoder parameters (all of them)."""
    vae: float
    """VAE parameters."""
    lora_per_block: float = 16.0
    """LoRA parameters per block per rank, in units of the width (2 x width per d->d target)."""
    source: str = ""


KNOWN: dict[str, Architecture] = {
    "stabilityai/stable-diffusion-3.5-medium": Architecture(
        2.47e9,
        1536,
        24,
        8,
        2,
        205,
        5.58e9,
        8.4e7,
        16,
        "SD3.5-M: MMDiT-X 2.47B; CLIP-L 123M + CLIP-G 695M + T5-XXL encoder 4.76B; VAE 84M",
    ),
    "stabilityai/stable-diffusion-3.5-large": Architecture(
        8.06e9,
        2432,
        38,
        8,
        2,
        205,
        5.58e9,
        8.4e7,
        16,
        "SD3.5-L: MMDiT 8.1B; the same text encoders and VAE as SD3.5-M",
    ),
    "black-forest-labs/flux.1": Architecture(
        1.19e10,
        3072,
        57,
        8,
        2,
        512,
        4.88e9,
        8.4e7,
        16,
        "FLUX.1: 19 double + 38 single blocks, 11.9B (LoRA: 36 d r per double, 6 d r per single); CLIP-L 123M + T5-XXL encoder 4.76B",
    ),
    "qwen/qwen-image": Architecture(
        2.04e10,
        3072,
        60,
        8,
        2,
        512,
        8.29e9,
        1.27e8,
        36,
        "Qwen-Image: MMDiT 20.4B, 60 blocks; Qwen2.5-VL-7B 8.3B; Qwen-Image VAE 127M",
    ),
    "efficient-large-model/sana_1600m": Architecture(
        1.6e9,
        2240,
        20,
        32,
        1,
        300,
        2.61e9,
        3.12e8,
        8,
        "SANA-1.6B: 20 linear-attention blocks; Gemma-2-2B 2.6B; DC-AE f32c32 312M",
    ),
    "efficient-large-model/sana_600m": Architecture(
        5.9e8,
        1152,
        28,
        32,
        1,
        300,
        2.61e9,
        3.12e8,
        8,
        "SANA-600M: 28 blocks of 1152; Gemma-2-2B 2.6B; DC-AE f32c32 312M",
    ),
}


@dataclass
class MemoryEstimate:
    """Peak bytes per phase, with the breakdown of the worst one."""

    phases: dict[str, float]
    breakdown: dict[str, dict[str, float]] = field(default_factory=dict)
    source: str = ""

    @property
    def peak_phase(self) -> str:
        """The phase that needs the most memory."""
        return max(self.phases, key=lambda name: self.phases[name])

    @property
    def peak_gb(self) -> float:
        """The peak over phases, in GB (1e9 bytes)."""
        return self.phases[self.peak_phase] / GB

    def describe(self) -> str:
        """One line: the peak, its phase and what it is made of."""
        parts = ", ".join(
            f"{name} {value / GB:.1f}" for name, value in self.breakdown[self.peak_phase].items()
        )
        return f"{self.peak_gb:.1f} GB in {self.peak_phase} ({parts} GB); {self.source}"


def safetensors_numel(folder: str | Path) -> int:
    """Elements in every ``*.safetensors`` file under ``folder``, read from the JSON headers."""
    total = 0
    for path in sorted(Path(folder).rglob("*.safetensors")):
        with path.open("rb") as handle:
            (size,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(size))
        for name, entry in header.items():
            if name == "__metadata__":
                continue
            count = 1
            for dim in entry["shape"]:
                count *= int(dim)
            total += count
    return total


def architecture_for(model: str) -> Architecture | None:
    """The architecture of a local pipeline folder or a known hub id (None when unknown)."""
    folder = Path(model)
    if (folder / "model_index.json").is_file():
        return _from_folder(folder)
    lowered = model.lower()
    for prefix, arch in KNOWN.items():
        if lowered.startswith(prefix):
            return arch
    return None


def _from_folder(folder: Path) -> Architecture | None:
    """Counts from the folder's safetensors headers, sizes from transformer/config.json."""
    config_path = folder / "transformer" / "config.json"
    if not config_path.is_file():
        return None
    cfg = json.loads(config_path.read_text())
    heads = cfg.get("num_attention_heads", 1)
    width = int(cfg.get("inner_dim") or heads * cfg.get("attention_head_dim", 64))
    blocks = int(cfg.get("num_layers", 1)) + int(cfg.get("num_single_layers", 0))
    index = json.loads((folder / "model_index.json").read_text())
    encoders = [name for name in index if name.startswith("text_encoder")]
    dc_ae = "AutoencoderDC" in json.dumps(index.get("vae", ""))
    return Architecture(
        transformer=safetensors_numel(folder / "transformer"),
        width=width,
        blocks=blocks,
        latent_factor=32 if dc_ae else 8,
        patch=int(cfg.get("patch_size") or (2 if "Flux" in index.get("_class_name", "") else 1)),
        text_tokens=int(cfg.get("max_sequence_length") or 256),
        text_encoders=sum(safetensors_numel(folder / name) for name in encoders),
        vae=safetensors_numel(folder / "vae"),
        source=f"parameters counted in {folder}",
    )


def estimate_memory(
    arch: Architecture, config: Any, policy: dict[str, Any], world: int = 1
) -> MemoryEstimate:
    """Peak GPU bytes per process for ``config`` (batches, LoRA rank) and policy options."""
    resolution = int(policy.get("resolution") or 1024)
    checkpointing = bool(policy.get("gradient_checkpointing", False))
    text_on_gpu = str(policy.get("text_encoder_device", "cuda")) != "cpu"
    weight_bytes = 2.0  # bf16 weights
    side = resolution // (arch.latent_factor * arch.patch)
    tokens = side * side + arch.text_tokens
    per_token = tokens * arch.width
    transformer = arch.transformer * weight_bytes
    text = arch.text_encoders * weight_bytes if text_on_gpu else 0.0
    vae = arch.vae * weight_bytes
    full = getattr(config, "finetune", "lora") == "full"
    if full:  # bf16 weights + grad + old and reference copies, fp32 AdamW moments; FSDP shards
        trainable = arch.transformer * (2 + 2 + 2 + 8) / max(world, 1)
        transformer = transformer / max(world, 1)
    else:
        lora_params = arch.blocks * arch.lora_per_block * arch.width * int(config.lora_rank)
        trainable = lora_params * 5 * 4
    batch = int(config.train_batch_size)
    if checkpointing:
        activations = batch * per_token * (2 * arch.blocks + 34)
    else:
        activations = batch * per_token * 34 * arch.blocks
    sampling = int(config.sample_batch_size) * per_token * 10 * 2
    decode = resolution * resolution * 1024.0
    breakdown = {
        "sample": {
            "transformer": transformer,
            "text encoders": text,
            "VAE": vae,
            "activations": sampling,
            "VAE decode": decode,
        },
        "train": {
            "transformer": transformer,
            "text encoders": text,
            "VAE": vae,
            "trainable + AdamW": trainable,
            "activations": activations,
        },
    }
    phases = {name: sum(parts.values()) for name, parts in breakdown.items()}
    return MemoryEstimate(phases, breakdown, arch.source)


def plan_memory_line(model: str, config: Any, policy: dict[str, Any], world: int = 1) -> str:
    """The `--plan` line: the estimate, or why there is none."""
    if model.startswith("shapes"):
        return "estimated peak GPU memory per process: n/a (the shapes model runs on the CPU)"
    arch = architecture_for(model)
    if arch is None:
        return f"estimated peak GPU memory per process: unknown for {model} (no table entry)"
    estimate = estimate_memory(arch, config, policy, world)
    return f"estimated peak GPU memory per process: {estimate.describe()}"
