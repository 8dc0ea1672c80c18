"""Tiny random shapes models for tests, saved in the shipped format (config.json + safetensors)."""

from __future__ import annotations

from pathlib import Path

import torch

from nftkit.policies.shapes import ShapesPolicy
from nftkit.policies.shapes_model import ShapesFlowModel, ShapesModelConfig
from nftkit.shapes.prompts import VOCAB


def tiny_shapes_config(
    width: int, channels: tuple[int, ...] | None = None, **overrides: object
) -> ShapesModelConfig:
    """A seconds-fast config: text/embedding width ``width``, one text layer, two heads."""
    return ShapesModelConfig(
        vocab_size=len(VOCAB),
        channels=channels or (width,) * 3,
        text_dim=width,
        text_layers=1,
        heads=2,
        emb_dim=width,
        **overrides,
    )


def write_tiny_shapes_model(
    path: Path,
    config: ShapesModelConfig,
    seed: int,
    random_output: bool = False,
    dtype: torch.dtype = torch.float16,
) -> Path:
    """Random-init model saved to ``path``.

    ``random_output`` re-draws the zero-initialised output conv, without which v is constant.
    """
    torch.manual_seed(seed)
    model = ShapesFlowModel(config)
    if random_output:
        torch.nn.init.normal_(model.conv_out.weight, std=0.02)
    ShapesPolicy(model).save_pretrained(path, dtype=dtype)
    return path


# One tiny shapes training on the CLI (one epoch, tiny batches, full precision).
TINY_TRAIN = [
    "--steps",
    "1",
    "--quiet",
    "--set",
    "prompts_per_epoch=2",
    "--set",
    "group_size=2",
    "--set",
    "num_steps=2",
    "--set",
    "sample_batch_size=4",
    "--set",
    "train_batch_size=4",
    "--set",
    "max_train_timesteps=1",
    "--set",
    "lora_rank=2",
    "--set",
    "lora_alpha=4",
    "--set",
    "policy.autocast_dtype=null",
]
