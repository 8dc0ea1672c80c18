"""Machinery shared by the online-RL trainers (DiffusionNFT and the FlowGRPO baseline).

One model carries the two LoRA adapters of ``nftkit.train.lora`` ("default" trained, "old"
the frozen sampling copy; adapters disabled = the reference model). ``AdapterTrainer`` owns
what every algorithm needs around its own sampling and loss: the adapters and their seeded
init, the DDP wrapper, AdamW, the evaluation EMA, per-epoch prompt and noise draws, scoring
with the composer (rewards gathered over processes), the epoch record, atomic checkpoints,
resume and export of the EMA adapter. Subclasses implement ``sample_epoch`` and ``train_on``.

With ``finetune = "full"`` the transformer's own weights are trained instead: "old" and the
reference become weight copies (``nftkit.train.full_weights``), the module is sharded through
accelerate under an FSDP launch (``nftkit.train.fsdp``), and checkpoints hold full state dicts
(``nftkit.train.full_checkpoint``). The LoRA path is unchanged.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch

from nftkit.compose import RewardComposer
from nftkit.errors import UsageError
from nftkit.policies.base import Policy, index_cond, policy_time_grid, repeat_cond
from nftkit.train import checkpoint as ckpt
from nftkit.train.distributed import Distributed
from nftkit.train.faults import fault_point
from nftkit.train.full_weights import FullWeights
from nftkit.train.layout import TrainLayout, plan_layout
from nftkit.train.lora import (
    adapter_parameters,
    add_nft_adapters,
    load_adapter_parameters,
    soft_update_adapter,
)
from nftkit.train.schedules import EmaWeights
from nftkit.train.trainer_config import FINETUNE_MODES, PromptItem, TrainerConfig

ADAPTER_FILE = "nftkit_adapter.safetensors"
MODEL_INFO_FILE = "nftkit_model.json"


@dataclass
class EpochDraw:
    """One epoch's prompts and starting noise (this process's share of the samples)."""

    chosen: np.ndarray
    items: list[PromptItem]
    noise: torch.Tensor
    cond: Any
    local: slice


@dataclass
class EpochBatch:
    """What one epoch's sampling produced.

    ``x0``, ``cond``, ``prompts`` and ``metadata`` hold this process's samples (the ``local``
    slice of the epoch); ``groups``, ``rewards`` and ``components`` cover all samples of the
    epoch, gathered from every process, so that advantages use the global std.
    """

    x0: torch.Tensor
    cond: Any
    prompts: list[str]
    metadata: list[dict[str, Any]]
    groups: list[int]
    rewards: torch.Tensor
    components: dict[str, torch.Tensor]
    local: slice = field(default_factory=lambda: slice(None))


def mix_seed(*parts: int) -> int:
    """A 63-bit seed mixed from integers (stable across runs and platforms)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1, dtype=np.uint64)[0] >> 1)


class AdapterTrainer:
    """Epoch loop, adapters, optimizer, EMA and persistence shared by the trainers."""

    algo: ClassVar[str] = "base"

    def __init__(
        self,
        policy: Policy,
        composer: RewardComposer,
        prompts: Sequence[PromptItem],
        config: TrainerConfig,
        output_dir: str | Path,
        model_info: dict[str, Any] | None = None,
        on_epoch_end: Callable[[dict[str, Any]], None] | None = None,
        dist: Distributed | None = None,
    ) -> None:
        if not prompts:
            raise UsageError("no training prompts")
        self.policy = policy
        self.composer = composer
        self.prompts = list(prompts)
        self.output_dir = Path(output_dir)
        self.model_info = model_info or {}
        self.on_epoch_end = on_epoch_end
        self.dist = dist or Distributed()
        # grad_accum derived from the stated layout for this number of processes
        self.layout: TrainLayout = plan_layout(config, self.dist.world_size)
        config = replace(config, grad_accum=self.layout.grad_accum)
        self.config = config
        # the sampler's time grid (float64): the policy's own (scheduler sigmas for diffusers)
        self.ts = policy_time_grid(policy, config.num_steps, config.shift)
        if config.finetune not in FINETUNE_MODES:
            raise UsageError(f"finetune must be one of {', '.join(FINETUNE_MODES)}")
        self.full_weights: FullWeights | None = None
        self.module_state: Any = None  # full training: nftkit.train.fsdp.ModuleState
        self.accelerator: Any = None
        self.ddp: torch.nn.Module | None = None
        if config.finetune == "full":
            from nftkit.train.full_setup import prepare_full

            prepare_full(self)  # trainable, optimizer, full_weights, module_state, ema
        else:
            self._prepare_lora()
            self.ema = EmaWeights(self.trainable)
        self.epoch = 0
        self.global_step = 0
        self.history: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ what is trained
    def make_optimizer(self, params: list[torch.nn.Parameter]) -> torch.optim.Optimizer:
        """AdamW over ``params`` with the config's settings."""
        cfg = self.config
        return torch.optim.AdamW(
            params, lr=cfg.lr, betas=cfg.adam_betas, weight_decay=cfg.weight_decay, eps=cfg.adam_eps
        )

    def set_forward_module(self, module: torch.nn.Module) -> None:
        """Route the policy's forwards through ``module`` (a DDP/FSDP wrapper)."""
        if not hasattr(self.policy, "forward_module"):
            raise UsageError(
                f"{type(self.policy).__name__} cannot train under several processes "
                "(it has no forward_module for the DDP/FSDP wrapper)"
            )
        self.policy.forward_module = module  # type: ignore[attr-defined]

    def _prepare_lora(self) -> None:
        """The two LoRA adapters (seeded init), DDP under several processes, AdamW."""
        cfg, policy = self.config, self.policy
        with torch.random.fork_rng(devices=[]):  # LoRA init depends on the seed only
            torch.manual_seed(mix_seed(cfg.seed, 0))
            add_nft_adapters(
                policy.model,
                policy.lora_targets,
                rank=cfg.lora_rank,
                alpha=cfg.lora_alpha,
                init=cfg.lora_init,
            )
        self.trainable = list(adapter_parameters(policy.model, "default").values())
        self.ddp = self.dist.wrap(policy.model)
        if self.ddp is not None:
            self.set_forward_module(self.ddp)
        self.optimizer = self.make_optimizer(self.trainable)

    @property
    def collective_forwards(self) -> bool:
        """True when every process must run every forward (FSDP): no main-only sampling."""
        return self.full_weights is not None and self.module_state.sharded

    def network(self, name: str | None) -> AbstractContextManager[None]:
        """Full training: keep network ``name`` swapped in for a block of forwards (cheaper
        than a swap per forward). LoRA: nothing (each forward picks its adapter)."""
        return nullcontext() if self.full_weights is None else self.full_weights.use(name)

    def has_base_model(self) -> bool:
        """Whether the reference (base) model can run now (``adapter=None``)."""
        return self.full_weights is None or self.full_weights.has_reference

    def update_old(self, eta: float) -> None:
        """The sampler update theta_old <- eta * theta_old + (1 - eta) * theta."""
        if self.full_weights is not None:
            self.full_weights.soft_update_old(eta)
        else:
            soft_update_adapter(self.policy.model, "old", "default", eta)

    def step_ema(self) -> None:
        """Advance the evaluation EMA after an optimizer step (an algorithm may defer it)."""
        self.ema.update(self.trainable, self.global_step)

    # ------------------------------------------------------------------ algorithm hooks
    def sample_epoch(self, epoch: int) -> EpochBatch:
        """Sample and score one epoch's images (implemented by each algorithm)."""
        raise NotImplementedError

    def train_on(self, batch: EpochBatch, epoch: int) -> dict[str, float]:
        """Optimizer steps on one epoch's samples; returns diagnostics (per algorithm)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ shared sampling
    def draw_epoch(self, epoch: int) -> EpochDraw:
        """Choose the epoch's prompts and this process's starting noise and conditioning."""
        cfg = self.config
        rng = np.random.default_rng(mix_seed(cfg.seed, epoch, 1))
        replace = cfg.prompts_per_epoch > len(self.prompts)
        chosen = rng.choice(len(self.prompts), cfg.prompts_per_epoch, replace=replace)
        items = [self.prompts[i] for i in chosen]
        generator = torch.Generator().manual_seed(mix_seed(cfg.seed, epoch, 2))
        n_all = len(items) * cfg.group_size
        local = self.dist.shard(n_all)
        noise = torch.randn((n_all, *self.policy.latent_shape), generator=generator)[local]
        prompt_cond = self.policy.encode_prompts([p.text for p in items])
        if self.dist.enabled:  # only this process's rows (SD3 embeddings are large)
            rows = torch.arange(n_all)[local] // cfg.group_size
            cond = index_cond(prompt_cond, rows.to(self.policy.device))
        else:
            cond = repeat_cond(prompt_cond, cfg.group_size)
        return EpochDraw(chosen, items, noise, cond, local)

    @torch.no_grad()
    def score_epoch(self, draw: EpochDraw, x0: torch.Tensor) -> EpochBatch:
        """Decode and score this process's clean latents; gather rewards over processes."""
        cfg = self.config
        group = cfg.group_size
        prompts = [p.text for p in draw.items for _ in range(group)][draw.local]
        metadata = [p.metadata for p in draw.items for _ in range(group)][draw.local]
        n = x0.shape[0]
        images = torch.cat(
            [
                self.policy.decode(x0[i : i + cfg.sample_batch_size]).cpu()
                for i in range(0, n, cfg.sample_batch_size)
            ]
        )
        scored = self.composer(images, prompts, metadata)
        groups = [int(i) for i in draw.chosen for _ in range(group)]
        rewards = self.dist.gather(scored.total)
        components = {k: self.dist.gather(v) for k, v in scored.components.items()}
        return EpochBatch(x0, draw.cond, prompts, metadata, groups, rewards, components, draw.local)

    # ------------------------------------------------------------------ the epoch
    def optimizer_step(self, totals: dict[str, float], k: int) -> None:
        """Clip, step and zero the optimizer; update the EMA; count the step in ``totals``."""
        cfg = self.config
        if self.accelerator is not None:  # FSDP: the norm over every process's shards
            grad_norm = self.accelerator.clip_grad_norm_(self.trainable, cfg.grad_clip)
        else:
            grad_norm = torch.nn.utils.clip_grad_norm_(self.trainable, cfg.grad_clip)
        totals["grad_norm"] = totals.get("grad_norm", 0.0) + float(grad_norm) * k
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.global_step += 1
        self.step_ema()
        fault_point("after-step", self.global_step)  # crash tests only (faults.py)

    def run_epoch(self) -> dict[str, Any]:
        """Sample, score, train; record and return this epoch's metrics."""
        start = time.time()
        batch = self.sample_epoch(self.epoch)
        stats = self.train_on(batch, self.epoch)
        record: dict[str, Any] = {
            "epoch": self.epoch,
            "step": self.global_step,
            "reward_mean": float(batch.rewards.mean()),
            "reward_std": float(batch.rewards.std(unbiased=False)),
            **self._rank_views(batch),
            **{f"reward/{k}": float(v.mean()) for k, v in batch.components.items()},
            **stats,
            "seconds": time.time() - start,
        }
        if not all(math.isfinite(v) for v in record.values() if isinstance(v, float)):
            raise FloatingPointError(
                f"non-finite training statistics at epoch {self.epoch}: {record}"
            )
        self.history.append(record)
        self.epoch += 1
        if self.on_epoch_end is not None:
            self.on_epoch_end(record)
        return record

    def _rank_views(self, batch: EpochBatch) -> dict[str, Any]:
        """Under several processes: each process's global reward std and LoRA checksum.

        Every process computes the std from the gathered rewards and DDP keeps the adapters
        identical; both views are gathered so that a divergence is visible (and fails loudly).
        Under FSDP the checksum is the sum of the shards' sums, which are listed too.
        """
        if not self.dist.enabled:
            return {}
        std = batch.rewards.std(unbiased=False).reshape(1).double()
        shards: dict[str, Any] = {}
        if self.collective_forwards and self.full_weights is not None:  # shards: sum them all
            local = self.full_weights.checksum().reshape(1).to(std.device)
            parts = self.dist.gather(local)
            checksum = parts.sum()
            shards = {"shard_checksum_ranks": parts.tolist()}
        else:
            checksum = torch.stack([p.detach().double().sum() for p in self.trainable]).sum()
        stds = self.dist.gather(std).tolist()
        sums = self.dist.gather(checksum.reshape(1).to(std.device)).tolist()
        if max(stds) != min(stds) or max(sums) - min(sums) > 1e-9 * max(1.0, abs(sums[0])):
            raise RuntimeError(f"processes disagree: reward std {stds}, LoRA checksum {sums}")
        return {
            "world_size": self.dist.world_size,
            "reward_std_ranks": stds,
            "lora_checksum_ranks": sums,
            **shards,
        }

    # ------------------------------------------------------------------ persistence
    @property
    def checkpoint_root(self) -> Path:
        """Where checkpoints live."""
        return self.output_dir / "checkpoints"

    def _trainer_state(self) -> dict[str, Any]:
        return {
            "algo": self.algo,
            "epoch": self.epoch,
            "global_step": self.global_step,
            "config": self.config.to_dict(),
            "history": self.history,
        }

    def save_checkpoint(self) -> Path:
        """Atomically write the full training state (adapters, EMA, optimizer, counters)."""
        if self.full_weights is not None:
            from nftkit.train.full_checkpoint import save_full_checkpoint

            return save_full_checkpoint(self, {"trainer_state": self._trainer_state()})
        model = self.policy.model
        path = self.checkpoint_root / f"{ckpt.PREFIX}{self.epoch:07d}"
        if not self.dist.is_main:
            self.dist.barrier()
            return path
        opt_tensors, opt_meta = ckpt.optimizer_to_tensors(self.optimizer)
        path = ckpt.save_checkpoint(
            self.checkpoint_root,
            self.epoch,
            tensor_files={
                "adapter_default": adapter_parameters(model, "default"),
                "adapter_old": adapter_parameters(model, "old"),
                "ema": self.ema.state_dict(),
                "optimizer": opt_tensors,
            },
            json_files={"trainer_state": self._trainer_state(), "optimizer_meta": opt_meta},
            keep=self.config.keep_checkpoints,
        )
        self.export()
        self.dist.barrier()
        return path

    def resume(self) -> bool:
        """Load the newest readable checkpoint if there is one; True when resumed.

        A damaged newest checkpoint is skipped with a warning (``checkpoint_read``); when
        checkpoints exist but none can be read, CheckpointUnreadableError is raised.
        """
        from nftkit.train.checkpoint_read import newest_readable_checkpoint

        loaded = newest_readable_checkpoint(
            self.checkpoint_root, check=self._check_state, set_aside=self.dist.is_main
        )
        if loaded is None:
            return False
        state = loaded.json["trainer_state"]
        if self.full_weights is not None:
            from nftkit.train.full_checkpoint import load_full_checkpoint

            load_full_checkpoint(self, loaded)
        else:
            model = self.policy.model
            load_adapter_parameters(model, "default", loaded.tensors["adapter_default"])
            load_adapter_parameters(model, "old", loaded.tensors["adapter_old"])
            self.ema.load_state_dict(loaded.tensors["ema"])
            ckpt.optimizer_from_tensors(
                self.optimizer, loaded.tensors["optimizer"], loaded.json["optimizer_meta"]
            )
        self.epoch = int(state["epoch"])
        self.global_step = int(state["global_step"])
        self.history = list(state["history"])
        return True

    def _check_state(self, loaded: Any) -> None:
        """Refuse another algorithm's checkpoint; a state without its counters is damaged."""
        state = loaded.json["trainer_state"]
        saved_algo = state.get("algo", "nft")  # checkpoints without the key predate GRPO
        if saved_algo != self.algo:
            raise UsageError(
                f"{loaded.path} was written by the {saved_algo} trainer; resume it with --algo "
                f"{saved_algo} or choose another --output"
            )
        saved_mode = (state.get("config") or {}).get("finetune", "lora")
        if saved_mode != self.config.finetune:
            raise UsageError(
                f"{loaded.path} was written with finetune={saved_mode}; resume it with --set "
                f"finetune={saved_mode} or choose another --output"
            )
        for key in ("epoch", "global_step", "history"):
            if key not in state:
                raise ValueError(f"trainer_state.json has no '{key}'")
        if "param_groups" not in loaded.json["optimizer_meta"]:
            raise ValueError("optimizer_meta.json has no 'param_groups'")

    def export(self) -> Path:
        """Write the EMA adapter to ``output/lora/`` plus ``nftkit_model.json`` (for eval).

        Full training: the EMA weights to ``output/full/`` (collective under FSDP).
        """
        if self.full_weights is not None:
            from nftkit.train.full_checkpoint import export_full

            return export_full(self)
        lora_dir = self.output_dir / "lora"
        lora_dir.mkdir(parents=True, exist_ok=True)
        from safetensors.torch import save_file

        from nftkit.train.lora import lora_state_dict_for_diffusers

        model = self.policy.model
        with self.ema.swapped_in(self.trainable):
            adapter = {
                k: v.detach().to("cpu", copy=True).contiguous()
                for k, v in adapter_parameters(model, "default").items()
            }
            prefix = getattr(self.policy, "lora_prefix", "transformer")
            diffusers_sd = lora_state_dict_for_diffusers(model, "default", prefix=prefix)
        tmp = lora_dir / f".{ADAPTER_FILE}.tmp"
        save_file(adapter, str(tmp))
        tmp.replace(lora_dir / ADAPTER_FILE)
        tmp = lora_dir / ".pytorch_lora_weights.safetensors.tmp"
        save_file(diffusers_sd, str(tmp))
        tmp.replace(lora_dir / "pytorch_lora_weights.safetensors")
        info = {
            **self.model_info,
            "lora": {
                "rank": self.config.lora_rank,
                "alpha": self.config.lora_alpha,
                "targets": list(self.policy.lora_targets),
                "file": f"lora/{ADAPTER_FILE}",
            },
            "epoch": self.epoch,
            "global_step": self.global_step,
        }
        ckpt.write_json_atomic(self.output_dir / MODEL_INFO_FILE, info)
        return lora_dir


def write_history(path: Path, history: list[dict[str, Any]]) -> None:
    """Write the per-epoch metrics as JSON lines (atomically)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text("".join(json.dumps(row) + "\n" for row in history))
    tmp.replace(path)
