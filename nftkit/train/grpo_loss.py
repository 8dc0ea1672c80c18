"""The FlowGRPO objective for one SDE step (arXiv 2505.05470, reference code form).

Pure functions on tensors. Per step: ratio = exp(logp - logp_old) with the Gaussian
log-probabilities of ``flow_sde_step`` (averaged over latent dims); PPO's clipped surrogate
max(-A * ratio, -A * clip(ratio, 1 - eps, 1 + eps)); plus beta_kl times the KL between the
trained and the reference policy's Gaussian transitions, mean((mu - mu_ref)^2) / (2 sigma_t^2)
(mean over latent dims, as the reference code). Samples of groups whose rewards are all equal
are masked out of both terms.
"""

from __future__ import annotations

import torch
from torch import Tensor


def ppo_clip_loss(
    log_prob: Tensor, old_log_prob: Tensor, advantages: Tensor, clip_range: float
) -> tuple[Tensor, Tensor]:
    """Per-sample PPO clipped surrogate loss [B] and the ratio [B].

    loss = max(-A * ratio, -A * clamp(ratio, 1 - clip_range, 1 + clip_range)): the gradient
    vanishes once the ratio has moved past the clip range in the direction the advantage
    favours (A > 0 and ratio > 1 + eps, or A < 0 and ratio < 1 - eps).
    """
    if clip_range <= 0:
        raise ValueError(f"clip_range must be > 0, got {clip_range}")
    if log_prob.shape != old_log_prob.shape or log_prob.shape != advantages.shape:
        raise ValueError(
            f"shape mismatch: log_prob {tuple(log_prob.shape)}, old {tuple(old_log_prob.shape)}, "
            f"advantages {tuple(advantages.shape)}"
        )
    ratio = torch.exp(log_prob - old_log_prob.detach())
    adv = advantages.detach().to(ratio.dtype)
    unclipped = -adv * ratio
    clipped = -adv * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    return torch.maximum(unclipped, clipped), ratio


def sde_kl(mean: Tensor, mean_ref: Tensor, sigma: Tensor) -> Tensor:
    """Per-sample KL term [B]: mean over latent dims of (mu - mu_ref)^2, over 2 sigma_t^2."""
    if mean.shape != mean_ref.shape:
        raise ValueError(f"shape mismatch: mean {tuple(mean.shape)}, ref {tuple(mean_ref.shape)}")
    sq = (mean - mean_ref.detach()) ** 2
    sq = sq.mean(dim=tuple(range(1, sq.ndim))) if sq.ndim > 1 else sq
    return sq / (2.0 * sigma.reshape(-1).to(sq.dtype) ** 2)


def grpo_loss(
    log_prob: Tensor,
    old_log_prob: Tensor,
    advantages: Tensor,
    mask: Tensor,
    clip_range: float,
    kl_beta: float = 0.0,
    mean: Tensor | None = None,
    mean_ref: Tensor | None = None,
    sigma: Tensor | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """FlowGRPO loss for one batch at one SDE step, averaged over unmasked samples.

    loss = mean_unmasked[ppo_clip_loss + kl_beta * sde_kl]; a batch with no unmasked sample
    gives a zero loss that still carries the graph (so DDP's gradient sync runs). Returns the
    scalar loss and float diagnostics (clip fraction, ratio, approximate KL to the sampler).
    """
    if kl_beta < 0:
        raise ValueError(f"kl_beta must be >= 0, got {kl_beta}")
    policy, ratio = ppo_clip_loss(log_prob, old_log_prob, advantages, clip_range)
    weight = mask.to(policy.dtype)
    denom = weight.sum().clamp_min(1.0)
    policy_loss = (policy * weight).sum() / denom
    if kl_beta > 0:
        if mean is None or mean_ref is None or sigma is None:
            raise ValueError("kl_beta > 0 needs mean, mean_ref and sigma")
        kl = (sde_kl(mean, mean_ref, sigma).to(policy.dtype) * weight).sum() / denom
    else:
        kl = torch.zeros((), dtype=policy.dtype, device=policy.device)
    loss = policy_loss + kl_beta * kl
    with torch.no_grad():
        on = weight > 0
        picked = ratio[on] if bool(on.any()) else ratio
        log_ratio = (log_prob - old_log_prob).detach()[on] if bool(on.any()) else ratio * 0
        diagnostics = {
            "loss": float(loss.detach()),
            "policy_loss": float(policy_loss.detach()),
            "kl": float(kl.detach()),
            "ratio_mean": float(picked.mean()),
            "clipfrac": float(((picked - 1.0).abs() > clip_range).float().mean()),
            "approx_kl": float(0.5 * (log_ratio**2).mean()),
        }
    return loss, diagnostics
