"""The DiffusionNFT trainer: online RL on the forward process, CFG-free, model-agnostic.

Each epoch: the lagging "old" adapter samples G images for each of P prompts with a black-box
ODE solver (no trajectories kept, only clean latents); the composed reward gives group
advantages (global std) and optimality probabilities r; the trained "default" adapter is fitted
with the NFT loss at the sampler's own timesteps (implicit positive/negative policies, adaptive
x0-space weights, the adv_clip/beta scale, MSE to the adapter-disabled reference); then the old
adapter is soft-updated towards the trained one. EMA weights of the trained adapter are kept for
evaluation and export. The trainer only sees the Policy contract, so the shapes model and SD3.5
share this code. Under several processes (``Distributed``) each process samples and scores its
contiguous share of the epoch, the rewards are gathered so that advantages use the global std,
and the trained adapter's gradients are averaged through DDP; only the main process writes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from nftkit.compose import group_advantages, optimality_probability
from nftkit.errors import UsageError
from nftkit.policies.base import index_cond, sampling_velocity_kwargs
from nftkit.train.nft_loss import forward_noise, nft_loss, training_timestep_indices
from nftkit.train.sampling import sample
from nftkit.train.schedules import old_policy_decay
from nftkit.train.trainer_base import (  # noqa: F401  (re-exported: the public import path)
    ADAPTER_FILE,
    MODEL_INFO_FILE,
    AdapterTrainer,
    EpochBatch,
    write_history,
)
from nftkit.train.trainer_base import mix_seed as _seed
from nftkit.train.trainer_config import (  # noqa: F401  (re-exported: the public import path)
    PromptItem,
    TrainerConfig,
    config_from_dict,
)

SCHEDULE_CLOCKS = ("step", "epoch")


@dataclass
class NFTConfig(TrainerConfig):
    """Hyper-parameters of DiffusionNFT (defaults: the reference SD3.5-M settings)."""

    label: ClassVar[str] = "NFT"

    solver: str = "dpm2"
    max_train_timesteps: int | None = None
    # Draw the trained timesteps from the first N sampler steps only (the highest noise levels,
    # where composition is decided), as FlowGRPO's timestep_fraction does; None: all steps.
    high_noise_steps: int | None = None
    beta: float = 1.0
    ref_weight: float = 1e-4
    weighting: str = "adaptive"
    eta_schedule: str = "default"
    # What indexes eta (the old-policy decay) and the evaluation EMA's decay: "step" (the
    # reference: the optimizer step, once per epoch in its layout) or "epoch" (once per epoch,
    # whatever the optimizer steps per epoch; docs/fidelity.md section 1).
    schedule_clock: str = "step"

    def __post_init__(self) -> None:
        """Reject a timestep window that the sampler does not have, or an unknown clock."""
        if self.schedule_clock not in SCHEDULE_CLOCKS:
            raise UsageError(
                f"schedule_clock={self.schedule_clock!r} is not one of {', '.join(SCHEDULE_CLOCKS)}"
            )
        window = self.high_noise_steps
        if window is not None and not 1 <= window <= self.num_steps:
            raise UsageError(
                f"high_noise_steps={window} must be between 1 and num_steps={self.num_steps}"
            )


class NFTTrainer(AdapterTrainer):
    """Runs DiffusionNFT epochs on a Policy with a RewardComposer; checkpoints and resumes."""

    algo = "nft"

    config: NFTConfig

    # ------------------------------------------------------------------ schedules
    def schedule_position(self, epoch: int) -> int:
        """Where eta and the EMA stand after ``epoch``: optimizer steps or epochs done."""
        return epoch + 1 if self.config.schedule_clock == "epoch" else self.global_step

    def step_ema(self) -> None:
        """Per optimizer step under the "step" clock; "epoch" steps it at the epoch's end."""
        if self.config.schedule_clock == "step":
            super().step_ema()

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample_epoch(self, epoch: int) -> EpochBatch:
        """Sample G images per prompt with the old adapter and score them."""
        cfg = self.config
        draw = self.draw_epoch(epoch)
        noise = draw.noise
        n = noise.shape[0]
        extra = sampling_velocity_kwargs(self.policy)  # integer timestep, as the pipeline
        latents = []
        with self.network("old"):  # full training: one swap for the whole epoch's sampling
            for start in range(0, n, cfg.sample_batch_size):
                part = slice(start, min(start + cfg.sample_batch_size, n))
                part_cond = index_cond(draw.cond, part)

                def velocity(x: torch.Tensor, t: torch.Tensor, c: Any = part_cond) -> torch.Tensor:
                    return self.policy.velocity(x, t, c, adapter="old", **extra)

                x_T = noise[part].to(self.policy.device)
                x0 = sample(velocity, x_T, cfg.num_steps, cfg.solver, grid=self.ts)
                latents.append(x0.float())
        return self.score_epoch(draw, torch.cat(latents))

    # ------------------------------------------------------------------ training
    def train_on(self, batch: EpochBatch, epoch: int) -> dict[str, float]:
        """NFT updates on one epoch's samples; returns averaged diagnostics."""
        cfg = self.config
        model = self.policy.model
        advantages = group_advantages(batch.rewards, batch.groups, cfg.std_mode)
        r_all = optimality_probability(advantages, cfg.adv_clip)
        r = r_all[batch.local]
        seed_parts = (
            (cfg.seed, epoch, 3, self.dist.rank) if self.dist.enabled else (cfg.seed, epoch, 3)
        )
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
                cfg.high_noise_steps or cfg.num_steps,
                len(idx),
                cfg.timestep_fraction,
                generator=generator,
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
                        if cfg.ref_weight > 0
                        else None
                    )
                with self.dist.no_sync(self.ddp, skip=not (sync_now and j == k - 1)):
                    v = self.policy.velocity(x_t, t, cond, adapter="default")
                    loss, diag = nft_loss(
                        v,
                        v_old,
                        v_ref,
                        x_t,
                        x0,
                        eps,
                        t,
                        rr,
                        cfg.beta,
                        ref_weight=cfg.ref_weight,
                        weighting=cfg.weighting,
                        adv_clip=cfg.adv_clip,
                    )
                    (loss / (k * cfg.grad_accum)).backward()
                for key, value in diag.items():
                    totals[key] = totals.get(key, 0.0) + float(value)
                count += 1
            if sync_now:
                self.optimizer_step(totals, k)
        model.eval()
        if cfg.schedule_clock == "epoch":
            self.ema.update(self.trainable, self.schedule_position(epoch))
        eta = old_policy_decay(self.schedule_position(epoch), cfg.eta_schedule)
        self.update_old(eta)
        stats = {key: value / max(count, 1) for key, value in totals.items()}
        stats.update(
            {"eta": eta, "r_mean": float(r_all.mean()), "adv_abs": float(advantages.abs().mean())}
        )
        return stats
