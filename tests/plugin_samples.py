"""Plugin classes for the registry contract tests: one valid, the others each break a rule."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image

from nftkit.evaluators.base import Evaluator, PromptSpec, SuiteResult
from nftkit.rewards.base import Reward, RewardOutput


class Fine(Reward):
    """A valid reward: every image scores 1."""

    name = "fine"

    def score_batch(
        self, images: Any, prompts: list[str], metadata: list[dict[str, Any]]
    ) -> RewardOutput:
        """Ones."""
        return RewardOutput(torch.ones(len(prompts)))


class HalfDone(Reward):
    """Overrides __call__ but not score_batch, so it cannot be instantiated."""

    name = "half-done"

    def __call__(self, images: Any, prompts: Sequence[str], metadata: Any = None) -> RewardOutput:
        """Zeros."""
        return RewardOutput(torch.zeros(len(prompts)))


class Misnamed(Fine):
    """Valid except that its name differs from its entry-point name."""

    name = "something-else"


class BadMetadata(Fine):
    """Valid except for the types of its metadata."""

    name = "bad-metadata"
    higher_is_better = "yes"  # type: ignore[assignment]
    score_range = (0.0, "1")  # type: ignore[assignment]
    input_format = "numpy"  # type: ignore[assignment]


class NotAReward:
    """Has a name but is no Reward."""

    name = "not-a-reward"


class BadSuite(Evaluator):
    """An evaluator with impossible defaults."""

    name = "bad-suite"
    n_samples = 0
    default_solver = "rk4"

    def prompts(self) -> list[PromptSpec]:
        """One prompt."""
        return [PromptSpec("0", "a cat")]

    def score_samples(
        self, images: Sequence[Image.Image], specs: Sequence[PromptSpec]
    ) -> list[dict[str, Any]]:
        """Zero scores."""
        return [{"scores": {"overall": 0.0}} for _ in images]

    def summarize(self, rows: Sequence[dict[str, Any]]) -> SuiteResult:
        """Mean of nothing."""
        return SuiteResult(list(rows), {"overall": 0.0}, {"overall": True})
