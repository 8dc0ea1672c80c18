"""Suites scored by a set of reward models: the mean of each reward over all images.

Default set (DiffusionNFT's model-based metrics): imagereward, pickscore, aesthetic, clipscore,
hpsv2, plus unifiedreward when a server URL is given. Each metric keeps its reward's direction.
CLIPScore is computed as DiffusionNFT's ClipScorer does (``clip_preprocess="diffusionnft"``,
the paper's ClipScore column); ``"processor"`` uses transformers' CLIP processor instead.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from nftkit.errors import UsageError
from nftkit.evaluators.base import PromptSpec, SuiteResult
from nftkit.evaluators.prompt_file import PromptFileEvaluator

DEFAULT_REWARDS: tuple[str, ...] = ("imagereward", "pickscore", "aesthetic", "clipscore", "hpsv2")
UNIFIEDREWARD = "unifiedreward"
UNIFIEDREWARD_ENV = "NFTKIT_UNIFIEDREWARD_URL"
CLIP_PREPROCESS = ("diffusionnft", "processor")
"""The suites' CLIPScore preprocessing choices (the first is the default)."""


def parse_reward_names(
    rewards: str | Sequence[str] | None, unifiedreward_url: str | None
) -> list[str]:
    """Reward names from "a,b,c" or a list (None: the default set); unifiedreward needs a URL."""
    if rewards is None:
        names = list(DEFAULT_REWARDS)
    elif isinstance(rewards, str):
        names = [n.strip() for n in rewards.split(",") if n.strip()]
    else:
        names = [str(n) for n in rewards]
    if not names:
        raise UsageError("--rewards is empty: name at least one reward, e.g. pickscore")
    if unifiedreward_url and UNIFIEDREWARD not in names:
        names.append(UNIFIEDREWARD)
    if UNIFIEDREWARD in names and not (unifiedreward_url or os.environ.get(UNIFIEDREWARD_ENV)):
        raise UsageError(
            f"reward 'unifiedreward' needs its server: pass --unifiedreward-url URL (or set "
            f"{UNIFIEDREWARD_ENV})"
        )
    return list(dict.fromkeys(names))


class RewardSetEvaluator(PromptFileEvaluator):
    """Prompts scored by several rewards; metrics are per-reward means over images."""

    default_rewards: ClassVar[tuple[str, ...]] = DEFAULT_REWARDS

    def __init__(
        self,
        rewards: str | Sequence[str] | None = None,
        unifiedreward_url: str | None = None,
        clip_preprocess: str = CLIP_PREPROCESS[0],
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        from nftkit.registry import reward_class

        if clip_preprocess not in CLIP_PREPROCESS:
            raise UsageError(
                f"unknown --clip-preprocess {clip_preprocess!r}; choose one of {', '.join(CLIP_PREPROCESS)}"
            )
        self.reward_names = parse_reward_names(rewards, unifiedreward_url)
        self.unifiedreward_url = unifiedreward_url
        self.clip_preprocess = clip_preprocess
        self._classes = {name: reward_class(name) for name in self.reward_names}
        self._rewards: dict[str, Any] = {}

    def settings(self) -> dict[str, Any]:
        """The reward set, the UnifiedReward server and CLIPScore's preprocessing change metrics."""
        return {
            "rewards": self.reward_names,
            "unifiedreward_url": self.unifiedreward_url,
            "clip_preprocess": self.clip_preprocess,
        }

    def _reward(self, name: str) -> Any:
        if name not in self._rewards:
            kwargs: dict[str, Any] = {"device": self.device, "batch_size": self.reward_batch_size}
            if name == UNIFIEDREWARD and self.unifiedreward_url:
                kwargs["url"] = self.unifiedreward_url
            if name == "clipscore":
                kwargs["preprocess"] = self.clip_preprocess
            self._rewards[name] = self._classes[name](**kwargs)
        return self._rewards[name]

    def score_samples(
        self, images: Sequence[Image.Image], specs: Sequence[PromptSpec]
    ) -> list[dict[str, Any]]:
        """Every reward's score of every image."""
        texts = [s.text for s in specs]
        metadata = [s.metadata or {} for s in specs]
        columns = {
            name: self._reward(name)(list(images), texts, metadata).scores.tolist()
            for name in self.reward_names
        }
        return [
            {"prompt_id": spec.id, "scores": {name: float(columns[name][i]) for name in columns}}
            for i, spec in enumerate(specs)
        ]

    def summarize(self, rows: Sequence[dict[str, Any]]) -> SuiteResult:
        """Mean of each reward over the images that have it."""
        metrics: dict[str, float] = {}
        directions: dict[str, bool] = {}
        for name in self.reward_names:
            values = [r["scores"][name] for r in rows if name in r["scores"]]
            if values:
                metrics[name] = float(np.mean(values))
                directions[name] = bool(self._classes[name].higher_is_better)
        return SuiteResult(list(rows), metrics, directions)
