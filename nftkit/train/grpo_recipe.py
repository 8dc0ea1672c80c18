"""The FlowGRPO reference recipe around the loss: CFG velocity, zero-advantage drop, interval EMA.

Facts from yifan123/flow_grpo (scripts/train_sd3.py, flow_grpo/ema.py), written here as pure
functions so that each can be tested against a hand computation:

- classifier-free guidance in sampling and in the training forward, v = v_u + w (v_c - v_u),
  with the unconditional branch (the empty prompt) detached from the graph in training;
- samples whose advantage is exactly 0 are dropped one by one; when the kept count does not
  split into the epoch's number of training batches, randomly chosen dropped samples are taken
  back until it does (the batches get smaller, their number stays the same);
- an EMA of the trained weights that is stepped after every training batch but only applies
  when (optimizer step + 1) is a multiple of its interval (8), decay min((1 + s) / (10 + s), 0.9).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch import Tensor

from nftkit.policies.base import Cond, cat_conds
from nftkit.train.schedules import EmaWeights

CondVelocityFn = Callable[[Tensor, Tensor, Cond], Tensor]


def cfg_velocity(
    velocity_fn: CondVelocityFn, x: Tensor, t: Tensor, cond: Cond, uncond: Cond, scale: float
) -> Tensor:
    """Guided velocity v_u + scale * (v_c - v_u) from one forward on the doubled batch.

    ``uncond`` has the rows of ``cond`` (the empty prompt repeated); the batch is laid out as
    [uncond; cond] as in the reference. v_u is detached, so the gradient flows through the
    conditional branch only (scale * dv_c). ``scale == 1`` is a plain conditional call.
    """
    if scale == 1.0:
        return velocity_fn(x, t, cond)
    t_both = torch.cat([t, t]) if t.ndim and t.shape[0] == x.shape[0] else t
    v_uncond, v_cond = velocity_fn(torch.cat([x, x]), t_both, cat_conds([uncond, cond])).chunk(2)
    v_uncond = v_uncond.detach()
    return v_uncond + scale * (v_cond - v_uncond)


def kept_samples(advantages: Tensor, num_batches: int, generator: torch.Generator) -> Tensor:
    """Indices (ascending) of the samples trained on: advantage != 0, padded to a multiple.

    When the number of non-zero advantages is not a multiple of ``num_batches``, the missing
    ``num_batches - count % num_batches`` are drawn (``torch.randperm`` with ``generator``)
    from the dropped samples, as the reference does; if too few were dropped, none is added.
    """
    if advantages.ndim != 1:
        raise ValueError(f"advantages must be 1-D, got shape {tuple(advantages.shape)}")
    if num_batches < 1:
        raise ValueError(f"num_batches must be >= 1, got {num_batches}")
    keep = advantages != 0
    remainder = int(keep.sum()) % num_batches
    if remainder:
        dropped = torch.nonzero(~keep).flatten()
        missing = num_batches - remainder
        if len(dropped) >= missing:
            pick = torch.randperm(len(dropped), generator=generator)[:missing]
            keep[dropped[pick]] = True
    return torch.nonzero(keep).flatten()


def train_batches(kept: Tensor, num_batches: int, generator: torch.Generator) -> list[Tensor]:
    """Shuffle ``kept`` (``torch.randperm`` with ``generator``) into ``num_batches`` batches.

    Equal sizes when ``len(kept)`` is a multiple of ``num_batches`` (the reference's reshape);
    otherwise the first batches are one larger. Empty batches are left out.
    """
    order = kept[torch.randperm(len(kept), generator=generator)]
    return [part for part in torch.tensor_split(order, num_batches) if len(part)]


class IntervalEma(EmaWeights):
    """The reference's EMA: applies only when (step + 1) % interval == 0, decay ema_decay(step).

    ``update`` is meant to be called after every training batch with the optimizer steps taken
    so far (several calls may see the same step under gradient accumulation, as in the
    reference); it returns the decay applied, or None when the call was skipped.
    """

    def __init__(
        self, params: Iterable[Tensor], interval: int = 8, device: torch.device | str | None = None
    ) -> None:
        """Float32 shadows of ``params``, stepped every ``interval`` optimizer steps."""
        if interval < 1:
            raise ValueError(f"EMA interval must be >= 1, got {interval}")
        super().__init__(params, device=device)
        self.interval = interval

    @torch.no_grad()
    def update(self, params: Iterable[Tensor], step: int) -> float | None:  # type: ignore[override]
        """shadow <- d * shadow + (1 - d) * param when (step + 1) % interval == 0."""
        params = list(params)
        self._check(params)
        if (step + 1) % self.interval:
            return None
        return super().update(params, step)  # decay ema_decay(step) = min((1+s)/(10+s), 0.9)
