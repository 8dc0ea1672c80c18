"""Turn a ``--model`` argument into a Policy.

Accepted: ``shapes-base`` (ships with nftkit), a shapes model folder (config.json +
model.safetensors), a Stable Diffusion 3 hub id (``stabilityai/stable-diffusion-3.5-medium``)
or diffusers pipeline folder (model_index.json), an nftkit training output folder
(``nftkit_model.json`` + ``lora/``), whose base model is loaded and whose EMA LoRA adapter is
applied (or, for a full-parameter run, ``full/``: whose EMA transformer weights replace the
base ones), or a diffusers LoRA folder (``pytorch_lora_weights.safetensors``, as ``nftkit export``
writes) on top of a diffusers ``base``, fused into the base weights. Diffusers models go to
the policy family (``nftkit.policies.families``) that lists their ``model_index.json``
``_class_name``; ``family=`` (``--family NAME``) overrides that choice. A training output folder
records the policy options it was trained with (``nftkit_model.json`` "policy", e.g. the
resolution); they are the defaults when it is loaded, and keyword options override them.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from safetensors.torch import load_file

from nftkit.errors import MissingWeightsError, UsageError
from nftkit.policies.base import Policy
from nftkit.policies.families import (
    PIPELINE_INDEX,
    family_class,
    family_for_folder,
    family_for_hub_id,
)
from nftkit.policies.sd3_loading import looks_like_hub_id
from nftkit.policies.shapes import BUILTIN_MODELS, CONFIG_FILE, ShapesPolicy

MODEL_INFO_FILE = "nftkit_model.json"
DIFFUSERS_LORA_FILE = "pytorch_lora_weights.safetensors"
NOT_POLICY_OPTIONS = ("family", "device")  # given by --family / --device, not as options


def policy_kwargs(options: Mapping[str, Any] | None) -> dict[str, Any]:
    """Policy options as ``load_policy`` keywords: "family" and "device" dropped (they have
    their own arguments), an ``autocast_dtype`` name ("bf16") parsed; other dtype names stay
    strings (the family's ``from_pretrained`` parses them)."""
    kwargs = {k: v for k, v in (options or {}).items() if k not in NOT_POLICY_OPTIONS}
    if kwargs.get("autocast_dtype") not in (None, "auto"):
        import torch

        from nftkit.policies.sd3 import parse_dtype

        kwargs["autocast_dtype"] = parse_dtype(kwargs["autocast_dtype"], torch.float32)
    return kwargs


def policy_option_names(cls: Any) -> set[str] | None:
    """The keyword options a family's ``from_pretrained`` takes, following ``**kwargs`` into
    the class's ``__init__`` chain; None when it stays open-ended (anything may be valid)."""
    names: set[str] = set()
    functions = [cls.from_pretrained] + [
        klass.__dict__["__init__"] for klass in cls.__mro__ if "__init__" in klass.__dict__
    ]
    for function in functions:
        try:
            params = list(inspect.signature(function).parameters.values())
        except (TypeError, ValueError):
            return None
        if params and params[0].name in ("self", "cls"):
            params = params[1:]
        named = [p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
        if named and named[0].kind is named[0].POSITIONAL_OR_KEYWORD:
            named = named[1:]  # the model: name_or_path, pipeline or model
        names |= {p.name for p in named}
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            return names - set(NOT_POLICY_OPTIONS)
    return None


def describe_model(
    model: str | Path, base: str | None = None, family: str | None = None
) -> dict[str, Any]:
    """What kind of model ``model`` names: {"family": ..., "base": ..., "lora": ...}.

    ``base`` is the model that a diffusers LoRA folder applies to; ``family`` forces the family
    of a diffusers folder or hub id (training output folders keep the family they recorded).
    """
    path = Path(model)
    if (path / DIFFUSERS_LORA_FILE).is_file() and not (path / MODEL_INFO_FILE).is_file():
        if base is None:
            raise UsageError(
                f"{path} is a LoRA folder: pass --base MODEL, e.g. --base "
                "stabilityai/stable-diffusion-3.5-medium or a diffusers folder"
            )
        base_info = describe_model(base, family=family)
        if base_info.get("family") == "shapes" or base_info.get("lora") or base_info.get("full"):
            raise UsageError(f"--base {base}: a diffusers LoRA needs a diffusers pipeline base")
        return {"family": base_info["family"], "base": str(base), "diffusers_lora": str(path)}
    if base is not None:
        raise UsageError(f"--base is only for LoRA folders ({DIFFUSERS_LORA_FILE}); {model} is not")
    if (path / MODEL_INFO_FILE).is_file():
        try:
            info = json.loads((path / MODEL_INFO_FILE).read_text())
        except (ValueError, OSError) as exc:
            raise MissingWeightsError(
                f"{path / MODEL_INFO_FILE} is not valid JSON ({exc})"
            ) from exc
        if not isinstance(info, dict) or "base" not in info:
            raise MissingWeightsError(f"{path / MODEL_INFO_FILE} does not name its base model")
        return info
    if path.is_dir() and (family or (path / PIPELINE_INDEX).is_file()):
        found = family or family_for_folder(path)
        if found is not None:
            return {"family": found, "base": str(model)}
    if str(model) in BUILTIN_MODELS or (path / CONFIG_FILE).is_file():
        return {"family": "shapes", "base": str(model)}
    if not path.is_dir() and looks_like_hub_id(str(model)):
        return {"family": family or family_for_hub_id(str(model)), "base": str(model)}
    if path.exists():
        raise MissingWeightsError(
            f"{path} is neither an nftkit training folder ({MODEL_INFO_FILE}) nor a model folder"
        )
    raise UsageError(
        f"model not found: {model}. Give 'shapes-base', a model folder, a diffusers hub id or "
        "pipeline folder, or a training output folder written by `nftkit train`."
    )


def load_policy(
    model: str | Path,
    device: str = "cpu",
    base: str | None = None,
    family: str | None = None,
    **kwargs: Any,
) -> Policy:
    """Load the policy named by ``model`` (a base, or a base + trained LoRA).

    ``family`` (``--family NAME``) overrides the family found from ``model_index.json``; a
    training output folder's recorded policy options are the defaults of ``kwargs``.
    """
    info = describe_model(model, base, family)
    name = info.get("family", "shapes")
    stored = info.get("policy")
    kwargs = {**policy_kwargs(stored if isinstance(stored, dict) else None), **kwargs}
    policy: Policy
    if name == "shapes":
        policy = ShapesPolicy.from_pretrained(info["base"], device=device, **kwargs)
    else:
        policy = family_class(name).from_pretrained(info["base"], device=device, **kwargs)
        if info.get("diffusers_lora"):
            _fuse_diffusers_lora(policy, info["diffusers_lora"])
    lora = info.get("lora")
    if lora:
        from nftkit.train.lora import add_nft_adapters, load_adapter_parameters

        weights = Path(model) / lora["file"]
        if not weights.is_file():
            raise MissingWeightsError(f"LoRA weights missing: expected {weights}")
        add_nft_adapters(policy.model, lora["targets"], rank=lora["rank"], alpha=lora["alpha"])
        load_adapter_parameters(policy.model, "default", load_file(str(weights)))
        policy.model.requires_grad_(False)
    full = info.get("full")
    if full:
        _load_full_weights(policy, Path(model) / full["file"])
    policy.model.eval()
    return policy


def _load_full_weights(policy: Any, weights: Path) -> None:
    """Replace the transformer's weights by a full-parameter run's (safetensors, strict)."""
    if not weights.is_file():
        raise MissingWeightsError(f"full-parameter weights missing: expected {weights}")
    try:
        policy.model.load_state_dict(load_file(str(weights)))
    except RuntimeError as exc:  # missing/unexpected keys or shapes: another base model
        reason = " ".join(str(exc).split())[:300]
        raise MissingWeightsError(f"{weights} does not fit the base model: {reason}") from None
    policy.model.requires_grad_(False)


def _fuse_diffusers_lora(policy: Any, folder: str) -> None:
    """Load a diffusers LoRA into the pipeline (safetensors), fuse it and drop the LoRA layers."""
    pipeline = policy.pipeline
    try:
        pipeline.load_lora_weights(folder, weight_name=DIFFUSERS_LORA_FILE)
    except (OSError, ValueError, KeyError) as exc:
        raise MissingWeightsError(f"cannot load the LoRA in {folder}: {exc}") from None
    pipeline.fuse_lora()
    pipeline.unload_lora_weights()
