"""Full-parameter training: the "old" policy and the reference as copies of the trained weights.

With ``finetune = "full"`` the transformer's own parameters are trained, so DiffusionNFT's
other two networks cannot be LoRA adapters on the same layers. ``FullWeights`` keeps them as
tensor copies matched by position to the trained parameters (the local shards under FSDP):
``old`` (the sampling policy theta_old, soft-updated towards theta once per epoch) and ``ref``
(the base weights, for the reference velocity; only when ``ref_weight > 0``). A forward with
another network swaps its copy into the live parameters in place and swaps it back afterwards
(a swap is exact: the copies keep the parameters' dtype), so every forward runs through the
one prepared module, FSDP-sharded or not. ``policies.base.velocity_context`` asks for the
network by the adapter names of the LoRA scheme: "default" (trained), "old", None (reference).

Memory: each copy costs one more set of weights in the parameters' dtype (under FSDP: of this
process's shard, 1/N of the model).

Under FSDP the writes go to the sharded parameters, the ones the optimizer holds, so every
write first reshards the module (``before_write``): FSDP keeps the root unit's gathered
parameters after a forward without backward and would run the next forward on those stale
copies otherwise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

from nftkit.train.schedules import EmaWeights, soft_update_

TRAINED = "default"
OLD = "old"
REFERENCE = "ref"


def local_view(tensor: Tensor) -> Tensor:
    """This process's part of ``tensor`` (the local shard of an FSDP2 DTensor; else itself)."""
    to_local = getattr(tensor, "to_local", None)
    return to_local() if callable(to_local) else tensor


@torch.no_grad()
def swap_(first: list[Tensor], second: list[Tensor]) -> None:
    """Exchange the values of two lists of same-shaped tensors in place (one tensor of scratch)."""
    for a, b in zip(first, second, strict=True):
        scratch = a.detach().clone()
        a.copy_(b)
        b.copy_(scratch)


class FullWeights:
    """The trained parameters and the copies that stand in for the "old" and reference networks."""

    def __init__(
        self,
        params: list[Tensor],
        keep_reference: bool = True,
        before_write: Callable[[], None] | None = None,
    ) -> None:
        """Copy ``params`` (now the base weights) into "old" and, if asked, "ref"."""
        self.params = params
        self.before_write = before_write or _nothing
        names = [OLD, REFERENCE] if keep_reference else [OLD]
        self.copies: dict[str, list[Tensor]] = {
            name: [p.detach().clone() for p in params] for name in names
        }
        self.active = TRAINED

    @property
    def has_reference(self) -> bool:
        """True when a copy of the base weights is kept (``ref_weight > 0``)."""
        return REFERENCE in self.copies

    def _network(self, adapter: str | None) -> str:
        name = REFERENCE if adapter is None else adapter
        if name == TRAINED or name in self.copies:
            return name
        if name == REFERENCE:
            raise ValueError(
                "full-parameter training keeps no copy of the base weights when ref_weight is 0; "
                "set ref_weight > 0 to use the reference model"
            )
        raise ValueError(f"unknown network {adapter!r}; full-parameter training has default, old")

    def _switch(self, name: str) -> None:
        if name == self.active:
            return
        self.before_write()
        if self.active != TRAINED:
            swap_(self.params, self.copies[self.active])
        if name != TRAINED:
            swap_(self.params, self.copies[name])
        self.active = name

    @contextmanager
    def use(self, adapter: str | None) -> Iterator[None]:
        """Run the block with network ``adapter`` in the live parameters ("default", "old" or
        None for the reference); the previous one comes back on exit. Nestable."""
        previous = self.active
        self._switch(self._network(adapter))
        try:
            yield
        finally:
            self._switch(previous)

    def soft_update_old(self, eta: float) -> None:
        """theta_old <- eta * theta_old + (1 - eta) * theta (the sampler update)."""
        if self.active != TRAINED:
            raise RuntimeError(f"soft update while the {self.active!r} weights are swapped in")
        soft_update_(self.copies[OLD], self.params, eta)

    @torch.no_grad()
    def checksum(self) -> Tensor:
        """Sum of this process's trained values (float64): its shard under FSDP."""
        total = torch.zeros((), dtype=torch.float64)
        for p in self.params:
            total += local_view(p.detach()).double().sum().cpu()
        return total


def _nothing() -> None:
    return None


class ReshardingEma(EmaWeights):
    """``EmaWeights`` whose swap into the parameters reshards the module around each write."""

    def __init__(self, params: Iterable[Tensor], before_write: Callable[[], None]) -> None:
        """As ``EmaWeights``; ``before_write`` runs before the EMA goes in and comes out."""
        super().__init__(params)
        self.before_write = before_write

    @contextmanager
    def swapped_in(self, params: Iterable[Tensor]) -> Iterator[None]:
        """Temporarily put the EMA weights into ``params`` (resharded first, both ways)."""
        self.before_write()
        with super().swapped_in(params):
            try:
                yield
            finally:
                self.before_write()
