"""The FlowGRPO baseline (arXiv 2505.05470) on the same harness as DiffusionNFT.

Each epoch: the sampling adapter ("old", kept equal to the trained one between epochs, so the
data is on-policy as in FlowGRPO) draws G images per prompt with the FlowGRPO SDE sampler,
keeping every intermediate latent and each step's Gaussian log-probability; the composed reward
gives per-prompt advantages with the global std (``nftkit.compose``), clipped to +-adv_clip,
and groups whose rewards are all equal are masked; the trained "default" adapter then takes
PPO-clipped policy-gradient steps on the first int(timestep_fraction * num_steps) steps of each
trajectory, with a KL penalty to the adapter-disabled reference. The "Fast" variant
(``sde_window=k``) uses SDE steps only inside a random window of k steps (ODE elsewhere) and
trains on that window only. Adapters, optimizer, EMA, checkpoints and export are the shared
machinery of ``nftkit.train.trainer_base``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from nftkit.compose import group_advantages, informative_mask
from nftkit.errors import UsageError
from nftkit.policies.base import index_cond
from nftkit.train.grpo_loss import grpo_loss
from nftkit.train.lora import soft_update_adapter
from nftkit.train.sampling import flow_sde_step, sde_trajectory
from nftkit.train.trainer_base import (
    AdapterTrainer,
    EpochBatch,
    TrainerConfig,
    mix_seed,
)


@dataclass
class GRPOConfig(TrainerConfig):
    """Hyper-parameters of FlowGRPO (defaults: the reference GenEval settings, REFERENCE.md 2)."""

    label: ClassVar[str] = "GRPO"

    noise_level: float = 0.7
    sde_window: int | None = None
    clip_range: float = 1e-4
    kl_beta: float = 0.04

    def __post_init__(self) -> None:
        """Reject settings that cannot train, with the fix in the message."""
        if self.clip_range <= 0 or self.noise_level <= 0:
            raise UsageError("clip_range and noise_level must be > 0")
        if self.kl_beta < 0:
            raise UsageError(f"kl_beta must be >= 0, got {self.kl_beta}")
        k = self.trained_steps
        if not 1 <= k <= self.num_steps:
            raise UsageError(
                f"timestep_fraction={self.timestep_fraction} trains {k} of {self.num_steps} "
                "steps; choose 0 < timestep_fraction <= 1 that keeps at least one step"
            )
        if self.sde_window is not None and not 1 <= self.sde_window <= k:
            raise UsageError(f"sde_window must be between 1 and {k} (the trained steps)")

    @property
    def trained_steps(self) -> int:
        """How many of the first sampler steps are trainable: int(fraction * num_steps)."""
        return int(self.timestep_fraction * self.num_steps)


@dataclass(kw_only=True)
class TrajectoryBatch(EpochBatch):
    """An epoch of SDE trajectories: states [n, S + 1, ...], log-probs [n, S], SDE steps."""

    states: torch.Tensor
    log_probs: torch.Tensor
    sde_steps: list[int]


class GRPOTrainer(AdapterTrainer):
    """Runs FlowGRPO epochs on a Policy with a RewardComposer; checkpoints and resumes."""

    algo = "grpo"

    config: GRPOConfig

    @property
    def grid(self) -> list[float]:
        """The sampler's time grid as Python floats."""
        return [float(v) for v in self.ts.tolist()]

    def sde_steps(self, epoch: int) -> list[int]:
        """The epoch's SDE (and trained) steps: the first k, or a random window of them."""
        cfg = self.config
        k = cfg.trained_steps
        if cfg.sde_window is None:
            return list(range(k))
        rng = np.random.default_rng(mix_seed(cfg.seed, epoch, 5))
        start = int(rng.integers(0, k - cfg.sde_window + 1))
        return list(range(start, start + cfg.sde_window))

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample_epoch(self, epoch: int) -> TrajectoryBatch:
        """SDE trajectories (states and log-probs) with the sampling adapter; score the ends."""
        cfg = self.config
        draw = self.draw_epoch(epoch)
        steps = self.sde_steps(epoch)
        seed_parts = (cfg.seed, epoch, 4, self.dist.rank) if self.dist.enabled else (cfg.seed, epoch, 4)
        generator = torch.Generator().manual_seed(mix_seed(*seed_parts))
        n = draw.noise.shape[0]
        states, log_probs = [], []
        for start in range(0, n, cfg.sample_batch_size):
            part = slice(start, min(start + cfg.sample_batch_size, n))
            part_cond = index_cond(draw.cond, part)

            def velocity(x: torch.Tensor, t: torch.Tensor, c: Any = part_cond) -> torch.Tensor:
                return self.policy.velocity(x, t, c, adapter="old")

            x_T = draw.noise[part].to(self.policy.device)
            xs, lp = sde_trajectory(velocity, x_T, self.ts, cfg.noise_level, generator, steps)
            states.append(xs.float().cpu())
            log_probs.append(lp.float().cpu())
        all_states = torch.cat(states)
        scored = self.score_epoch(draw, all_states[:, -1].to(self.policy.device))
        return TrajectoryBatch(**vars(scored), states=all_states,
                               log_probs=torch.cat(log_probs), sde_steps=steps)

    # ------------------------------------------------------------------ training
    def train_on(self, batch: EpochBatch, epoch: int) -> dict[str, float]:
        """PPO-clipped updates with a KL penalty on the epoch's SDE steps; diagnostics."""
        if not isinstance(batch, TrajectoryBatch):
            raise TypeError("GRPOTrainer.train_on needs the TrajectoryBatch of sample_epoch")
        cfg = self.config
        model = self.policy.model
        device = self.policy.device
        grid = self.grid
        advantages = group_advantages(batch.rewards, batch.groups, cfg.std_mode)
        adv_all = advantages.clamp(-cfg.adv_clip, cfg.adv_clip)
        mask_all = informative_mask(batch.rewards, batch.groups)
        adv, mask = adv_all[batch.local], mask_all[batch.local]
        seed_parts = (cfg.seed, epoch, 3, self.dist.rank) if self.dist.enabled else (cfg.seed, epoch, 3)
        generator = torch.Generator().manual_seed(mix_seed(*seed_parts))
        n = batch.states.shape[0]
        order = torch.randperm(n, generator=generator)
        micro = [order[i : i + cfg.train_batch_size] for i in range(0, n, cfg.train_batch_size)]
        steps = batch.sde_steps
        k = len(steps)
        model.train()
        totals: dict[str, float] = {}
        count = 0
        self.optimizer.zero_grad(set_to_none=True)
        for m, idx in enumerate(micro):
            sync_now = (m + 1) % cfg.grad_accum == 0 or m == len(micro) - 1
            cond = index_cond(batch.cond, idx.to(device))
            adv_b, mask_b = adv[idx].to(device), mask[idx].to(device)
            for jj, j in enumerate(steps):
                x = batch.states[idx, j].to(device)
                x_next = batch.states[idx, j + 1].to(device)
                t_vec = torch.full((len(idx),), grid[j], dtype=torch.float32, device=device)
                t, t_next = grid[j], grid[j + 1]
                mean_ref = None
                if cfg.kl_beta > 0:
                    with torch.no_grad():
                        v_ref = self.policy.velocity(x, t_vec, cond, adapter=None)
                        _, _, mean_ref, _ = flow_sde_step(
                            x, v_ref, t, t_next, cfg.noise_level, prev_sample=x_next
                        )
                with self.dist.no_sync(self.ddp, skip=not (sync_now and jj == k - 1)):
                    v = self.policy.velocity(x, t_vec, cond, adapter="default")
                    _, log_prob, mean, sigma = flow_sde_step(
                        x, v, t, t_next, cfg.noise_level, prev_sample=x_next
                    )
                    loss, diag = grpo_loss(
                        log_prob, batch.log_probs[idx, j].to(device), adv_b, mask_b,
                        cfg.clip_range, cfg.kl_beta, mean, mean_ref, sigma,
                    )
                    (loss / (k * cfg.grad_accum)).backward()
                for key, value in diag.items():
                    totals[key] = totals.get(key, 0.0) + float(value)
                count += 1
            if sync_now:
                self.optimizer_step(totals, k)
        model.eval()
        soft_update_adapter(model, "old", "default", 0.0)  # next epoch samples on-policy
        stats = {key: value / max(count, 1) for key, value in totals.items()}
        stats.update({"adv_abs": float(adv_all.abs().mean()),
                      "masked_frac": float((~mask_all).float().mean()),
                      "sde_first_step": float(steps[0])})
        return stats
