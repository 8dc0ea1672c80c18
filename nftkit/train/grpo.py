"""The FlowGRPO baseline (arXiv 2505.05470) on the same harness as DiffusionNFT.

Each epoch: the sampling adapter ("old", kept equal to the trained one between epochs, so the
data is on-policy as in FlowGRPO) draws G images per prompt with the FlowGRPO SDE sampler on
every step of the grid (the last included), keeping every intermediate latent and each step's
Gaussian log-probability; with ``guidance_scale`` != 1 the velocity is classifier-free guided
against the empty prompt, in sampling and in the training forward (reference: 4.5). The composed
reward gives per-prompt advantages with the global std (``nftkit.compose``); samples whose
advantage is exactly 0 are dropped one by one and the kept set is padded to the number of
training batches as the reference does (``nftkit.train.grpo_recipe``). The trained "default"
adapter then takes PPO-clipped policy-gradient steps on the first
int(timestep_fraction * num_steps) steps of each trajectory, advantages clipped to +-adv_clip,
with a KL penalty to the adapter-disabled reference. The evaluation EMA is stepped every
``ema_interval`` (8) optimizer steps. The "Fast" variant (``sde_window=k``) uses SDE steps only
inside a random window of k trained steps (ODE elsewhere) and trains on that window only.
Adapters, optimizer, checkpoints and export are the shared machinery of
``nftkit.train.trainer_base``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from nftkit.compose import group_advantages
from nftkit.errors import UsageError
from nftkit.policies.base import Cond, index_cond, repeat_cond
from nftkit.train.grpo_loss import grpo_loss
from nftkit.train.grpo_recipe import IntervalEma, cfg_velocity, kept_samples, train_batches
from nftkit.train.lora import soft_update_adapter
from nftkit.train.sampling import flow_sde_step, sde_trajectory
from nftkit.train.trainer_base import AdapterTrainer, EpochBatch, mix_seed
from nftkit.train.trainer_config import TrainerConfig


@dataclass
class GRPOConfig(TrainerConfig):
    """Hyper-parameters of FlowGRPO (defaults: the reference GenEval settings, REFERENCE.md 2)."""

    label: ClassVar[str] = "GRPO"

    noise_level: float = 0.7
    sde_window: int | None = None
    clip_range: float = 1e-4
    kl_beta: float = 0.04
    # Classifier-free guidance against the empty prompt, in sampling and in the training
    # forward (the reference SD3 configs use 4.5); 1.0 is no guidance.
    guidance_scale: float = 1.0
    # The evaluation EMA applies every this many optimizer steps (reference: 8).
    ema_interval: int = 8

    def __post_init__(self) -> None:
        """Reject settings that cannot train, with the fix in the message."""
        if self.clip_range <= 0 or self.noise_level <= 0:
            raise UsageError("clip_range and noise_level must be > 0")
        if not self.guidance_scale > 0:
            raise UsageError(
                f"guidance_scale must be > 0 (1.0 = no guidance), got {self.guidance_scale}"
            )
        if self.ema_interval < 1:
            raise UsageError(f"ema_interval must be >= 1, got {self.ema_interval}")
        if self.kl_beta < 0:
            raise UsageError(f"kl_beta must be >= 0, got {self.kl_beta}")
        if self.finetune != "lora":
            raise UsageError(
                "the FlowGRPO baseline trains LoRA adapters only; finetune=full is for --algo nft"
            )
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
    """An epoch of trajectories: states [n, S + 1, ...], log-probs [n, S] (NaN at ODE steps),
    the SDE steps and the trained steps."""

    states: torch.Tensor
    log_probs: torch.Tensor
    sde_steps: list[int]
    train_steps: list[int]


class GRPOTrainer(AdapterTrainer):
    """Runs FlowGRPO epochs on a Policy with a RewardComposer; checkpoints and resumes."""

    algo = "grpo"

    config: GRPOConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """As ``AdapterTrainer``; the evaluation EMA steps every ``config.ema_interval``."""
        super().__init__(*args, **kwargs)
        self.ema = IntervalEma(self.trainable, self.config.ema_interval)
        self._uncond: Cond | None = None

    @property
    def grid(self) -> list[float]:
        """The sampler's time grid as Python floats."""
        return [float(v) for v in self.ts.tolist()]

    def _window(self, epoch: int) -> list[int] | None:
        """The Fast variant's random window of trained steps (None without ``sde_window``)."""
        cfg = self.config
        if cfg.sde_window is None:
            return None
        rng = np.random.default_rng(mix_seed(cfg.seed, epoch, 5))
        start = int(rng.integers(0, cfg.trained_steps - cfg.sde_window + 1))
        return list(range(start, start + cfg.sde_window))

    def sde_steps(self, epoch: int) -> list[int]:
        """The epoch's SDE sampling steps: every step of the grid, or the Fast window."""
        window = self._window(epoch)
        return list(range(self.config.num_steps)) if window is None else window

    def train_steps(self, epoch: int) -> list[int]:
        """The epoch's trained steps: the first int(timestep_fraction * num_steps), or the window."""
        window = self._window(epoch)
        return list(range(self.config.trained_steps)) if window is None else window

    def guided_velocity(
        self, x: torch.Tensor, t: torch.Tensor, cond: Cond, adapter: str | None
    ) -> torch.Tensor:
        """The velocity FlowGRPO samples and trains with: CFG at ``guidance_scale`` (v_u detached)."""
        scale = self.config.guidance_scale

        def velocity(xx: torch.Tensor, tt: torch.Tensor, cc: Cond) -> torch.Tensor:
            return self.policy.velocity(xx, tt, cc, adapter=adapter)

        if scale == 1.0:
            return velocity(x, t, cond)
        first = self._uncond is None
        if first:  # the empty prompt, encoded once (the reference's negative prompt)
            self._uncond = self.policy.encode_prompts([""])
        v = cfg_velocity(velocity, x, t, cond, repeat_cond(self._uncond, x.shape[0]), scale)
        if first and not bool(torch.isfinite(v).all()):
            raise UsageError(
                f"{type(self.policy).__name__} gives a non-finite guided velocity for the empty "
                f"prompt; this model cannot use guidance_scale={scale}: set guidance_scale=1.0"
            )
        return v

    # ------------------------------------------------------------------ sampling
    @torch.no_grad()
    def sample_epoch(self, epoch: int) -> TrajectoryBatch:
        """SDE trajectories (states and log-probs) with the sampling adapter; score the ends."""
        cfg = self.config
        draw = self.draw_epoch(epoch)
        steps = self.sde_steps(epoch)
        seed_parts = (
            (cfg.seed, epoch, 4, self.dist.rank) if self.dist.enabled else (cfg.seed, epoch, 4)
        )
        generator = torch.Generator().manual_seed(mix_seed(*seed_parts))
        n = draw.noise.shape[0]
        states, log_probs = [], []
        for start in range(0, n, cfg.sample_batch_size):
            part = slice(start, min(start + cfg.sample_batch_size, n))
            part_cond = index_cond(draw.cond, part)

            def velocity(x: torch.Tensor, t: torch.Tensor, c: Any = part_cond) -> torch.Tensor:
                return self.guided_velocity(x, t, c, adapter="old")

            x_T = draw.noise[part].to(self.policy.device)
            xs, lp = sde_trajectory(velocity, x_T, self.ts, cfg.noise_level, generator, steps)
            states.append(xs.float().cpu())
            log_probs.append(lp.float().cpu())
        all_states = torch.cat(states)
        scored = self.score_epoch(draw, all_states[:, -1].to(self.policy.device))
        return TrajectoryBatch(
            **vars(scored),
            states=all_states,
            log_probs=torch.cat(log_probs),
            sde_steps=steps,
            train_steps=self.train_steps(epoch),
        )

    # ------------------------------------------------------------------ training
    def train_on(self, batch: EpochBatch, epoch: int) -> dict[str, float]:
        """PPO-clipped updates with a KL penalty on the epoch's trained steps; diagnostics.

        Samples with a zero advantage are dropped (then padded to the number of batches,
        ``kept_samples``); the kept ones are shuffled into as many batches as the full epoch
        has (ceil(samples / train_batch_size)), so the optimizer steps per epoch do not change.
        If nothing is kept, the full batches run with zero weight (no gradient), which keeps
        the step count and the processes' gradient syncs in line.
        """
        if not isinstance(batch, TrajectoryBatch):
            raise TypeError("GRPOTrainer.train_on needs the TrajectoryBatch of sample_epoch")
        cfg = self.config
        model = self.policy.model
        device = self.policy.device
        grid = self.grid
        advantages = group_advantages(batch.rewards, batch.groups, cfg.std_mode)
        adv = advantages[batch.local].clamp(-cfg.adv_clip, cfg.adv_clip)
        seed_parts = (
            (cfg.seed, epoch, 3, self.dist.rank) if self.dist.enabled else (cfg.seed, epoch, 3)
        )
        generator = torch.Generator().manual_seed(mix_seed(*seed_parts))
        n = batch.states.shape[0]
        num_batches = -(-n // cfg.train_batch_size)
        kept = kept_samples(advantages[batch.local], num_batches, generator)
        live = kept.numel() > 0
        micro = train_batches(kept if live else torch.arange(n), num_batches, generator)
        steps = batch.train_steps
        k = len(steps)
        model.train()
        totals: dict[str, float] = {}
        count = 0
        self.optimizer.zero_grad(set_to_none=True)
        for m, idx in enumerate(micro):
            sync_now = (m + 1) % cfg.grad_accum == 0 or m == len(micro) - 1
            cond = index_cond(batch.cond, idx.to(device))
            adv_b = adv[idx].to(device)
            weight_b = torch.full((len(idx),), live, dtype=torch.bool, device=device)
            for jj, j in enumerate(steps):
                x = batch.states[idx, j].to(device)
                x_next = batch.states[idx, j + 1].to(device)
                t_vec = torch.full((len(idx),), grid[j], dtype=torch.float32, device=device)
                t, t_next = grid[j], grid[j + 1]
                mean_ref = None
                if cfg.kl_beta > 0:
                    with torch.no_grad():
                        v_ref = self.guided_velocity(x, t_vec, cond, adapter=None)
                        _, _, mean_ref, _ = flow_sde_step(
                            x, v_ref, t, t_next, cfg.noise_level, prev_sample=x_next
                        )
                with self.dist.no_sync(self.ddp, skip=not (sync_now and jj == k - 1)):
                    v = self.guided_velocity(x, t_vec, cond, adapter="default")
                    _, log_prob, mean, sigma = flow_sde_step(
                        x, v, t, t_next, cfg.noise_level, prev_sample=x_next
                    )
                    loss, diag = grpo_loss(
                        log_prob,
                        batch.log_probs[idx, j].to(device),
                        adv_b,
                        weight_b,
                        cfg.clip_range,
                        cfg.kl_beta,
                        mean,
                        mean_ref,
                        sigma,
                    )
                    (loss / (k * cfg.grad_accum)).backward()
                for key, value in diag.items():
                    totals[key] = totals.get(key, 0.0) + float(value)
                count += 1
            if sync_now:
                self.optimizer_step(totals, k)  # the EMA is stepped in there, after the step
            else:  # the reference steps its EMA after every training batch
                self.ema.update(self.trainable, self.global_step)
        model.eval()
        soft_update_adapter(model, "old", "default", 0.0)  # next epoch samples on-policy
        stats = {key: value / max(count, 1) for key, value in totals.items()}
        stats.update(
            {
                "adv_abs": float(advantages.clamp(-cfg.adv_clip, cfg.adv_clip).abs().mean()),
                "zero_adv_frac": float((advantages == 0).float().mean()),
                "kept_frac": float(kept.numel() / max(n, 1)),
                "train_batch": float(len(micro[0]) if live and micro else 0),
                "sde_first_step": float(steps[0]),
            }
        )
        return stats
