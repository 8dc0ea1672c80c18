"""The Policy contract that the trainers see (DESIGN.md): sample, velocity, decode.

A policy owns a model with the two LoRA adapters of DiffusionNFT ("default", trained; "old",
the frozen sampling copy); ``adapter=None`` means all adapters disabled, i.e. the reference model.
Conditioning is whatever ``encode_prompts`` returns: a tensor or a dict of tensors whose first
dimension is the batch, so that trainers can index and concatenate it without knowing its content.

Two optional parts of the contract: ``time_grid(num_steps) -> Tensor`` (the policy's own
sampling grid: float64, descending from <= 1, num_steps + 1 entries, the last 0; a diffusers
model returns its scheduler's sigmas) and the ``integer_timestep`` keyword of ``velocity``
(sampling passes it as True where the official pipeline feeds the network an integer timestep;
training forwards keep the float). ``policy_time_grid`` and ``sampling_velocity_kwargs`` read
them, with the shifted linspace grid and no keyword as fallbacks.
"""

from __future__ import annotations

import inspect
import platform
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn

Cond = torch.Tensor | dict[str, Any]


@runtime_checkable
class Policy(Protocol):
    """What can sample images and predict velocities, with NFT's adapters."""

    model: nn.Module
    device: torch.device
    latent_shape: tuple[int, ...]
    lora_targets: list[str]

    def encode_prompts(self, prompts: Sequence[str]) -> Cond:
        """Conditioning for a batch of prompts."""
        ...

    def velocity(
        self, x_t: torch.Tensor, t: torch.Tensor, cond: Cond, adapter: str | None = "default"
    ) -> torch.Tensor:
        """Flow velocity v = eps - x0 at x_t, t in [0, 1] (t = 1 is noise), float32."""
        ...

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Clean latents -> images float [B, 3, H, W] in [0, 1]."""
        ...


def check_time_grid(grid: torch.Tensor, num_steps: int, owner: str = "time grid") -> torch.Tensor:
    """``grid`` as float64 after checking the contract (length, order, end points)."""
    grid = torch.as_tensor(grid).detach().to("cpu", torch.float64)
    if grid.ndim != 1 or grid.numel() != num_steps + 1:
        raise ValueError(
            f"{owner}: expected {num_steps + 1} timesteps, got shape {tuple(grid.shape)}"
        )
    if grid[-1] != 0 or grid[0] > 1 or bool((grid[1:] >= grid[:-1]).any()):
        raise ValueError(
            f"{owner}: must decrease strictly from <= 1 to exactly 0, got {grid.tolist()}"
        )
    return grid


def policy_time_grid(policy: Any, num_steps: int, shift: float | None = None) -> torch.Tensor:
    """The grid a policy samples and trains on: float64 [num_steps + 1], descending, last 0.

    ``shift`` None: the policy's own ``time_grid`` (a diffusers model's scheduler sigmas), or the
    uniform grid when it has none; a number: nftkit's shifted linspace grid with that shift
    (``nftkit.train.sampling.timesteps``), an explicit override.
    """
    from nftkit.train.sampling import timesteps

    own = getattr(policy, "time_grid", None)
    if shift is None and callable(own):
        return check_time_grid(own(num_steps), num_steps, f"{type(policy).__name__}.time_grid")
    return timesteps(num_steps, 1.0 if shift is None else shift).to(torch.float64)


def sampling_velocity_kwargs(policy: Any) -> dict[str, Any]:
    """Keywords for ``policy.velocity`` while sampling: ``integer_timestep=True`` if it has one."""
    try:
        params = inspect.signature(policy.velocity).parameters
    except (TypeError, ValueError):
        return {}
    return {"integer_timestep": True} if "integer_timestep" in params else {}


def index_cond(cond: Cond, index: torch.Tensor | slice) -> Cond:
    """Select batch rows of a conditioning tensor or dict of tensors (other values kept)."""
    if isinstance(cond, torch.Tensor):
        return cond[index]
    return {k: v[index] if isinstance(v, torch.Tensor) else v for k, v in cond.items()}


def cat_conds(conds: Sequence[Cond]) -> Cond:
    """Concatenate conditionings along the batch dimension."""
    first = conds[0]
    if isinstance(first, torch.Tensor):
        return torch.cat(list(conds))  # type: ignore[arg-type]
    return {
        k: torch.cat([c[k] for c in conds]) if isinstance(v, torch.Tensor) else v  # type: ignore[index]
        for k, v in first.items()
    }


def repeat_cond(cond: Cond, repeats: int) -> Cond:
    """Repeat each row ``repeats`` times (prompt i's rows stay contiguous)."""
    if isinstance(cond, torch.Tensor):
        return cond.repeat_interleave(repeats, dim=0)
    return {
        k: v.repeat_interleave(repeats, dim=0) if isinstance(v, torch.Tensor) else v
        for k, v in cond.items()
    }


AUTO = "auto"


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (x86: AVX512-BF16 or AMX tiles)."""
    try:
        if platform.machine().lower() in ("x86_64", "amd64", "i386", "i686"):
            return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def fast_autocast_dtype(device: torch.device | str) -> torch.dtype | None:
    """bfloat16 where the hardware runs it natively, else None (plain float32).

    On CPU that needs native bf16 instructions: on x86, AVX512-BF16 or AMX. oneDNN also reports
    bf16 "supported" on plain AVX-512 (it converts), where the shapes model runs ~2.4x slower in
    bf16 than in float32 (a 2-core Xeon without AVX512-BF16, measured), and ~20x slower without
    AVX-512. On other CPUs, oneDNN's own check. On CUDA: ``torch.cuda.is_bf16_supported()``.
    """
    kind = torch.device(device).type
    if kind == "cpu":
        return torch.bfloat16 if cpu_has_native_bf16() else None
    if kind == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return None


def sampling_adapter(policy: Any, adapter: str | None) -> str | None:
    """The network a policy's own ``sample`` asks for: ``adapter`` when the model has LoRA
    layers or full-training weight sets, else None (a plain model has only the base)."""
    if getattr(policy, "_has_lora", False) or getattr(policy, "weight_sets", None) is not None:
        return adapter
    return None


def has_lora_layers(model: nn.Module) -> bool:
    """True when peft LoRA layers have been injected into ``model``."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    return any(isinstance(m, BaseTunerLayer) for m in model.modules())


@contextmanager
def velocity_context(policy: Any, adapter: str | None) -> Iterator[None]:
    """A policy's forward setting: LoRA adapter ``adapter`` active (None: all adapters disabled,
    the reference model) under the policy's ``autocast_dtype`` (None: no autocast).

    Whether the model has LoRA layers is looked up once and cached on ``policy._has_lora``.
    Under full-parameter training the trainer sets ``policy.weight_sets``
    (``nftkit.train.full_weights.FullWeights``), which swaps in the named network instead.
    """
    from nftkit.train.lora import use_adapter

    weights = getattr(policy, "weight_sets", None)
    if weights is not None:
        lora = weights.use(adapter)
    else:
        if not getattr(policy, "_has_lora", None):
            policy._has_lora = has_lora_layers(policy.model)
        lora = use_adapter(policy.model, adapter) if policy._has_lora else nullcontext()
    dtype = policy.autocast_dtype
    amp = nullcontext() if dtype is None else torch.autocast(policy.device.type, dtype=dtype)
    with lora, amp:
        yield
