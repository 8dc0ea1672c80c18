"""FSDP through accelerate for full-parameter training, and full state dicts in and out.

``accelerate launch --config_file examples/accelerate/fsdp-8gpu.yaml`` sets
``ACCELERATE_USE_FSDP=true`` and the ``FSDP_*`` options in every process; accelerate's state then
says FSDP and ``accelerator.prepare`` shards the transformer (``fully_shard`` per transformer
block, then the root). accelerate 1.x has no FSDP on CPU: there its state says MULTI_CPU (DDP)
although torch's FSDP runs on gloo, so on CPU ``fsdp_accelerator`` switches the state to FSDP
with the plugin accelerate builds from the same environment; the CPU test runs the very same
prepare path.

FSDP2 (``fsdp_version: 2``) is required: full training swaps the old/reference weights into the
sharded parameters in place, which needs a public ``reshard()`` (``reshard_all``) to drop the
gathered copies first. FSDP1 keeps its root unit gathered after a forward without backward and
offers no public way to reshard it, so in-place writes to its parameters would be lost.

``ModuleState`` reads and writes the trained module's full state dict (and the same for the
"old"/EMA tensor sets): locally from the parameters themselves, under FSDP through
``torch.distributed.checkpoint.state_dict`` with ``full_state_dict`` (gathered on the main
process, scattered from it), so checkpoints stay plain safetensors files: no DCP shards, no
pickles.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import torch
from torch import Tensor, nn

from nftkit.errors import UsageError
from nftkit.train.schedules import values_in

FSDP_ENV = "ACCELERATE_USE_FSDP"


def fsdp_requested() -> bool:
    """True when the launcher asked for FSDP (``accelerate launch`` with an FSDP config)."""
    return os.environ.get(FSDP_ENV, "false").strip().lower() == "true"


def fsdp_accelerator(device: torch.device | str) -> Any:
    """An ``accelerate.Accelerator`` whose state says FSDP (see the module docstring for CPU)."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    device = torch.device(device)
    accelerator = Accelerator(cpu=device.type == "cpu")
    state = accelerator.state
    if state.distributed_type == DistributedType.FSDP:
        _require_fsdp2(state.fsdp_plugin)
        return accelerator
    if state.distributed_type != DistributedType.MULTI_CPU:
        raise UsageError(
            f"{FSDP_ENV}=true but accelerate set up {state.distributed_type}; launch several "
            "processes with `accelerate launch --config_file examples/accelerate/fsdp-8gpu.yaml`"
        )
    plugin = FullyShardedDataParallelPlugin()
    _require_fsdp2(plugin)
    if state.mixed_precision != "no":
        plugin.set_mixed_precision(state.mixed_precision)
    state.distributed_type = DistributedType.FSDP
    state.fsdp_plugin = plugin
    return accelerator


def _require_fsdp2(plugin: Any) -> None:
    if plugin is None or getattr(plugin, "fsdp_version", 1) != 2:
        raise UsageError(
            "full-parameter training needs FSDP2: set fsdp_version: 2 in the accelerate config "
            "(see examples/accelerate/fsdp-8gpu.yaml); FSDP1 cannot reshard its root unit, so "
            "the in-place swaps of the old/reference weights would be lost"
        )


def keep_present_block_classes(plugin: Any, model: nn.Module) -> list[str]:
    """Narrow the plugin's ``transformer_cls_names_to_wrap`` to the classes ``model`` has.

    One accelerate config then serves every family (it lists all their block classes), where
    accelerate itself refuses a class name the model lacks. Returns the names kept.
    """
    names = list(getattr(plugin, "transformer_cls_names_to_wrap", None) or [])
    if not names:
        return []
    present = {type(m).__name__ for m in model.modules()}
    kept = [name for name in names if name in present]
    if not kept:
        blocks = sorted(n for n in present if n.endswith("Block"))
        raise UsageError(
            f"none of the FSDP block classes {names} is in {type(model).__name__}; set "
            f"fsdp_transformer_layer_cls_to_wrap to its block classes ({', '.join(blocks)})"
        )
    plugin.transformer_cls_names_to_wrap = kept
    return kept


def prepare_sharded(
    accelerator: Any,
    model: nn.Module,
    make_optimizer: Callable[[list[nn.Parameter]], torch.optim.Optimizer],
) -> tuple[nn.Module, torch.optim.Optimizer]:
    """Shard ``model`` with ``accelerator.prepare``; returns (module to call, plain optimizer).

    FSDP2 shards in place and needs the optimizer in the same ``prepare`` call (which points
    it at the sharded parameters); the optimizer comes back without accelerate's wrapper.
    """
    keep_present_block_classes(accelerator.state.fsdp_plugin, model)
    wrapped, prepared = accelerator.prepare(model, make_optimizer(list(model.parameters())))
    optimizer = getattr(prepared, "optimizer", prepared)
    held = {id(p) for group in optimizer.param_groups for p in group["params"]}
    if held != {id(p) for p in wrapped.parameters()}:
        raise RuntimeError("the optimizer does not hold the sharded parameters after prepare")
    return wrapped, optimizer


def reshard_all(module: nn.Module) -> None:
    """Free every gathered FSDP2 unit of ``module``: the sharded parameters become the ones
    the next forward gathers (a no-op for units already sharded)."""
    from torch.distributed.fsdp import FSDPModule

    for unit in module.modules():
        if isinstance(unit, FSDPModule):
            unit.reshard()


def _options(**kwargs: bool) -> Any:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, **kwargs)


def _cpu_copy(tensors: dict[str, Any]) -> dict[str, Tensor]:
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()}


class ModuleState:
    """Full (unsharded) state dicts of the trained module, of tensor sets and of the optimizer.

    ``module`` is what forwards go through (the FSDP wrapper or root under FSDP, else the plain
    module), ``params`` its parameters in the trainer's order. Under FSDP every process must
    call each method (they are collectives); the gathers return the dict on the main process and
    ``{}`` elsewhere, and the loads take it from the main process.
    """

    def __init__(
        self, module: nn.Module, params: list[Tensor], sharded: bool, is_main: bool = True
    ) -> None:
        self.module, self.params, self.sharded, self.is_main = module, params, sharded, is_main
        if not sharded:
            by_id = {id(p): n for n, p in module.named_parameters()}
            self.names = [by_id[id(p)] for p in params]

    # ------------------------------------------------------------------ model
    def gather(self, values: list[Tensor] | None = None) -> dict[str, Tensor]:
        """The module's full state dict on CPU, with ``values`` in place of the parameters."""
        if self.sharded:
            from torch.distributed.checkpoint.state_dict import get_model_state_dict

            reshard_all(self.module)
            with values_in(self.params, values) if values is not None else nullcontext():
                state = get_model_state_dict(self.module, options=_options(cpu_offload=True))
            return _cpu_copy(state) if self.is_main else {}
        state = _cpu_copy(self.module.state_dict())
        if values is not None:  # exact, in the values' own dtype
            state.update(_cpu_copy(dict(zip(self.names, values, strict=True))))
        return state

    @torch.no_grad()
    def scatter(self, state: dict[str, Tensor], into: list[Tensor] | None = None) -> None:
        """Load a full state dict into the parameters (``into`` None) or into a tensor set."""
        if self.sharded:
            from torch.distributed.checkpoint.state_dict import set_model_state_dict

            reshard_all(self.module)
            backup = [p.detach().clone() for p in self.params] if into is not None else None
            set_model_state_dict(
                self.module,
                state if self.is_main else {},
                options=_options(broadcast_from_rank0=True),
            )
            if into is not None and backup is not None:
                for target, p, b in zip(into, self.params, backup, strict=True):
                    target.copy_(p)
                    p.copy_(b)
            return
        if into is None:
            self.module.load_state_dict(state)
            return
        missing = sorted(set(self.names) - set(state))
        if missing:
            raise ValueError(f"state dict lacks {len(missing)} parameters, e.g. {missing[:3]}")
        for name, target in zip(self.names, into, strict=True):
            target.copy_(state[name])

    # ------------------------------------------------------------------ optimizer
    def optimizer_state(self, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """The optimizer's state keyed by parameter name (main process; ``{}`` elsewhere)."""
        if self.sharded:
            from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

            state = get_optimizer_state_dict(
                self.module, optimizer, options=_options(cpu_offload=True)
            )
            return state if self.is_main else {}
        names = self._optimizer_names(optimizer)
        plain = optimizer.state_dict()
        groups = [{**g, "params": [names[i] for i in g["params"]]} for g in plain["param_groups"]]
        return {"state": {names[i]: v for i, v in plain["state"].items()}, "param_groups": groups}

    def load_optimizer_state(self, optimizer: torch.optim.Optimizer, state: dict) -> None:
        """Inverse of ``optimizer_state`` (under FSDP the main process's ``state`` is used)."""
        if self.sharded:
            from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

            set_optimizer_state_dict(
                self.module,
                optimizer,
                state if self.is_main else {},
                options=_options(broadcast_from_rank0=True),
            )
            return
        index = {name: i for i, name in enumerate(self._optimizer_names(optimizer))}
        unknown = sorted(set(state["state"]) - set(index))
        if unknown:
            raise ValueError(f"optimizer state names unknown parameters, e.g. {unknown[:3]}")
        optimizer.load_state_dict(
            {
                "state": {index[name]: v for name, v in state["state"].items()},
                "param_groups": [
                    {**g, "params": [index[n] for n in g["params"]]} for g in state["param_groups"]
                ],
            }
        )

    def _optimizer_names(self, optimizer: torch.optim.Optimizer) -> list[str]:
        """Parameter names in the optimizer's own numbering (its groups' order)."""
        by_id = {id(p): n for p, n in zip(self.params, self.names, strict=True)}
        return [by_id[id(p)] for group in optimizer.param_groups for p in group["params"]]
