"""The two-adapter LoRA scheme of DiffusionNFT on any torch ``nn.Module``.

One model carries two LoRA adapters on the same target layers: the trained adapter
("default") and a frozen, lagging copy ("old") that samples the data. The reference model is
the same network with all adapters disabled. Adapters are injected with
``peft.inject_adapter_in_model`` and driven through peft's tuner layers directly (no
``PeftModel`` wrapper), so plain modules and diffusers' ``SD3Transformer2DModel`` behave alike.

Keep the model's resting state with the trained adapter active (``add_nft_adapters`` leaves
it so): activation checkpointing recomputes forwards during backward, outside any
``use_adapter`` block, with whatever adapter is then active.
"""

from __future__ import annotations

import copy
import warnings
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import torch
from peft import LoraConfig, inject_adapter_in_model
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import Tensor, nn

from nftkit.train.schedules import soft_update_

_LORA_PARAM_GROUPS = ("lora_A", "lora_B", "lora_embedding_A", "lora_embedding_B")
_LAYER_CACHE: weakref.WeakKeyDictionary[nn.Module, list[BaseTunerLayer]] = (
    weakref.WeakKeyDictionary()
)
_SwitchState = tuple[str | list[str], bool]  # (active adapter(s), adapters disabled)
_FAST_SWITCH = True  # set False to switch adapters through peft's public methods only


def _tuner_layers(model: nn.Module) -> list[tuple[str, BaseTunerLayer]]:
    """(module path, layer) of every peft tuner layer, in registration order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, BaseTunerLayer)]


def _adapter_names(model: nn.Module) -> set[str]:
    names: set[str] = set()
    for _, layer in _tuner_layers(model):
        for group in _LORA_PARAM_GROUPS:
            container = getattr(layer, group, None)
            if isinstance(container, nn.ModuleDict | nn.ParameterDict):
                names.update(container.keys())
    return names


def _require_adapter(model: nn.Module, name: str) -> None:
    available = _adapter_names(model)
    if name not in available:
        listed = ", ".join(sorted(available)) or "none (call add_nft_adapters first)"
        raise ValueError(f"unknown adapter {name!r}; adapters on this model: {listed}")


def _adapter_items(model: nn.Module, name: str) -> list[tuple[str, str, Tensor, float]]:
    """(key, group, parameter, peft scale) for every LoRA tensor of adapter ``name``."""
    _require_adapter(model, name)
    items: list[tuple[str, str, Tensor, float]] = []
    for path, layer in _tuner_layers(model):
        prefix = f"{path}." if path else ""
        scale = float(getattr(layer, "scaling", {}).get(name, 1.0))
        for group in _LORA_PARAM_GROUPS:
            container = getattr(layer, group, None)
            if container is None or name not in container:
                continue
            item = container[name]
            if isinstance(item, nn.Module):
                for pname, param in item.named_parameters():
                    items.append((f"{prefix}{group}.{pname}", group, param, scale))
            else:
                items.append((f"{prefix}{group}", group, item, scale))
    return items


def adapter_parameters(model: nn.Module, name: str) -> dict[str, Tensor]:
    """The live LoRA parameters of adapter ``name``, keyed like peft's saved format.

    Keys are ``<module path>.lora_A.weight`` / ``<module path>.lora_B.weight`` (no adapter
    name), in the model's module order. Values are the parameters themselves (not copies), so
    they can go to an optimizer or be updated in place.
    """
    return {key: param for key, _, param, _ in _adapter_items(model, name)}


@torch.no_grad()
def load_adapter_parameters(model: nn.Module, name: str, tensors: Mapping[str, Tensor]) -> None:
    """Copy ``tensors`` (keyed as by ``adapter_parameters``) into adapter ``name`` in place."""
    params = adapter_parameters(model, name)
    missing = sorted(set(params) - set(tensors))
    unexpected = sorted(set(tensors) - set(params))
    if missing or unexpected:
        raise ValueError(
            f"adapter {name!r} keys do not match: "
            f"missing {missing[:5]}, unexpected {unexpected[:5]}"
        )
    for key, param in params.items():
        src = tensors[key]
        if src.shape != param.shape:
            raise ValueError(f"{key}: shape {tuple(src.shape)} != {tuple(param.shape)}")
        param.copy_(src.to(device=param.device, dtype=param.dtype))


def add_nft_adapters(
    model: nn.Module,
    target_modules: list[str],
    rank: int = 32,
    alpha: int = 64,
    init: str | bool = "gaussian",
    trained: str = "default",
    frozen: str = "old",
) -> None:
    """Inject the trained and the frozen LoRA adapters into ``model`` in place.

    Both adapters target ``target_modules`` (peft matching: exact name or dotted suffix) with
    rank ``rank``, ``lora_alpha=alpha`` and peft's ``init_lora_weights=init``. The frozen
    adapter starts as an exact copy of the trained one. Afterwards the LoRA weights are
    float32, only the trained adapter's LoRA weights require grad (the base model and the
    frozen adapter are frozen), and the trained adapter is the active one.
    """
    if trained == frozen:
        raise ValueError("trained and frozen adapter names must differ")
    existing = _adapter_names(model)
    if existing & {trained, frozen}:
        raise ValueError(f"model already has adapters {sorted(existing)}")
    config = LoraConfig(
        r=rank, lora_alpha=alpha, init_lora_weights=init, target_modules=list(target_modules)
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Already found a `peft_config` attribute.*")
        for name in (trained, frozen):
            inject_adapter_in_model(config, model, adapter_name=name)
    model.requires_grad_(False)
    for name in (trained, frozen):
        for param in adapter_parameters(model, name).values():
            param.data = param.data.float()
    load_adapter_parameters(model, frozen, adapter_parameters(model, trained))
    layers = [layer for _, layer in _tuner_layers(model)]
    _LAYER_CACHE[model] = layers
    for layer in layers:
        layer.enable_adapters(True)
        layer.set_adapter(trained)
    model.requires_grad_(False)
    for param in adapter_parameters(model, trained).values():
        param.requires_grad_(True)


def _switch_layers(model: nn.Module) -> list[BaseTunerLayer]:
    """The model's tuner layers, cached per model (refreshed by ``add_nft_adapters``)."""
    layers = _LAYER_CACHE.get(model)
    if layers is None:
        layers = [layer for _, layer in _tuner_layers(model)]
        if layers:
            _LAYER_CACHE[model] = layers
    return layers


def _layer_has_adapter(layer: BaseTunerLayer, name: str) -> bool:
    for group in _LORA_PARAM_GROUPS:
        container = getattr(layer, group, None)
        if container is not None and name in container:
            return True
    return False


def _set_state_fast(layers: list[BaseTunerLayer], states: list[_SwitchState]) -> bool:
    """Set (active adapters, disabled) through peft's layer attributes; False if unsupported.

    peft keeps a layer's switch state in ``_active_adapter`` and ``_disable_adapters`` behind the
    read-only properties ``active_adapter(s)`` / ``disable_adapters``; its public setters also
    rewrite ``requires_grad``. The write is checked against the public properties, so a peft
    that stores the state elsewhere makes the caller fall back to the public methods.
    """
    for layer, (active, disabled) in zip(layers, states, strict=True):
        layer._active_adapter = copy.copy(active)
        layer._disable_adapters = disabled
    first, (active, disabled) = layers[0], states[0]
    wanted = [active] if isinstance(active, str) else list(active)
    return list(first.active_adapters) == wanted and bool(first.disable_adapters) == disabled


def _set_state_public(layers: list[BaseTunerLayer], states: list[_SwitchState]) -> None:
    """Set the switch state with peft's public methods, keeping every requires_grad flag."""
    flags = [(p, p.requires_grad) for layer in layers for p in layer.parameters()]
    for layer, (active, disabled) in zip(layers, states, strict=True):
        layer.enable_adapters(True)
        layer.set_adapter(active)
        if disabled:
            layer.enable_adapters(False)
    for param, flag in flags:
        if param.requires_grad != flag:
            param.requires_grad_(flag)


def _set_state(layers: list[BaseTunerLayer], states: list[_SwitchState]) -> None:
    if not (_FAST_SWITCH and _set_state_fast(layers, states)):
        _set_state_public(layers, states)


@contextmanager
def use_adapter(model: nn.Module, name: str | None) -> Iterator[None]:
    """Run the block with only adapter ``name`` active; ``None`` disables all adapters.

    ``None`` gives the reference (base) model. On exit (also on an exception) the previous
    active adapters and enabled/disabled state come back. ``requires_grad`` flags are never
    changed. Nestable and cheap (no module traversal after the first call), so it can run
    several times per training step. The set of LoRA layers is captured when the adapters are
    added; add LoRA layers only through ``add_nft_adapters``.
    """
    layers = _switch_layers(model)
    if not layers:
        raise ValueError("model has no LoRA layers; call add_nft_adapters first")
    if name is not None and not any(_layer_has_adapter(layer, name) for layer in layers):
        _require_adapter(model, name)  # raises with the list of adapters
    saved: list[_SwitchState] = [
        (copy.copy(layer.active_adapter), bool(layer.disable_adapters)) for layer in layers
    ]
    wanted: list[_SwitchState] = [
        (list(saved_active) if name is None else [name], name is None) for saved_active, _ in saved
    ]
    try:
        _set_state(layers, wanted)
        yield
    finally:
        _set_state(layers, saved)


def soft_update_adapter(
    model: nn.Module, target: str = "old", source: str = "default", eta: float = 0.0
) -> None:
    """In place: adapter ``target`` <- eta * target + (1 - eta) * source (the sampler update)."""
    tgt = adapter_parameters(model, target)
    src = adapter_parameters(model, source)
    if list(tgt) != list(src):
        raise ValueError(f"adapters {target!r} and {source!r} do not cover the same layers")
    soft_update_(tgt.values(), src.values(), eta)


def lora_state_dict_for_diffusers(
    model: nn.Module,
    name: str = "default",
    prefix: str | None = "transformer",
    fold_scaling: bool = True,
) -> dict[str, Tensor]:
    """Adapter ``name`` as a diffusers LoRA state dict (CPU, contiguous, detached copies).

    Keys follow ``get_peft_model_state_dict`` + ``StableDiffusion3Pipeline.save_lora_weights``:
    ``<prefix>.<module path>.lora_A.weight`` / ``.lora_B.weight``, no adapter name. Without
    metadata diffusers loads a LoRA with alpha = rank (scale 1), so by default the peft scale
    (alpha / rank) is folded into ``lora_B``; the saved file then reproduces the trained
    model when loaded with ``load_lora_weights``. With ``fold_scaling=False`` the raw weights
    are returned and the caller must save the LoRA config (alpha) as adapter metadata.
    """
    head = f"{prefix}." if prefix else ""
    out: dict[str, Tensor] = {}
    for key, group, param, scale in _adapter_items(model, name):
        tensor = param.detach().to("cpu", copy=True)
        if fold_scaling and group.endswith("B"):
            tensor = tensor * scale
        out[f"{head}{key}"] = tensor.contiguous()
    return out
