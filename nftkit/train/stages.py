"""Staged reward schedules: which rewards and prompts train at which epoch.

A stage is ``{"name": ..., "epochs": N, "rewards": SPEC, "prompts": SOURCE}``; stages run one
after another with the same LoRA, optimizer and sampler state (DiffusionNFT's multi-reward
recipe, paper appendix C). Stage lengths count nftkit epochs (one sampling round + its
optimizer steps each); after the last stage's end the last stage continues.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nftkit.errors import UsageError


@dataclass(frozen=True)
class Stage:
    """One stretch of training with a fixed reward spec and prompt source."""

    name: str
    epochs: int
    rewards: str
    prompts: str


def parse_stages(raw: list[dict[str, Any]] | None) -> list[Stage]:
    """Stages from config dicts (TOML ``[[stages]]`` tables); malformed ones raise UsageError."""
    stages: list[Stage] = []
    for i, item in enumerate(raw or []):
        if not isinstance(item, dict):
            raise UsageError(f"stage {i}: expected a table, got {type(item).__name__}")
        missing = {"epochs", "rewards", "prompts"} - set(item)
        unknown = set(item) - {"name", "epochs", "rewards", "prompts"}
        if missing or unknown:
            raise UsageError(f"stage {i}: missing {sorted(missing)}, unknown {sorted(unknown)}")
        epochs = int(item["epochs"])
        if epochs < 1:
            raise UsageError(f"stage {i}: epochs must be >= 1")
        stages.append(
            Stage(
                str(item.get("name", f"stage{i}")),
                epochs,
                str(item["rewards"]),
                str(item["prompts"]),
            )
        )
    return stages


def stage_at(stages: list[Stage], epoch: int) -> Stage:
    """The stage that trains epoch ``epoch`` (0-based)."""
    if not stages:
        raise ValueError("no stages")
    end = 0
    for stage in stages:
        end += stage.epochs
        if epoch < end:
            return stage
    return stages[-1]


def total_epochs(stages: list[Stage]) -> int:
    """Sum of the stages' lengths."""
    return sum(stage.epochs for stage in stages)
