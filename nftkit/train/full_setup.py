"""Setting a trainer up for full-parameter training (``finetune = "full"``).

Every weight of the policy's transformer is trained. Under an FSDP launch
(``ACCELERATE_USE_FSDP=true``, several processes) the transformer is sharded through
``accelerator.prepare`` and the optimizer holds the shards; otherwise the plain module is
trained (wrapped in DDP under several processes). The old/reference copies
(``FullWeights``) and the evaluation EMA follow the trained parameters (shards under FSDP),
and ``ModuleState`` turns them into full state dicts for checkpoints.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from nftkit.train.fsdp import (
    ModuleState,
    fsdp_accelerator,
    fsdp_requested,
    prepare_sharded,
    reshard_all,
)
from nftkit.train.full_weights import FullWeights, ReshardingEma
from nftkit.train.schedules import EmaWeights

if TYPE_CHECKING:
    from nftkit.train.trainer_base import AdapterTrainer


def prepare_full(trainer: AdapterTrainer) -> None:
    """Set ``trainable``, ``optimizer``, ``full_weights``, ``module_state`` and ``ema``."""
    model = trainer.policy.model
    model.requires_grad_(True)
    sharded = trainer.dist.enabled and fsdp_requested()
    if sharded:
        trainer.accelerator = fsdp_accelerator(trainer.policy.device)
        module, trainer.optimizer = prepare_sharded(
            trainer.accelerator, model, trainer.make_optimizer
        )
        if module is not model:
            trainer.set_forward_module(module)
    else:
        module = model
        trainer.ddp = trainer.dist.wrap(model)
        if trainer.ddp is not None:
            trainer.set_forward_module(trainer.ddp)
        trainer.optimizer = trainer.make_optimizer(list(model.parameters()))
    trainer.trainable = list(module.parameters())
    trainer.module_state = ModuleState(module, trainer.trainable, sharded, trainer.dist.is_main)
    before_write = (lambda: reshard_all(module)) if sharded else None
    weights = FullWeights(
        trainer.trainable, keep_reference=trainer.config.ref_weight > 0, before_write=before_write
    )
    trainer.full_weights = weights
    trainer.policy.weight_sets = weights  # type: ignore[attr-defined]
    trainer.ema = (
        ReshardingEma(trainer.trainable, weights.before_write)
        if sharded
        else EmaWeights(trainer.trainable)
    )
