"""Plugin registry over Python entry points (``nftkit.rewards``, ``nftkit.evaluators``, ``nftkit.policies``).

Listing reads entry-point metadata only; a plugin module is imported when it is used or when
its status is asked for. An import that raises is recorded as a failed plugin and never stops
other plugins or the CLI. ``NFTKIT_PLUGINS`` (allow-list) and ``NFTKIT_DISABLE_PLUGINS``
(deny-list) filter plugins by name, comma separated.
"""

from __future__ import annotations

import difflib
import os
import traceback
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from nftkit.errors import PluginLoadError, UnknownPluginError

REWARDS_GROUP = "nftkit.rewards"
EVALUATORS_GROUP = "nftkit.evaluators"
POLICIES_GROUP = "nftkit.policies"
ALLOW_ENV = "NFTKIT_PLUGINS"
DENY_ENV = "NFTKIT_DISABLE_PLUGINS"


@dataclass(frozen=True)
class PluginInfo:
    """What the entry point says about one plugin, before anything is imported."""

    name: str
    group: str
    target: str
    distribution: str | None
    version: str | None


@dataclass(frozen=True)
class PluginStatus:
    """A plugin's load status, as shown by ``nftkit rewards list``."""

    name: str
    distribution: str | None
    version: str | None
    status: str
    error: str | None

    def as_dict(self) -> dict[str, Any]:
        """JSON form with the keys name, distribution, version, status, error."""
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "status": self.status,
            "error": self.error,
        }


def _names_from_env(var: str) -> set[str] | None:
    raw = os.environ.get(var)
    if raw is None or not raw.strip():
        return None
    return {part.strip() for part in raw.split(",") if part.strip()}


class Registry:
    """Lazy view of one entry-point group; loaded classes and failures are cached."""

    def __init__(self, group: str, kind: str) -> None:
        self.group = group
        self.kind = kind
        self._loaded: dict[str, Any] = {}
        self._errors: dict[str, str] = {}

    def _entry_points(self) -> dict[str, EntryPoint]:
        allow = _names_from_env(ALLOW_ENV)
        deny = _names_from_env(DENY_ENV) or set()
        found: dict[str, EntryPoint] = {}
        for ep in entry_points(group=self.group):
            if ep.name in found:
                continue  # first installed distribution wins, as importlib orders them
            if allow is not None and ep.name not in allow:
                continue
            if ep.name in deny:
                continue
            found[ep.name] = ep
        return found

    def names(self) -> list[str]:
        """Sorted names of the enabled plugins (nothing is imported)."""
        return sorted(self._entry_points())

    def infos(self) -> list[PluginInfo]:
        """Entry-point metadata of every enabled plugin (nothing is imported)."""
        result = []
        for name, ep in sorted(self._entry_points().items()):
            dist = ep.dist
            result.append(
                PluginInfo(
                    name=name,
                    group=self.group,
                    target=ep.value,
                    distribution=dist.metadata["Name"] if dist is not None else None,
                    version=dist.version if dist is not None else None,
                )
            )
        return result

    def _unknown(self, name: str) -> UnknownPluginError:
        names = self.names()
        close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        known = ", ".join(names) if names else "none installed"
        return UnknownPluginError(f"unknown {self.kind} '{name}'.{hint} Available: {known}.")

    def load(self, name: str) -> Any:
        """Import and return the plugin object for ``name`` (usually a class)."""
        if name in self._loaded:
            return self._loaded[name]
        eps = self._entry_points()
        if name not in eps:
            raise self._unknown(name)
        if name in self._errors:
            raise PluginLoadError(f"{self.kind} plugin '{name}' failed to load: {self._errors[name]}")
        try:
            obj = eps[name].load()
        except Exception as exc:  # a broken plugin must never take the process down
            message = f"{type(exc).__name__}: {exc}"
            self._errors[name] = message
            raise PluginLoadError(
                f"{self.kind} plugin '{name}' ({eps[name].value}) failed to load: {message}"
            ) from exc
        self._loaded[name] = obj
        return obj

    def statuses(self) -> list[PluginStatus]:
        """Try to load every enabled plugin and report each one's status (isolated)."""
        result = []
        for info in self.infos():
            error = None
            try:
                self.load(info.name)
            except PluginLoadError:
                error = self._errors.get(info.name, "failed to load")
            except Exception:  # defensive: a status listing never crashes
                error = traceback.format_exc(limit=1).strip().splitlines()[-1]
            result.append(
                PluginStatus(
                    name=info.name,
                    distribution=info.distribution,
                    version=info.version,
                    status="failed" if error else "ok",
                    error=error,
                )
            )
        return result


REWARDS = Registry(REWARDS_GROUP, "reward")
EVALUATORS = Registry(EVALUATORS_GROUP, "evaluator")
POLICIES = Registry(POLICIES_GROUP, "policy family")


def reward_class(name: str) -> type:
    """The Reward class registered under ``name``."""
    return REWARDS.load(name)


def create_reward(name: str, **kwargs: Any) -> Any:
    """Instantiate the reward ``name`` with constructor keyword arguments."""
    return reward_class(name)(**kwargs)


def evaluator_class(name: str) -> type:
    """The Evaluator class registered under ``name``."""
    return EVALUATORS.load(name)
