"""Plugin registry over Python entry points (``nftkit.rewards``, ``nftkit.evaluators``, ``nftkit.policies``).

Listing reads entry-point metadata only; a plugin module is imported when it is used or when
its status is asked for. An import that raises is recorded as a failed plugin and never stops
other plugins or the CLI. Each group has a ``Contract`` (its base class and a metadata check):
an imported plugin that breaks it (not a subclass, an abstract method left unimplemented,
``name`` not its entry-point name, metadata of the wrong type) is ``invalid``, listed with the
reason, and using it raises a one-line InvalidPluginError that says what to implement. ``NFTKIT_PLUGINS`` (allow-list) and ``NFTKIT_DISABLE_PLUGINS``
(deny-list) filter plugins by name, comma separated.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from nftkit.errors import InvalidPluginError, PluginLoadError, UnknownPluginError

REWARDS_GROUP = "nftkit.rewards"
EVALUATORS_GROUP = "nftkit.evaluators"
POLICIES_GROUP = "nftkit.policies"
ALLOW_ENV = "NFTKIT_PLUGINS"
DENY_ENV = "NFTKIT_DISABLE_PLUGINS"


def _resolve(target: str) -> Any:
    """The object that ``"module:attribute"`` names (the module is imported)."""
    module, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module), attribute)


@dataclass(frozen=True)
class Contract:
    """What every plugin of one entry-point group must be.

    ``base``: ``"module:Class"`` the plugin must subclass (imported when a plugin is checked).
    ``metadata``: ``"module:function"`` taking the plugin class and returning a list of
    problems (empty when its metadata is fine). ``named``: the class's ``name`` attribute must
    equal its entry-point name.
    """

    base: str
    metadata: str | None = None
    named: bool = True

    def problems(self, name: str, obj: Any) -> list[str]:
        """Why ``obj`` (registered as ``name``) breaks the contract; empty when it keeps it."""
        base = _resolve(self.base)
        where = f"{base.__module__}.{base.__qualname__}"
        if not inspect.isclass(obj) or not issubclass(obj, base):
            shown = obj.__qualname__ if inspect.isclass(obj) else type(obj).__name__
            return [f"{shown} is not a subclass of {where}: subclass it"]
        problems = []
        missing = sorted(getattr(obj, "__abstractmethods__", ()))
        if missing:
            problems.append(
                f"{obj.__qualname__} does not implement {', '.join(missing)} "
                f"(abstract in {where}): define {'them' if len(missing) > 1 else 'it'}"
            )
        if self.named and getattr(obj, "name", None) != name:
            problems.append(
                f"its name is {getattr(obj, 'name', None)!r} but its entry point is "
                f"{name!r}: set name = {name!r}"
            )
        if self.metadata is not None:
            check: Callable[[type], list[str]] = _resolve(self.metadata)
            problems.extend(check(obj))
        return problems


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
    """A plugin's status as ``nftkit rewards list`` shows it: ok, failed (import) or invalid."""

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
    """Lazy view of one entry-point group; loaded classes and failures are cached.

    ``contract`` (optional) is what each plugin of the group must be; it is checked when the
    plugin is first imported.
    """

    def __init__(self, group: str, kind: str, contract: Contract | None = None) -> None:
        self.group = group
        self.kind = kind
        self.contract = contract
        self._loaded: dict[str, Any] = {}
        self._errors: dict[str, str] = {}
        self._invalid: dict[str, str] = {}

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

    def check_name(self, name: str) -> None:
        """Raise UnknownPluginError ("did you mean") unless ``name`` is enabled; imports nothing."""
        if name not in self._entry_points():
            raise self._unknown(name)

    def load(self, name: str) -> Any:
        """Import, check and return the plugin object for ``name`` (usually a class).

        Raises UnknownPluginError, PluginLoadError (the import failed) or InvalidPluginError
        (the plugin breaks its group's contract).
        """
        if name in self._loaded:
            return self._loaded[name]
        eps = self._entry_points()
        if name not in eps:
            raise self._unknown(name)
        if name in self._invalid:
            raise self._invalid_error(name, eps[name])
        if name in self._errors:
            raise PluginLoadError(
                f"{self.kind} plugin '{name}' failed to load: {self._errors[name]}"
            )
        try:
            obj = eps[name].load()
        except Exception as exc:  # a broken plugin must never take the process down
            message = f"{type(exc).__name__}: {exc}"
            self._errors[name] = message
            raise PluginLoadError(
                f"{self.kind} plugin '{name}' ({eps[name].value}) failed to load: {message}"
            ) from exc
        problems = self._check(name, obj)
        if problems:
            self._invalid[name] = "; ".join(problems)
            raise self._invalid_error(name, eps[name])
        self._loaded[name] = obj
        return obj

    def _check(self, name: str, obj: Any) -> list[str]:
        if self.contract is None:
            return []
        try:
            return self.contract.problems(name, obj)
        except Exception as exc:  # a metadata check that raises is a problem, not a crash
            return [f"checking it raised {type(exc).__name__}: {exc}"]

    def _invalid_error(self, name: str, ep: EntryPoint) -> InvalidPluginError:
        return InvalidPluginError(
            f"{self.kind} plugin '{name}' ({ep.value}) is invalid: {self._invalid[name]}"
        )

    def statuses(self) -> list[PluginStatus]:
        """Import and check every enabled plugin and report each one's status (isolated)."""
        result = []
        for info in self.infos():
            status, error = "ok", None
            try:
                self.load(info.name)
            except InvalidPluginError:
                status, error = "invalid", self._invalid.get(info.name, "invalid")
            except PluginLoadError:
                status, error = "failed", self._errors.get(info.name, "failed to load")
            except Exception:  # defensive: a status listing never crashes
                status = "failed"
                error = traceback.format_exc(limit=1).strip().splitlines()[-1]
            result.append(
                PluginStatus(
                    name=info.name,
                    distribution=info.distribution,
                    version=info.version,
                    status=status,
                    error=error,
                )
            )
        return result


REWARD_CONTRACT = Contract("nftkit.rewards.base:Reward", "nftkit.rewards.base:metadata_problems")
EVALUATOR_CONTRACT = Contract(
    "nftkit.evaluators.base:Evaluator", "nftkit.evaluators.base:metadata_problems"
)
REWARDS = Registry(REWARDS_GROUP, "reward", REWARD_CONTRACT)
EVALUATORS = Registry(EVALUATORS_GROUP, "evaluator", EVALUATOR_CONTRACT)
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
