"""The DiffusionNFT objective on the forward process (arXiv 2509.16117, reference code form).

All functions are pure: they take tensors and return tensors. Per-sample timesteps ``t`` have
shape [B] and broadcast over the remaining dims of the latents. The optimality probability
``r`` in [0, 1] comes from the composer (nftkit.compose), not from here.
"""

from __future__ import annotations

import torch
from torch import Tensor

WEIGHTINGS = ("adaptive", "velocity")
ADAPTIVE_WEIGHT_MIN = 1e-5
LOSS_SCALE = 5.0  # adv_clip / beta scale at the default clip of 5 (kept for old imports)


def training_timestep_indices(
    num_steps: int,
    batch: int,
    fraction: float = 0.99,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Per-sample random subsets of the sampler's step indices, as a LongTensor [batch, k].

    Row b is the first k = int(fraction * num_steps) entries of a random permutation of
    0..num_steps-1 (indices into ``timesteps(num_steps)[:-1]``), drawn on the CPU.
    """
    if num_steps < 1 or batch < 1:
        raise ValueError(f"num_steps and batch must be >= 1, got {num_steps} and {batch}")
    k = int(fraction * num_steps)
    if not 1 <= k <= num_steps:
        raise ValueError(
            f"fraction={fraction} keeps {k} of {num_steps} steps; choose 0 < fraction <= 1 "
            "that keeps at least one step"
        )
    keys = torch.rand(batch, num_steps, generator=generator)
    return torch.argsort(keys, dim=1)[:, :k].to(torch.long)


def _column(t: Tensor, like: Tensor) -> Tensor:
    """Reshape a [B] (or scalar) tensor to [B, 1, ..., 1] to broadcast against ``like``."""
    t = torch.as_tensor(t, device=like.device)
    if t.ndim == 0:
        return t
    if t.shape != (like.shape[0],):
        raise ValueError(f"expected shape [{like.shape[0]}], got {tuple(t.shape)}")
    return t.reshape(-1, *([1] * (like.ndim - 1)))


def _per_sample_mean(x: Tensor) -> Tensor:
    """Mean over all non-batch dims -> [B]."""
    return x.mean(dim=tuple(range(1, x.ndim))) if x.ndim > 1 else x


def forward_noise(x0: Tensor, t: Tensor, eps: Tensor) -> Tensor:
    """Forward process x_t = (1 - t) * x0 + t * eps with per-sample t [B]."""
    tc = _column(t, x0).to(x0.dtype)
    return (1 - tc) * x0 + tc * eps


def implicit_policies(v: Tensor, v_old: Tensor, beta: float) -> tuple[Tensor, Tensor]:
    """Implicit positive and negative velocities (v_pos, v_neg).

    v_pos = beta * v + (1 - beta) * v_old;  v_neg = (1 + beta) * v_old - beta * v.
    """
    v_pos = beta * v + (1.0 - beta) * v_old
    v_neg = (1.0 + beta) * v_old - beta * v
    return v_pos, v_neg


def adaptive_x0_loss(v_implicit: Tensor, x_t: Tensor, x0: Tensor, t: Tensor) -> Tensor:
    """Adaptively weighted x0-space loss per sample -> [B].

    x0_hat = x_t - t * v; loss = mean((x0_hat - x0)^2) / w with the weight
    w = stop_grad(mean |x0_hat - x0|) computed in float64 and clipped to >= 1e-5.
    Means run over all non-batch dims; the result is float32 (float64 for float64 input).
    """
    dtype = torch.float64 if v_implicit.dtype == torch.float64 else torch.float32
    tc = _column(t, x_t).to(dtype)
    x0_hat = x_t.to(dtype) - tc * v_implicit.to(dtype)
    err = x0_hat - x0.to(dtype)
    weight = _per_sample_mean(err.detach().to(torch.float64).abs()).clamp_min(ADAPTIVE_WEIGHT_MIN)
    return _per_sample_mean(err**2) / weight.to(dtype)


def velocity_loss(v_implicit: Tensor, target_v: Tensor) -> Tensor:
    """Plain velocity-space MSE per sample (paper Eq. 5 form) -> [B]."""
    dtype = torch.float64 if v_implicit.dtype == torch.float64 else torch.float32
    return _per_sample_mean((v_implicit.to(dtype) - target_v.to(dtype)) ** 2)


def nft_loss(
    v: Tensor,
    v_old: Tensor,
    v_ref: Tensor | None,
    x_t: Tensor,
    x0: Tensor,
    eps: Tensor,
    t: Tensor,
    r: Tensor,
    beta: float,
    ref_weight: float = 1e-4,
    weighting: str = "adaptive",
    adv_clip: float = 5.0,
) -> tuple[Tensor, dict[str, float]]:
    """DiffusionNFT loss for one batch at one timestep per sample.

    loss = adv_clip * mean_B[(r * L_pos + (1 - r) * L_neg) / beta]
           + ref_weight * mean((v - v_ref)^2)

    The scale is the advantage clip A_max of the reference code (adv_clip_max / beta; 5 / beta
    at the default clip of 5).

    v: trained velocity (carries the gradient); v_old, v_ref: velocities of the sampling
    policy and the reference model (both detached here; ``v_ref`` may be None when
    ``ref_weight`` is 0). t, r: shape [B]. weighting: "adaptive" (x0-space with the adaptive
    weight, the reference code) or "velocity" (paper Eq. 5, target eps - x0).
    Returns the scalar loss and float diagnostics.
    """
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    if adv_clip <= 0:
        raise ValueError(f"adv_clip must be > 0, got {adv_clip}")
    if weighting not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {weighting!r}; valid: {', '.join(WEIGHTINGS)}")
    if v_ref is None and ref_weight != 0:
        raise ValueError("v_ref is None but ref_weight != 0; pass v_ref or set ref_weight=0")
    if v.shape != v_old.shape or v.shape != x0.shape:
        raise ValueError(
            f"shape mismatch: v {tuple(v.shape)}, v_old {tuple(v_old.shape)}, x0 {tuple(x0.shape)}"
        )
    v_old = v_old.detach()
    v_pos, v_neg = implicit_policies(v, v_old, beta)
    if weighting == "adaptive":
        loss_pos = adaptive_x0_loss(v_pos, x_t, x0, t)
        loss_neg = adaptive_x0_loss(v_neg, x_t, x0, t)
    else:
        target = eps - x0
        loss_pos = velocity_loss(v_pos, target)
        loss_neg = velocity_loss(v_neg, target)
    rr = torch.as_tensor(r, device=loss_pos.device).to(loss_pos.dtype)
    if rr.shape != loss_pos.shape:
        raise ValueError(f"r must have shape [{loss_pos.shape[0]}], got {tuple(rr.shape)}")
    policy_loss = adv_clip * ((rr * loss_pos + (1.0 - rr) * loss_neg) / beta).mean()
    if v_ref is not None:
        ref_loss = ((v.to(policy_loss.dtype) - v_ref.detach().to(policy_loss.dtype)) ** 2).mean()
    else:
        ref_loss = torch.zeros((), dtype=policy_loss.dtype, device=policy_loss.device)
    loss = policy_loss + ref_weight * ref_loss
    with torch.no_grad():
        old_dev = ((v.detach().float() - v_old.float()) ** 2).mean()
    diagnostics = {
        "loss": float(loss.detach()),
        "policy_loss": float(policy_loss.detach()),
        "ref_loss": float(ref_loss.detach()),
        "loss_pos": float(loss_pos.detach().mean()),
        "loss_neg": float(loss_neg.detach().mean()),
        "old_deviation": float(old_dev),
    }
    return loss, diagnostics
