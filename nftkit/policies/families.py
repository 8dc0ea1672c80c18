"""Model families: the ``nftkit.policies`` entry-point group and how a model finds its family.

A family plugin is a Policy class (the entry point names it) with these class attributes:

- ``family``: the family name (the entry-point name),
- ``description``: one line for ``nftkit policies list``,
- ``pipeline_classes``: the diffusers ``model_index.json`` ``_class_name`` values it loads,
- ``hub_prefixes``: hub id prefixes it claims when no ``model_index.json`` is at hand,
- ``from_pretrained(name_or_path, device=..., **options)``: a classmethod returning the policy,

and optionally ``make_tiny(folder, seed=0)`` (a tiny random-init model in the real layout, for
``nftkit debug make-tiny``) and ``save_merged(folder, dtype)`` on instances (``nftkit export
--merge``). The built-in families are also reachable without their entry points (an editable
install that was not re-run, or an ``NFTKIT_PLUGINS`` allow-list naming only rewards).
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

from nftkit.errors import PluginLoadError, UnknownPluginError, UsageError
from nftkit.registry import POLICIES

PIPELINE_INDEX = "model_index.json"
BUILTIN_FAMILIES = {
    "shapes": "nftkit.policies.shapes_family:ShapesFamily",
    "sd3": "nftkit.policies.sd3_family:SD3Family",
    "flux": "nftkit.policies.flux:FluxPolicy",
    "sana": "nftkit.policies.sana:SanaPolicy",
    "qwen-image": "nftkit.policies.qwen_image:QwenImagePolicy",
}
LEGACY_HUB_FAMILY = "sd3"  # an unrecognised owner/name id was always read as Stable Diffusion 3


def _import_target(target: str) -> Any:
    module, _, attr = target.partition(":")
    obj: Any = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def family_names() -> list[str]:
    """Every family name: the installed entry points and the built-ins."""
    return sorted(set(POLICIES.names()) | set(BUILTIN_FAMILIES))


def family_class(name: str) -> Any:
    """The Policy class of family ``name`` (UnknownPluginError with a did-you-mean otherwise)."""
    if name in POLICIES.names():
        return POLICIES.load(name)
    if name in BUILTIN_FAMILIES:
        return _import_target(BUILTIN_FAMILIES[name])
    try:
        POLICIES.load(name)
    except UnknownPluginError as exc:
        import difflib

        close = difflib.get_close_matches(name, family_names(), n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise UnknownPluginError(
            f"unknown policy family '{name}'.{hint} Available: {', '.join(family_names())}."
        ) from exc
    raise UnknownPluginError(f"unknown policy family '{name}'")  # pragma: no cover


def _loadable_families() -> list[Any]:
    """Classes of the families that import cleanly (broken plugins are skipped here)."""
    result = []
    for name in family_names():
        try:
            result.append(family_class(name))
        except (PluginLoadError, UnknownPluginError):
            continue
    return result


def pipeline_class_name(folder: str | Path) -> str | None:
    """``_class_name`` of a diffusers folder's model_index.json (None when there is none)."""
    index = Path(folder) / PIPELINE_INDEX
    if not index.is_file():
        return None
    try:
        name = json.loads(index.read_text()).get("_class_name")
    except (ValueError, AttributeError, OSError):
        return None
    return name if isinstance(name, str) else None


def family_for_pipeline(class_name: str) -> str | None:
    """The family whose ``pipeline_classes`` lists ``class_name`` (None when none does)."""
    for cls in _loadable_families():
        if class_name in getattr(cls, "pipeline_classes", ()):
            return str(cls.family)
    return None


def _cached_index_class(hub_id: str) -> str | None:
    """``_class_name`` of a hub id's model_index.json when it is in the local HF cache."""
    try:
        from huggingface_hub import try_to_load_from_cache

        path = try_to_load_from_cache(hub_id, PIPELINE_INDEX)
    except Exception:  # a malformed id or cache: fall back to the hub prefixes
        return None
    return pipeline_class_name(Path(path).parent) if isinstance(path, str) else None


def family_for_hub_id(hub_id: str) -> str:
    """The family of a hub id: its cached model_index.json, else a family's hub prefix."""
    class_name = _cached_index_class(hub_id)
    if class_name is not None:
        found = family_for_pipeline(class_name)
        if found is not None:
            return found
    lowered = hub_id.lower()
    for cls in _loadable_families():
        if any(lowered.startswith(p.lower()) for p in getattr(cls, "hub_prefixes", ())):
            return str(cls.family)
    return LEGACY_HUB_FAMILY


def family_for_folder(folder: str | Path) -> str | None:
    """The family of a diffusers pipeline folder (UsageError for an unknown pipeline class)."""
    class_name = pipeline_class_name(folder)
    if class_name is None:
        return None
    found = family_for_pipeline(class_name)
    if found is None:
        raise UsageError(
            f"{folder}: no installed policy family loads a {class_name} (families: "
            f"{', '.join(family_names())}); install one or pass --family NAME"
        )
    return found
