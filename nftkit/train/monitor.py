"""Reward-hacking guard: monitor rewards scored on each epoch's samples, and stop rules.

``--monitor pickscore,aesthetic`` scores the images the trainer already decoded with extra
rewards; their means are logged as ``monitor/NAME`` and never reach the training signal.
``--stop-if`` rules stop a run cleanly (checkpoint, final evaluation, a message saying why):

- ``NAME<VALUE``, ``NAME<=VALUE``, ``NAME>VALUE``, ``NAME>=VALUE``: an absolute threshold;
- ``NAME drop>X%``: the value fell by more than X% of its first logged value.

NAME is a monitor (``pickscore``), a training reward component, or any history key
(``reward_mean``, ``loss``).
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from typing import Any

import torch

from nftkit.compose import normalize
from nftkit.errors import UsageError

_ABS = re.compile(r"^\s*([\w/.:-]+)\s*(<=|>=|<|>)\s*([-+0-9.eE]+)\s*$")
_DROP = re.compile(r"^\s*([\w/.:-]+)\s+drop\s*>\s*([0-9.]+)\s*%\s*$")


@dataclass(frozen=True)
class StopRule:
    """One ``--stop-if`` rule: ``op`` is <, <=, >, >= or "drop" (threshold in percent)."""

    name: str
    op: str
    threshold: float
    text: str

    def key(self, record: dict[str, Any]) -> str | None:
        """The history key this rule reads in ``record`` (monitor first), or None if absent."""
        for key in (f"monitor/{self.name}", f"reward/{self.name}", self.name):
            if isinstance(record.get(key), (int, float)):
                return key
        return None

    def check(self, record: dict[str, Any], history: list[dict[str, Any]]) -> str | None:
        """Why training must stop after ``record`` (None: keep going)."""
        key = self.key(record)
        if key is None:
            return None
        value = float(record[key])
        if self.op == "drop":
            start = next(
                (float(r[key]) for r in history if isinstance(r.get(key), (int, float))), value
            )
            if start == 0 or not math.isfinite(start):
                return None
            drop = 100.0 * (start - value) / abs(start)
            if drop > self.threshold:
                return (
                    f"stopped by --stop-if '{self.text}': {key} fell {drop:.1f}% "
                    f"(from {start:.4g} to {value:.4g}) at epoch {record['epoch']}"
                )
            return None
        hit = {
            "<": value < self.threshold,
            "<=": value <= self.threshold,
            ">": value > self.threshold,
            ">=": value >= self.threshold,
        }[self.op]
        if hit:
            return (
                f"stopped by --stop-if '{self.text}': {key} = {value:.4g} at epoch "
                f"{record['epoch']}"
            )
        return None


def parse_stop_rule(text: str) -> StopRule:
    """``"pickscore<-1.0"`` or ``"aesthetic drop>20%"`` as a StopRule (UsageError otherwise)."""
    if m := _DROP.match(text):
        return StopRule(m.group(1), "drop", float(m.group(2)), text.strip())
    if m := _ABS.match(text):
        try:
            value = float(m.group(3))
        except ValueError:
            value = math.nan
        if math.isfinite(value):
            return StopRule(m.group(1), m.group(2), value, text.strip())
    raise UsageError(
        f"--stop-if expects 'NAME<VALUE' (or <=, >, >=) or 'NAME drop>X%', got {text!r}"
    )


def first_stop(
    rules: list[StopRule], record: dict[str, Any], history: list[dict[str, Any]]
) -> str | None:
    """The message of the first rule that fires on ``record``, if any."""
    for rule in rules:
        if (why := rule.check(record, history)) is not None:
            return why
    return None


class WatchedComposer:
    """Wraps the trainer's composer: same scores, plus monitors and reward statistics.

    Every call stores ``pending``: monitor means, raw and normalised component means, the
    composed reward's mean/std and the share of prompt groups whose reward has zero std.
    """

    def __init__(self, inner: Any, monitors: Any | None, group_size: int, gather: Any) -> None:
        self.inner = inner
        self.monitors = monitors
        self.group_size = group_size
        self.gather = gather
        self.pending: dict[str, float] = {}
        self.scored_at: float | None = None  # when the last epoch's samples were scored
        self.seconds = 0.0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def __call__(self, images: Any, prompts: Any, metadata: Any, *args: Any, **kw: Any) -> Any:
        """Score like the wrapped composer; record the statistics on the side."""
        scored = self.inner(images, prompts, metadata, *args, **kw)
        began = time.perf_counter()
        stats: dict[str, float] = {}
        method = getattr(self.inner, "normalization", "none")
        for key, value in scored.components.items():
            v = self.gather(value.detach().float())
            stats[f"reward_raw/{key}"] = float(v.mean())
            stats[f"reward_norm/{key}"] = float(normalize(v, method).mean())
        total = self.gather(scored.total.detach().float())
        stats["reward_total/mean"] = float(total.mean())
        stats["reward_total/std"] = float(total.std(unbiased=False))
        if self.group_size > 1 and total.numel() % self.group_size == 0:
            groups = total.reshape(-1, self.group_size)
            stats["groups/zero_std_share"] = float((groups.std(dim=1) < 1e-8).float().mean())
        if self.monitors is not None:
            with torch.no_grad():
                extra = self.monitors(images, prompts, metadata)
            for key, value in extra.components.items():
                stats[f"monitor/{key}"] = float(self.gather(value.detach().float()).mean())
        self.pending = stats
        self.scored_at = time.time()
        self.seconds = time.perf_counter() - began  # what watching cost inside the epoch
        return scored
