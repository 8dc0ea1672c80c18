"""Model-agnostic samplers for flow-matching models.

Conventions: t in [0, 1], x_t = (1 - t) * x0 + t * eps, the model predicts the velocity
v = eps - x0, t = 1 is pure noise and sampling integrates from t = 1 down to t = 0. A velocity
function has the signature ``velocity_fn(x, t) -> v`` with ``t`` a float tensor of shape [B]
(conditioning already bound by the caller). Solvers keep the state in the dtype of ``x_T``;
timesteps stay float32 (or float64 for float64 states).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from itertools import pairwise

import torch
from torch import Tensor

VelocityFn = Callable[[Tensor, Tensor], Tensor]

SOLVERS = ("dpm2", "euler", "sde")


def timesteps(num_steps: int, shift: float = 1.0) -> Tensor:
    """Return ``num_steps + 1`` float32 timesteps from 1 down to 0.

    The grid is uniform in t and then warped with the SD3 shift t' = s*t / (1 + (s - 1)*t),
    which keeps the end points 0 and 1 and spends more steps at high noise for s > 1.
    """
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    if shift <= 0:
        raise ValueError(f"shift must be > 0, got {shift}")
    t = torch.linspace(1.0, 0.0, num_steps + 1, dtype=torch.float64)
    t = shift * t / (1.0 + (shift - 1.0) * t)
    return t.to(torch.float32)


def _check_grid(ts: Tensor) -> list[float]:
    """Validate a timestep grid and return it as Python floats (double precision)."""
    if ts.ndim != 1 or ts.numel() < 2:
        raise ValueError(
            f"ts must be a 1-D tensor with at least 2 entries, got shape {tuple(ts.shape)}"
        )
    grid = [float(v) for v in ts.detach().cpu().tolist()]
    if grid[0] > 1.0 or grid[-1] < 0.0:
        raise ValueError(f"ts must lie in [0, 1], got [{grid[-1]}, {grid[0]}]")
    if any(b >= a for a, b in pairwise(grid)):
        raise ValueError("ts must be strictly decreasing (from noise t=1 towards data t=0)")
    return grid


def _t_batch(t: float, x: Tensor) -> Tensor:
    """A [B] timestep tensor for the velocity function."""
    dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    return torch.full((x.shape[0],), t, dtype=dtype, device=x.device)


def euler_ode(velocity_fn: VelocityFn, x_T: Tensor, ts: Tensor) -> Tensor:
    """Integrate the flow ODE dx/dt = v(x, t) with explicit Euler steps along ``ts``."""
    return _integrate(velocity_fn, x_T, ts, sde_steps=())[0]


def _log_snr(t: float) -> float:
    """lambda(t) = log(alpha_t / sigma_t) = log((1 - t) / t) for the flow schedule."""
    return math.log((1.0 - t) / t)


def dpm_solver2_ode(velocity_fn: VelocityFn, x_T: Tensor, ts: Tensor) -> Tensor:
    """Second-order multistep ODE solver (DPM-Solver++(2M) in data-prediction form).

    Derivation. The flow schedule is alpha_t = 1 - t, sigma_t = t, so the data prediction
    is x0_hat = x - t * v and the log-SNR is lambda_t = log((1 - t) / t). The exact solution
    of the probability-flow ODE from t to s < t is
    x_s = (sigma_s / sigma_t) x_t + sigma_s * int_{lambda_t}^{lambda_s} e^l x0_hat(l) dl.
    Freezing x0_hat at a value D over the step gives
    x_s = (s / t) x_t - alpha_s (e^{-h} - 1) D with h = lambda_s - lambda_t, and since
    alpha_s (e^{-h} - 1) = (s - t) / t this is x_s = (s / t) x_t + (1 - s / t) D.
    With D = x0_hat(x_t, t) this is exactly one Euler step of the velocity ODE (first order).
    The 2M correction linearises x0_hat in lambda with the previous step's prediction:
    D = D_i + (D_i - D_{i-1}) / (2 r), r = h_{i-1} / h_i (the step sizes in lambda).
    The first step (no previous prediction) and the last step (s = 0, lambda_s = +inf) are first
    order. When the previous timestep is t = 1 (lambda = -inf), h_{i-1} is infinite, r -> inf
    and the correction vanishes, so that step is first order as well; the number of first-order
    steps stays bounded and the global error remains O(h^2).
    """
    grid = _check_grid(ts)
    n = len(grid) - 1
    x = x_T
    d_prev: Tensor | None = None
    for i in range(n):
        t, t_next = grid[i], grid[i + 1]
        v = velocity_fn(x, _t_batch(t, x))
        d = x - t * v  # data prediction x0_hat
        d_used = d
        if d_prev is not None and i < n - 1 and grid[i - 1] < 1.0:
            h = _log_snr(t_next) - _log_snr(t)
            h_last = _log_snr(t) - _log_snr(grid[i - 1])
            d_used = d + (h / (2.0 * h_last)) * (d - d_prev)
        ratio = t_next / t
        x = (ratio * x + (1.0 - ratio) * d_used).to(x_T.dtype)
        d_prev = d
    return x


def _as_batch_column(t: float | Tensor, x: Tensor, dtype: torch.dtype) -> Tensor:
    """Turn a float, 0-d or [B] tensor into shape [B, 1, ..., 1] broadcastable against x."""
    t = torch.as_tensor(t, dtype=dtype, device=x.device)
    if t.ndim == 0:
        t = t.expand(x.shape[0])
    if t.shape != (x.shape[0],):
        raise ValueError(f"timestep must be a scalar or shape [{x.shape[0]}], got {tuple(t.shape)}")
    return t.to(dtype).reshape(-1, *([1] * (x.ndim - 1)))


def flow_sde_step(
    x: Tensor,
    v: Tensor,
    t: float | Tensor,
    t_next: float | Tensor,
    noise_level: float = 0.7,
    generator: torch.Generator | None = None,
    prev_sample: Tensor | None = None,
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """One FlowGRPO SDE step from t to t_next < t, with the Gaussian log-probability.

    sigma_t = a * sqrt(t / (1 - t')) with t' = t_next where t == 1 (else t' = t; as in the
    FlowGRPO code only the denominator's t is replaced), dt = t_next - t < 0,
    mean = x * (1 + sigma_t^2 / (2 t) * dt) + v * (1 + sigma_t^2 * (1 - t) / (2 t)) * dt,
    x_next = mean + sigma_t * sqrt(-dt) * eps.

    Returns ``(x_next, log_prob, mean, std)``: x_next in the dtype of ``x`` (``prev_sample``
    itself when given); log_prob [B], the log density of ``prev_sample`` (else of the drawn
    x_next) under N(mean, (sigma_t * sqrt(-dt))^2), averaged over all non-batch dims; mean in
    float32 (float64 for float64 input); ``std`` is sigma_t with shape [B, 1, ..., 1] (the SDE
    diffusion coefficient used by FlowGRPO's KL term; the transition std is
    ``std * sqrt(-dt)``). Arithmetic runs in at least float32.
    """
    wd = torch.float64 if x.dtype == torch.float64 else torch.float32
    tc = _as_batch_column(t, x, wd)
    tn = _as_batch_column(t_next, x, wd)
    if bool((tn >= tc).any()) or bool((tc <= 0).any()) or bool((tc > 1).any()):
        raise ValueError("flow_sde_step needs 0 < t <= 1 and t_next < t")
    dt = tn - tc
    denom_t = torch.where(tc == 1.0, tn, tc)
    sigma = noise_level * torch.sqrt(tc / (1.0 - denom_t))
    xw, vw = x.to(wd), v.to(wd)
    mean = (
        xw * (1.0 + sigma**2 / (2.0 * tc) * dt)
        + vw * (1.0 + sigma**2 * (1.0 - tc) / (2.0 * tc)) * dt
    )
    step_std = sigma * torch.sqrt(-dt)
    if prev_sample is None:
        gen_device = generator.device if generator is not None else x.device
        noise = torch.randn(x.shape, generator=generator, device=gen_device, dtype=wd).to(x.device)
        x_next = (mean + step_std * noise).to(x.dtype)
    else:
        x_next = prev_sample
    diff = x_next.detach().to(wd) - mean
    log_prob = (
        -(diff**2) / (2.0 * step_std**2) - torch.log(step_std) - 0.5 * math.log(2.0 * math.pi)
    )
    log_prob = log_prob.mean(dim=tuple(range(1, x.ndim)))
    return x_next, log_prob, mean, sigma


def sde_sample(
    velocity_fn: VelocityFn,
    x_T: Tensor,
    ts: Tensor,
    noise_level: float = 0.7,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Integrate with FlowGRPO SDE steps along ``ts`` (noise added at every step)."""
    return _integrate(velocity_fn, x_T, ts, noise_level=noise_level, generator=generator)[0]


def sde_trajectory(
    velocity_fn: VelocityFn,
    x_T: Tensor,
    ts: Tensor,
    noise_level: float = 0.7,
    generator: torch.Generator | None = None,
    sde_steps: Sequence[int] | None = None,
) -> tuple[Tensor, Tensor]:
    """Integrate along ``ts`` keeping every state and each SDE step's log-probability.

    Step i goes from ts[i] to ts[i + 1]. Steps listed in ``sde_steps`` (all steps when None)
    are FlowGRPO SDE steps (``flow_sde_step``); the others are deterministic Euler ODE steps
    (the "Fast" variant: noise only inside a window). Returns ``(states, log_probs)``: states
    [B, S + 1, ...] in the dtype of ``x_T`` (states[:, 0] is x_T), log_probs [B, S] float32
    (float64 for float64 input) with NaN at ODE steps.
    """
    _, states, log_probs = _integrate(
        velocity_fn,
        x_T,
        ts,
        noise_level=noise_level,
        generator=generator,
        sde_steps=sde_steps,
        keep_states=True,
    )
    return states, log_probs


def _integrate(
    velocity_fn: VelocityFn,
    x_T: Tensor,
    ts: Tensor,
    noise_level: float = 0.7,
    generator: torch.Generator | None = None,
    sde_steps: Sequence[int] | None = None,
    keep_states: bool = False,
) -> tuple[Tensor, Tensor, Tensor]:
    """The one step loop of the Euler ODE and the FlowGRPO SDE samplers.

    Step i goes from ts[i] to ts[i + 1]: a FlowGRPO SDE step when i is in ``sde_steps`` (every
    step when None), else an Euler ODE step. Returns ``(x0, states, log_probs)``; ``states`` is
    [B, S + 1, ...] with ``keep_states`` (else empty), ``log_probs`` [B, S] with NaN at ODE steps.
    """
    grid = _check_grid(ts)
    n = len(grid) - 1
    noisy = set(range(n)) if sde_steps is None else {int(i) for i in sde_steps}
    if any(not 0 <= i < n for i in noisy):
        raise ValueError(f"sde_steps must lie in [0, {n - 1}], got {sorted(noisy)}")
    wd = torch.float64 if x_T.dtype == torch.float64 else torch.float32
    log_probs = torch.full((x_T.shape[0], n), float("nan"), dtype=wd, device=x_T.device)
    states = [x_T]
    x = x_T
    for i, (t, t_next) in enumerate(pairwise(grid)):
        v = velocity_fn(x, _t_batch(t, x))
        if i in noisy:
            x, log_prob, _, _ = flow_sde_step(
                x, v, t, t_next, noise_level=noise_level, generator=generator
            )
            log_probs[:, i] = log_prob
        else:
            x = (x + (t_next - t) * v).to(x_T.dtype)
        if keep_states:
            states.append(x)
    stacked = torch.stack(states, dim=1) if keep_states else x_T.new_empty(0)
    return x, stacked, log_probs


def sample(
    velocity_fn: VelocityFn,
    x_T: Tensor,
    num_steps: int,
    solver: str = "dpm2",
    shift: float = 1.0,
    generator: torch.Generator | None = None,
    noise_level: float = 0.7,
    grid: Tensor | None = None,
) -> Tensor:
    """Sample x0 from noise ``x_T`` with ``num_steps`` steps of ``solver``.

    solver: "dpm2" (2nd-order multistep ODE), "euler" (1st-order ODE) or "sde" (FlowGRPO SDE,
    which uses ``generator`` and ``noise_level``). ``grid`` is the explicit time grid
    (``num_steps + 1`` entries, e.g. a policy's ``time_grid``); without it the grid is
    ``timesteps(num_steps, shift)``.
    """
    if grid is None:
        ts = timesteps(num_steps, shift)
    else:
        ts = torch.as_tensor(grid)
        if ts.numel() != num_steps + 1:
            raise ValueError(
                f"grid has {ts.numel()} entries; {num_steps} steps need {num_steps + 1}"
            )
    if solver == "dpm2":
        return dpm_solver2_ode(velocity_fn, x_T, ts)
    if solver == "euler":
        return euler_ode(velocity_fn, x_T, ts)
    if solver == "sde":
        return sde_sample(velocity_fn, x_T, ts, noise_level=noise_level, generator=generator)
    raise ValueError(f"unknown solver {solver!r}; valid solvers: {', '.join(SOLVERS)}")
