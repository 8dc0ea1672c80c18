"""Shared pieces of the tiny model-family tests (tests/test_family_*.py)."""

from __future__ import annotations

from typing import Any

from typer.testing import CliRunner

from nftkit.cli.main import app

PROMPTS = ["a red cube", "two dogs on a green sofa", 'a sign that says "hello"', "a blue car"]
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


def invoke(*args: str) -> Any:
    """Run the nftkit CLI in-process; fail the test on a non-zero exit."""
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return result
