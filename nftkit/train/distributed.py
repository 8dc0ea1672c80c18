"""Several training processes (``accelerate launch`` / ``torchrun``): ranks, gathers, DDP.

``Distributed.from_env`` reads the launcher's environment (WORLD_SIZE, RANK, LOCAL_RANK) and
sets up the process group through ``accelerate.PartialState`` (gloo on CPU, NCCL on CUDA). With
one process every method is a cheap no-op, so single-process training runs the same code.
"""

from __future__ import annotations

import os
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass

import torch
from torch import nn

from nftkit.errors import UsageError


@dataclass
class Distributed:
    """This process's place among the training processes."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @classmethod
    def from_env(cls, device: str = "cpu") -> Distributed:
        """Join the process group described by the launcher's environment variables, if any."""
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            return cls()
        from accelerate import PartialState

        state = PartialState(cpu=torch.device(device).type == "cpu")
        return cls(state.process_index, state.num_processes, state.local_process_index)

    @property
    def is_main(self) -> bool:
        """True on the process that writes files and records runs."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """True when there is more than one process."""
        return self.world_size > 1

    def device(self, requested: str) -> str:
        """``cuda`` becomes ``cuda:<local rank>`` under several processes; others unchanged."""
        if self.enabled and requested == "cuda":
            return f"cuda:{self.local_rank}"
        return requested

    def shard(self, n: int) -> slice:
        """This process's contiguous share of ``n`` items (``n`` must divide evenly)."""
        if n % self.world_size:
            raise UsageError(
                f"{n} samples per epoch do not split evenly over {self.world_size} processes; "
                "choose prompts_per_epoch * group_size divisible by the number of processes"
            )
        size = n // self.world_size
        return slice(self.rank * size, (self.rank + 1) * size)

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Concatenate every process's ``tensor`` along dim 0, in rank order (same shapes)."""
        if not self.enabled:
            return tensor
        import torch.distributed as dist

        backend_device = _collective_device()
        local = tensor.detach().to(backend_device).contiguous()
        parts = [torch.empty_like(local) for _ in range(self.world_size)]
        dist.all_gather(parts, local)
        return torch.cat(parts).to(tensor.device)

    def barrier(self) -> None:
        """Wait for every process."""
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()

    def wrap(self, module: nn.Module) -> nn.Module | None:
        """A DistributedDataParallel wrapper over ``module`` (None with one process).

        Only parameters that require grad (the trained LoRA adapter) are synchronised. Buffers
        are not broadcast on forward, so forwards without grad (sampling, the old and reference
        velocities) involve no communication.
        """
        if not self.enabled:
            return None
        import inspect

        from torch.nn.parallel import DistributedDataParallel

        param = next(module.parameters())
        device_ids = [param.device.index] if param.device.type == "cuda" else None
        no_buffer_sync = (
            {"forward_sync_buffers": False}
            if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
            else {"broadcast_buffers": False}
        )
        return DistributedDataParallel(module, device_ids=device_ids, **no_buffer_sync)

    def no_sync(self, wrapped: nn.Module | None, skip: bool) -> AbstractContextManager[None]:
        """DDP's ``no_sync`` when ``skip`` (gradient accumulation), else nothing."""
        if wrapped is None or not skip:
            return nullcontext()
        return wrapped.no_sync()  # type: ignore[operator]


def _collective_device() -> torch.device:
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")
