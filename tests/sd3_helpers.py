"""Shared bits of the Stable Diffusion 3 tests: tiny NFT settings and a prompt file."""

from __future__ import annotations

from pathlib import Path

TINY_NFT = [
    "--set",
    "prompts_per_epoch=2",
    "--set",
    "group_size=4",
    "--set",
    "num_steps=3",
    "--set",
    "sample_batch_size=8",
    "--set",
    "train_batch_size=4",
    "--set",
    "max_train_timesteps=2",
    "--set",
    "lora_rank=4",
    "--set",
    "lora_alpha=8",
    "--set",
    "lr=0.01",
    "--set",
    "seed=5",
]
PROMPTS = ["a red cube", "two dogs on a green sofa", 'a sign that says "hello"', "a blue car"]


def write_prompts(folder: Path) -> Path:
    """A small prompt text file in ``folder``."""
    path = folder / "prompts.txt"
    path.write_text("\n".join(PROMPTS) + "\n")
    return path
