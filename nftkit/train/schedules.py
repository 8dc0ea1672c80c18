"""Averaging schedules of DiffusionNFT: the sampler's soft update and the evaluation EMA.

Two different averages, kept apart: ``old_policy_decay`` drives theta_old (the sampling
policy) once per epoch; ``EmaWeights`` holds an EMA of theta used only for evaluation and
saved checkpoints.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager

import torch
from torch import Tensor

OLD_POLICY_SCHEDULES = ("default", "ocr", "zero")


def old_policy_decay(step: int, schedule: str = "default") -> float:
    """Decay eta of the soft update theta_old <- eta * theta_old + (1 - eta) * theta.

    default: min(0.001 * step, 0.5); ocr: 0 before step 75, then min(0.0075 * (step - 75), 0.999);
    zero: 0 (fully on-policy).
    """
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    if schedule == "default":
        return min(0.001 * step, 0.5)
    if schedule == "ocr":
        return 0.0 if step < 75 else min(0.0075 * (step - 75), 0.999)
    if schedule == "zero":
        return 0.0
    raise ValueError(f"unknown schedule {schedule!r}; valid: {', '.join(OLD_POLICY_SCHEDULES)}")


def ema_decay(step: int) -> float:
    """Decay of the evaluation EMA at optimizer step ``step``: min((1 + s) / (10 + s), 0.9)."""
    if step < 0:
        raise ValueError(f"step must be >= 0, got {step}")
    return min((1.0 + step) / (10.0 + step), 0.9)


@torch.no_grad()
def soft_update_(
    target_params: Iterable[Tensor], source_params: Iterable[Tensor], eta: float
) -> None:
    """In place: target <- eta * target + (1 - eta) * source, pairwise over the two iterables."""
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be in [0, 1], got {eta}")
    targets, sources = list(target_params), list(source_params)
    if len(targets) != len(sources):
        raise ValueError(f"got {len(targets)} target and {len(sources)} source tensors")
    for tgt, src in zip(targets, sources, strict=True):
        if tgt.shape != src.shape:
            raise ValueError(f"shape mismatch {tuple(tgt.shape)} vs {tuple(src.shape)}")
        tgt.mul_(eta).add_(src.to(device=tgt.device, dtype=tgt.dtype), alpha=1.0 - eta)


class EmaWeights:
    """float32 shadow copies (EMA) of a list of parameters, for evaluation and checkpoints.

    The shadows live on the parameters' devices unless ``device`` is given. Parameters are
    matched by position, so always pass them in the same order.
    """

    def __init__(self, params: Iterable[Tensor], device: torch.device | str | None = None) -> None:
        """Start the shadows as float32 copies of ``params``."""
        self.shadow: list[Tensor] = [
            p.detach().to(
                device=device if device is not None else p.device, dtype=torch.float32, copy=True
            )
            for p in params
        ]

    def _check(self, params: list[Tensor]) -> None:
        if len(params) != len(self.shadow):
            raise ValueError(f"EmaWeights holds {len(self.shadow)} tensors, got {len(params)}")
        for s, p in zip(self.shadow, params, strict=True):
            if s.shape != p.shape:
                raise ValueError(f"shape mismatch {tuple(s.shape)} vs {tuple(p.shape)}")

    @torch.no_grad()
    def update(self, params: Iterable[Tensor], step: int) -> float:
        """shadow <- d * shadow + (1 - d) * param with d = ema_decay(step); returns d."""
        params = list(params)
        self._check(params)
        decay = ema_decay(step)
        for s, p in zip(self.shadow, params, strict=True):
            s.mul_(decay).add_(p.detach().to(device=s.device, dtype=torch.float32), alpha=1 - decay)
        return decay

    @torch.no_grad()
    def copy_to(self, params: Iterable[Tensor]) -> None:
        """Write the shadows into ``params`` (cast to their dtype and device)."""
        params = list(params)
        self._check(params)
        for s, p in zip(self.shadow, params, strict=True):
            p.copy_(s.to(device=p.device, dtype=p.dtype))

    @contextmanager
    def swapped_in(self, params: Iterable[Tensor]) -> Iterator[None]:
        """Temporarily put the EMA weights into ``params``; the originals come back on exit."""
        params = list(params)
        self._check(params)
        with values_in(params, self.shadow):
            yield

    def state_dict(self) -> dict[str, Tensor]:
        """Shadows keyed "0", "1", ... (contiguous tensors; safetensors-friendly)."""
        return {str(i): s.detach().contiguous() for i, s in enumerate(self.shadow)}

    @torch.no_grad()
    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        """Load shadows saved by ``state_dict``; keys and shapes must match exactly."""
        expected = {str(i) for i in range(len(self.shadow))}
        if set(state) != expected:
            raise ValueError(
                f"EMA state keys {sorted(state)} do not match the expected {sorted(expected)}"
            )
        for i, s in enumerate(self.shadow):
            src = state[str(i)]
            if src.shape != s.shape:
                raise ValueError(f"EMA tensor {i}: shape {tuple(src.shape)} != {tuple(s.shape)}")
            s.copy_(src.to(device=s.device, dtype=torch.float32))


@contextmanager
def values_in(params: list[Tensor], values: list[Tensor]) -> Iterator[None]:
    """Temporarily copy ``values`` (cast to the parameters' dtype) into ``params``."""
    backup = [p.detach().clone() for p in params]
    with torch.no_grad():
        for p, v in zip(params, values, strict=True):
            p.copy_(v)
    try:
        yield
    finally:
        with torch.no_grad():
            for p, b in zip(params, backup, strict=True):
                p.copy_(b)
