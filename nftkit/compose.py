"""Blend several rewards into one score, then into group advantages and optimality probabilities.

A reward spec is ``name[@URL][=weight]`` entries separated by commas, e.g.
``pickscore,ocr=0.5,geneval@http://127.0.0.1:8000=0.5`` (weight 1 by default). The composed score
is a weighted sum of the (optionally normalised) component scores; a component whose reward is
lower-is-better enters with its sign flipped so that the total is always higher-is-better.
Advantages follow DiffusionNFT: A = (R - mean of the prompt's group) / (std + 1e-4), with the std
taken over all samples ("global", the reference default) or within each group ("group"); then
r = clamp(clip(A, -A_max, A_max) / A_max / 2 + 0.5, 0, 1).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from nftkit.errors import InvalidScoreError, UsageError
from nftkit.images import ImageBatch

Normalization = Literal["none", "zscore", "rank"]
StdMode = Literal["global", "group"]
NORMALIZATIONS = ("none", "zscore", "rank")
ADVANTAGE_EPS = 1e-4


@dataclass(frozen=True)
class RewardTerm:
    """One entry of a reward spec: a registered name, its weight and an optional server URL."""

    name: str
    weight: float = 1.0
    url: str | None = None

    @property
    def key(self) -> str:
        """Label of this component in outputs (``name`` or ``name@url``)."""
        return f"{self.name}@{self.url}" if self.url else self.name


def parse_reward_spec(spec: str) -> list[RewardTerm]:
    """Parse ``name[@URL][=weight],...`` into terms; malformed specs raise UsageError."""
    if not spec or not spec.strip():
        raise UsageError("empty reward spec: give names like 'pickscore,ocr=0.5'")
    terms: list[RewardTerm] = []
    for raw in spec.split(","):
        entry = raw.strip()
        if not entry:
            raise UsageError(f"empty entry in reward spec {spec!r}")
        weight = 1.0
        if "=" in entry:
            head, _, tail = entry.rpartition("=")
            try:
                weight = float(tail)
            except ValueError as exc:
                raise UsageError(f"bad weight {tail!r} in reward spec entry {entry!r}") from exc
            if not math.isfinite(weight):
                raise UsageError(f"weight must be finite in reward spec entry {entry!r}")
            entry = head
        name, _, url = entry.partition("@")
        if not name:
            raise UsageError(f"missing reward name in reward spec entry {raw.strip()!r}")
        if "@" in entry and not url.startswith(("http://", "https://")):
            raise UsageError(f"remote reward URL must start with http:// or https://: {url!r}")
        term = RewardTerm(name=name, weight=weight, url=url or None)
        if any(t.key == term.key for t in terms):
            raise UsageError(f"reward '{term.key}' appears twice in spec {spec!r}")
        terms.append(term)
    return terms


def check_finite(name: str, scores: torch.Tensor, prompts: Sequence[str] | None = None) -> None:
    """Raise InvalidScoreError naming the reward and the first NaN/inf sample."""
    bad = (~torch.isfinite(scores)).nonzero().flatten()
    if bad.numel():
        index = int(bad[0])
        where = f" (prompt {prompts[index]!r})" if prompts is not None else ""
        raise InvalidScoreError(
            f"reward '{name}' returned {float(scores[index])} for sample {index}{where}; "
            f"{bad.numel()} non-finite score(s) in the batch"
        )


def check_reward_output(name: str, out: Any, expected: int) -> None:
    """Raise InvalidScoreError unless ``out`` has float ``scores`` [expected] and as many details.

    Rewards built on ``Reward`` are checked by the base class already; this also covers plugins
    that implement the call themselves.
    """
    scores = getattr(out, "scores", None)
    if not isinstance(scores, torch.Tensor):
        raise InvalidScoreError(
            f"reward '{name}' returned {type(out).__name__}, expected a RewardOutput with a "
            "float tensor of scores"
        )
    if tuple(scores.shape) != (expected,):
        raise InvalidScoreError(
            f"reward '{name}' returned scores of shape {tuple(scores.shape)}, expected ({expected},)"
        )
    details = getattr(out, "details", None)
    if not isinstance(details, list) or len(details) != expected:
        count = len(details) if isinstance(details, list) else type(details).__name__
        raise InvalidScoreError(f"reward '{name}' returned {count} details for {expected} images")


def normalize(scores: torch.Tensor, method: Normalization) -> torch.Tensor:
    """Per-batch normalisation of one component: none, z-score, or rank scaled to [0, 1]."""
    scores = scores.double()
    if method == "none":
        return scores
    if method == "zscore":
        if scores.numel() < 2:
            return torch.zeros_like(scores)
        return (scores - scores.mean()) / (scores.std(unbiased=False) + ADVANTAGE_EPS)
    if method == "rank":
        n = scores.numel()
        if n < 2:
            return torch.full_like(scores, 0.5)
        # average rank for ties, 0 for the lowest and 1 for the highest
        order = scores.argsort()
        ranks = torch.empty_like(scores)
        ranks[order] = torch.arange(n, dtype=scores.dtype)
        for value in scores.unique():
            tied = scores == value
            ranks[tied] = ranks[tied].mean()
        return ranks / (n - 1)
    raise UsageError(f"unknown normalization '{method}'; choose one of {', '.join(NORMALIZATIONS)}")


def combine(
    components: dict[str, torch.Tensor],
    weights: dict[str, float],
    normalization: Normalization = "none",
    higher_is_better: dict[str, bool] | None = None,
    prompts: Sequence[str] | None = None,
) -> torch.Tensor:
    """Weighted sum of component scores (float32 [B]); non-finite inputs raise an error."""
    if not components:
        raise UsageError("no reward components to combine")
    total: torch.Tensor | None = None
    for key, scores in components.items():
        check_finite(key, scores, prompts)
        sign = 1.0 if (higher_is_better or {}).get(key, True) else -1.0
        term = weights.get(key, 1.0) * sign * normalize(scores, normalization)
        total = term if total is None else total + term
    assert total is not None
    return total.float()


def group_advantages(
    rewards: torch.Tensor,
    groups: Sequence[Hashable],
    std_mode: StdMode = "global",
    eps: float = ADVANTAGE_EPS,
) -> torch.Tensor:
    """A = (R - mean of R in the sample's group) / (std + eps), std global or per group.

    Standard deviations are population (biased) ones, as numpy's default in the references.
    """
    if rewards.ndim != 1 or rewards.shape[0] != len(groups):
        raise ValueError(f"rewards {tuple(rewards.shape)} and {len(groups)} group ids differ")
    check_finite("composed", rewards)
    values = rewards.double()
    index: dict[Hashable, list[int]] = {}
    for i, g in enumerate(groups):
        index.setdefault(g, []).append(i)
    centered = torch.empty_like(values)
    group_std = torch.empty_like(values)
    for members in index.values():
        idx = torch.tensor(members)
        group_values = values[idx]
        centered[idx] = group_values - group_values.mean()
        group_std[idx] = group_values.std(unbiased=False)
    if std_mode == "global":
        scale = values.std(unbiased=False) + eps
    elif std_mode == "group":
        scale = group_std + eps
    else:
        raise UsageError(f"unknown std mode '{std_mode}'; choose 'global' or 'group'")
    return (centered / scale).float()


def informative_mask(rewards: torch.Tensor, groups: Sequence[Hashable]) -> torch.Tensor:
    """Bool [B]: True where the sample's group has rewards that differ (FlowGRPO's mask).

    A group whose rewards are all equal has all-zero advantages and carries no signal; the
    FlowGRPO baseline drops such groups from its loss (KL term included).
    """
    if rewards.ndim != 1 or rewards.shape[0] != len(groups):
        raise ValueError(f"rewards {tuple(rewards.shape)} and {len(groups)} group ids differ")
    low: dict[Hashable, float] = {}
    high: dict[Hashable, float] = {}
    for value, g in zip(rewards.tolist(), groups, strict=True):
        low[g] = min(low.get(g, value), value)
        high[g] = max(high.get(g, value), value)
    return torch.tensor([high[g] > low[g] for g in groups], dtype=torch.bool)


def optimality_probability(advantages: torch.Tensor, adv_clip: float = 5.0) -> torch.Tensor:
    """r = clamp(clip(A, -A_max, A_max) / A_max / 2 + 0.5, 0, 1)."""
    if adv_clip <= 0:
        raise ValueError(f"adv_clip must be > 0, got {adv_clip}")
    clipped = advantages.clamp(-adv_clip, adv_clip)
    return (clipped / adv_clip / 2 + 0.5).clamp(0.0, 1.0)


@dataclass
class ComposedScores:
    """Result of a RewardComposer call."""

    total: torch.Tensor
    components: dict[str, torch.Tensor]
    details: list[dict[str, Any]] = field(default_factory=list)


class RewardComposer:
    """Builds the rewards of a spec through the registry and blends their scores."""

    def __init__(
        self,
        terms: Sequence[RewardTerm] | str,
        normalization: Normalization = "none",
        reward_kwargs: dict[str, Any] | None = None,
        per_reward_kwargs: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        if normalization not in NORMALIZATIONS:
            raise UsageError(
                f"unknown normalization '{normalization}'; choose one of {', '.join(NORMALIZATIONS)}"
            )
        self.terms = parse_reward_spec(terms) if isinstance(terms, str) else list(terms)
        self.normalization = normalization
        shared = reward_kwargs or {}
        per = per_reward_kwargs or {}
        self.rewards = {
            t.key: build_reward(t, {**shared, **per.get(t.name, {})}) for t in self.terms
        }

    @property
    def weights(self) -> dict[str, float]:
        """Weight of each component, by key."""
        return {t.key: t.weight for t in self.terms}

    @property
    def needs_metadata(self) -> bool:
        """True when any component reward needs per-sample metadata."""
        return any(getattr(r, "needs_metadata", False) for r in self.rewards.values())

    def __call__(
        self,
        images: ImageBatch,
        prompts: Sequence[str],
        metadata: Sequence[dict[str, Any]] | None = None,
    ) -> ComposedScores:
        """Score with every component and blend; details are merged per sample by key."""
        components: dict[str, torch.Tensor] = {}
        details: list[dict[str, Any]] = [{} for _ in prompts]
        for key, reward in self.rewards.items():
            out = reward(images, prompts, metadata)
            check_reward_output(key, out, len(prompts))
            check_finite(key, out.scores, prompts)
            components[key] = out.scores
            for merged, item in zip(details, out.details, strict=True):
                if item:
                    merged[key] = item
        directions = {k: r.higher_is_better for k, r in self.rewards.items()}
        total = combine(components, self.weights, self.normalization, directions, prompts)
        return ComposedScores(total=total, components=components, details=details)


def build_reward(term: RewardTerm, kwargs: dict[str, Any]) -> Any:
    """Instantiate a local reward through the registry, or a remote client for ``name@URL``."""
    if term.url:
        from nftkit.serve.client import RemoteReward  # local import: only remote specs need it

        return RemoteReward(term.name, term.url)
    from nftkit.registry import create_reward

    return create_reward(term.name, **kwargs)
