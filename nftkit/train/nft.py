"""The DiffusionNFT trainer: online RL on the forward process, CFG-free, model-agnostic.

Each epoch: the lagging "old" adapter samples G images for each of P prompts with a black-box
ODE solver (no trajectories kept, only clean latents); the composed reward gives group
advantages (global std) and optimality probabilities r; the trained "default" adapter is fitted
with the NFT loss at the sampler's own timesteps (implicit positive/negative policies, adaptive
x0-space weights, the 5/beta scale, MSE to the adapter-disabled reference); then the old adapter
is soft-updated towards the trained one. EMA weights of the trained adapter are kept for
evaluation and export. The trainer only sees the Policy contract, so the shapes model and SD3.5
share this code. Under several processes (``Distributed``) each process samples and scores its
contiguous share of the epoch, the rewards are gathered so that advantages use the global std,
and the trained adapter's gradients are averaged through DDP; only the main process writes.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nftkit.compose import RewardComposer, group_advantages, optimality_probability
from nftkit.errors import UsageError
from nftkit.policies.base import Policy, index_cond, repeat_cond
from nftkit.train import checkpoint as ckpt
from nftkit.train.distributed import Distributed
from nftkit.train.lora import (
    adapter_parameters,
    add_nft_adapters,
    load_adapter_parameters,
    soft_update_adapter,
)
from nftkit.train.nft_loss import forward_noise, nft_loss, training_timestep_indices
from nftkit.train.sampling import sample, timesteps
from nftkit.train.schedules import EmaWeights, old_policy_decay

ADAPTER_FILE = "nftkit_adapter.safetensors"
MODEL_INFO_FILE = "nftkit_model.json"


@dataclass
class NFTConfig:
    """Hyper-parameters of DiffusionNFT (defaults: the reference SD3.5-M settings)."""

    epochs: int = 100
    prompts_per_epoch: int = 48
    group_size: int = 24
    num_steps: int = 10
    solver: str = "dpm2"
    shift: float = 1.0
    sample_batch_size: int = 9
    train_batch_size: int = 9
    grad_accum: int = 1
    timestep_fraction: float = 0.99
    max_train_timesteps: int | None = None
    beta: float = 1.0
    adv_clip: float = 5.0
    std_mode: str = "global"
    ref_weight: float = 1e-4
    weighting: str = "adaptive"
    lr: float = 3e-4
    adam_betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 1e-4
    adam_eps: float = 1e-8
    grad_clip: float = 1.0
    eta_schedule: str = "default"
    lora_rank: int = 32
    lora_alpha: int = 64
    lora_init: str = "gaussian"
    seed: int = 0
    checkpoint_every: int = 10
    keep_checkpoints: int = 2

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NFTConfig:
        """Build from a dict, rejecting unknown keys with the valid ones listed."""
        valid = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - valid)
        if unknown:
            raise UsageError(f"unknown NFT option(s) {unknown}; valid: {sorted(valid)}")
        data = dict(data)
        if "adam_betas" in data:
            data["adam_betas"] = tuple(data["adam_betas"])
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict."""
        return asdict(self)


@dataclass
class PromptItem:
    """A training prompt with the metadata that rewards such as GenEval need."""

    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


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


def _seed(*parts: int) -> int:
    """A 63-bit seed mixed from integers (stable across runs and platforms)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1, dtype=np.uint64)[0] >> 1)


class NFTTrainer:
    """Runs DiffusionNFT epochs on a Policy with a RewardComposer; checkpoints and resumes."""

    def __init__(
        self,
        policy: Policy,
        composer: RewardComposer,
        prompts: Sequence[PromptItem],
        config: NFTConfig,
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
        self.config = config
        self.output_dir = Path(output_dir)
        self.model_info = model_info or {}
        self.on_epoch_end = on_epoch_end
        self.dist = dist or Distributed()
        self.ts = timesteps(config.num_steps, config.shift)
        with torch.random.fork_rng(devices=[]):  # LoRA init depends on the seed only
            torch.manual_seed(_seed(config.seed, 0))
            add_nft_adapters(
                policy.model, policy.lora_targets, rank=config.lora_rank,
                alpha=config.lora_alpha, init=config.lora_init,
            )
        self.trainable = list(adapter_parameters(policy.model, "default").values())
        self.ddp = self.dist.wrap(policy.model)
        if self.ddp is not None:
            if not hasattr(policy, "forward_module"):
                raise UsageError(
                    f"{type(policy).__name__} cannot train under several processes "
                    "(it has no forward_module for the DDP wrapper)"
                )
            policy.forward_module = self.ddp  # type: ignore[attr-defined]
        self.optimizer = torch.optim.AdamW(
            self.trainable, lr=config.lr, betas=config.adam_betas,
            weight_decay=config.weight_decay, eps=config.adam_eps,
        )
        self.ema = EmaWeights(self.trainable)
        self.epoch = 0
        self.global_step = 0
        self.history: list[dict[str, Any]] = []

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample_epoch(self, epoch: int) -> EpochBatch:
        """Sample G images per prompt with the old adapter and score them."""
        cfg = self.config
        rng = np.random.default_rng(_seed(cfg.seed, epoch, 1))
        replace = cfg.prompts_per_epoch > len(self.prompts)
        chosen = rng.choice(len(self.prompts), cfg.prompts_per_epoch, replace=replace)
        items = [self.prompts[i] for i in chosen]
        generator = torch.Generator().manual_seed(_seed(cfg.seed, epoch, 2))
        n_all = len(items) * cfg.group_size
        local = self.dist.shard(n_all)
        noise = torch.randn((n_all, *self.policy.latent_shape), generator=generator)[local]
        prompt_cond = self.policy.encode_prompts([p.text for p in items])
        if self.dist.enabled:  # only this process's rows (SD3 embeddings are large)
            rows = torch.arange(n_all)[local] // cfg.group_size
            cond = index_cond(prompt_cond, rows.to(self.policy.device))
        else:
            cond = repeat_cond(prompt_cond, cfg.group_size)
        n = noise.shape[0]
        latents = []
        for start in range(0, n, cfg.sample_batch_size):
            part = slice(start, min(start + cfg.sample_batch_size, n))
            part_cond = index_cond(cond, part)

            def velocity(x: torch.Tensor, t: torch.Tensor, c: Any = part_cond) -> torch.Tensor:
                return self.policy.velocity(x, t, c, adapter="old")

            x_T = noise[part].to(self.policy.device)
            latents.append(sample(velocity, x_T, cfg.num_steps, cfg.solver, cfg.shift).float())
        x0 = torch.cat(latents)
        prompts = [p.text for p in items for _ in range(cfg.group_size)][local]
        metadata = [p.metadata for p in items for _ in range(cfg.group_size)][local]
        images = torch.cat([
            self.policy.decode(x0[i : i + cfg.sample_batch_size]).cpu()
            for i in range(0, n, cfg.sample_batch_size)
        ])
        scored = self.composer(images, prompts, metadata)
        groups = [int(i) for i in chosen for _ in range(cfg.group_size)]
        rewards = self.dist.gather(scored.total)
        components = {k: self.dist.gather(v) for k, v in scored.components.items()}
        return EpochBatch(x0, cond, prompts, metadata, groups, rewards, components, local)

    # ------------------------------------------------------------------ training
    def train_on(self, batch: EpochBatch, epoch: int) -> dict[str, float]:
        """NFT updates on one epoch's samples; returns averaged diagnostics."""
        cfg = self.config
        model = self.policy.model
        advantages = group_advantages(batch.rewards, batch.groups, cfg.std_mode)
        r_all = optimality_probability(advantages, cfg.adv_clip)
        r = r_all[batch.local]
        seed_parts = (cfg.seed, epoch, 3, self.dist.rank) if self.dist.enabled else (cfg.seed, epoch, 3)
        generator = torch.Generator().manual_seed(_seed(*seed_parts))
        n = batch.x0.shape[0]
        order = torch.randperm(n, generator=generator)
        micro = [order[i : i + cfg.train_batch_size] for i in range(0, n, cfg.train_batch_size)]
        model.train()
        totals: dict[str, float] = {}
        count = 0
        self.optimizer.zero_grad(set_to_none=True)
        for m, idx in enumerate(micro):
            last = m == len(micro) - 1
            sync_now = (m + 1) % cfg.grad_accum == 0 or last
            x0 = batch.x0[idx].to(self.policy.device)
            cond = index_cond(batch.cond, idx.to(self.policy.device))
            rr = r[idx].to(self.policy.device)
            steps = training_timestep_indices(
                cfg.num_steps, len(idx), cfg.timestep_fraction, generator=generator
            )
            if cfg.max_train_timesteps is not None:
                steps = steps[:, : cfg.max_train_timesteps]
            k = steps.shape[1]
            for j in range(k):
                t = self.ts[steps[:, j]].to(self.policy.device, x0.dtype)
                eps = torch.randn(x0.shape, generator=generator).to(self.policy.device)
                x_t = forward_noise(x0, t, eps)
                with torch.no_grad():
                    v_old = self.policy.velocity(x_t, t, cond, adapter="old")
                    v_ref = (
                        self.policy.velocity(x_t, t, cond, adapter=None)
                        if cfg.ref_weight > 0 else None
                    )
                with self.dist.no_sync(self.ddp, skip=not (sync_now and j == k - 1)):
                    v = self.policy.velocity(x_t, t, cond, adapter="default")
                    loss, diag = nft_loss(
                        v, v_old, v_ref, x_t, x0, eps, t, rr, cfg.beta,
                        ref_weight=cfg.ref_weight, weighting=cfg.weighting,
                    )
                    (loss / (k * cfg.grad_accum)).backward()
                for key, value in diag.items():
                    totals[key] = totals.get(key, 0.0) + float(value)
                count += 1
            if sync_now:
                grad_norm = torch.nn.utils.clip_grad_norm_(self.trainable, cfg.grad_clip)
                totals["grad_norm"] = totals.get("grad_norm", 0.0) + float(grad_norm) * k
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
                self.global_step += 1
                self.ema.update(self.trainable, self.global_step)
        model.eval()
        eta = old_policy_decay(self.global_step, cfg.eta_schedule)
        soft_update_adapter(model, "old", "default", eta)
        stats = {key: value / max(count, 1) for key, value in totals.items()}
        stats.update({"eta": eta, "r_mean": float(r_all.mean()),
                      "adv_abs": float(advantages.abs().mean())})
        return stats

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
            raise FloatingPointError(f"non-finite training statistics at epoch {self.epoch}: {record}")
        self.history.append(record)
        self.epoch += 1
        if self.on_epoch_end is not None:
            self.on_epoch_end(record)
        return record

    def _rank_views(self, batch: EpochBatch) -> dict[str, Any]:
        """Under several processes: each process's global reward std and LoRA checksum.

        Every process computes the std from the gathered rewards and DDP keeps the adapters
        identical; both views are gathered so that a divergence is visible (and fails loudly).
        """
        if not self.dist.enabled:
            return {}
        std = batch.rewards.std(unbiased=False).reshape(1).double()
        checksum = torch.stack([p.detach().double().sum() for p in self.trainable]).sum()
        stds = self.dist.gather(std).tolist()
        sums = self.dist.gather(checksum.reshape(1).to(std.device)).tolist()
        if max(stds) != min(stds) or max(sums) - min(sums) > 1e-9 * max(1.0, abs(sums[0])):
            raise RuntimeError(f"processes disagree: reward std {stds}, LoRA checksum {sums}")
        return {"world_size": self.dist.world_size, "reward_std_ranks": stds,
                "lora_checksum_ranks": sums}

    # ------------------------------------------------------------------ persistence
    @property
    def checkpoint_root(self) -> Path:
        """Where checkpoints live."""
        return self.output_dir / "checkpoints"

    def save_checkpoint(self) -> Path:
        """Atomically write the full training state (adapters, EMA, optimizer, counters)."""
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
            json_files={
                "trainer_state": {
                    "epoch": self.epoch,
                    "global_step": self.global_step,
                    "config": self.config.to_dict(),
                    "history": self.history,
                },
                "optimizer_meta": opt_meta,
            },
            keep=self.config.keep_checkpoints,
        )
        self.export()
        self.dist.barrier()
        return path

    def resume(self) -> bool:
        """Load the latest complete checkpoint if there is one; True when resumed."""
        path = ckpt.latest_checkpoint(self.checkpoint_root)
        if path is None:
            return False
        model = self.policy.model
        load_adapter_parameters(model, "default", ckpt.load_tensors(path, "adapter_default"))
        load_adapter_parameters(model, "old", ckpt.load_tensors(path, "adapter_old"))
        self.ema.load_state_dict(ckpt.load_tensors(path, "ema"))
        ckpt.optimizer_from_tensors(
            self.optimizer, ckpt.load_tensors(path, "optimizer"), ckpt.load_json(path, "optimizer_meta")
        )
        state = ckpt.load_json(path, "trainer_state")
        self.epoch = int(state["epoch"])
        self.global_step = int(state["global_step"])
        self.history = list(state["history"])
        return True

    def export(self) -> Path:
        """Write the EMA adapter to ``output/lora/`` plus ``nftkit_model.json`` (for eval)."""
        lora_dir = self.output_dir / "lora"
        lora_dir.mkdir(parents=True, exist_ok=True)
        from safetensors.torch import save_file

        from nftkit.train.lora import lora_state_dict_for_diffusers

        model = self.policy.model
        with self.ema.swapped_in(self.trainable):
            adapter = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in
                       adapter_parameters(model, "default").items()}
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
