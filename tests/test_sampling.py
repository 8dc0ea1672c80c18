"""Tests for nftkit.train.sampling: timestep grids, ODE solvers, the FlowGRPO SDE step."""

from __future__ import annotations

import math

import pytest
import torch

from nftkit.train.sampling import (
    dpm_solver2_ode,
    euler_ode,
    flow_sde_step,
    sample,
    timesteps,
)

# Exact case: data x0 ~ N(MU, S^2) per dimension, noise eps ~ N(0, 1). The marginal of x_t is
# N((1 - t) MU, sig(t)^2) with sig(t)^2 = (1 - t)^2 S^2 + t^2, and the probability-flow ODE
# maps quantiles: x(t) = (1 - t) MU + sig(t) z. Differentiating gives the exact velocity
# v(x, t) = -MU + sig'(t) / sig(t) * (x - (1 - t) MU), sig'(t) = (t - (1 - t) S^2) / sig(t),
# and the exact end point from x(1) = z is x(0) = MU + S * z.
MU, S = 0.3, 0.5


def gaussian_velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    t = t.to(torch.float64).reshape(-1, *([1] * (x.ndim - 1)))
    sig2 = (1 - t) ** 2 * S**2 + t**2
    dsig_over_sig = (t - (1 - t) * S**2) / sig2
    return (-MU + dsig_over_sig * (x.to(torch.float64) - (1 - t) * MU)).to(x.dtype)


def x_T_and_exact() -> tuple[torch.Tensor, torch.Tensor]:
    z = torch.linspace(-2.0, 2.0, 5, dtype=torch.float64).reshape(5, 1)
    return z, MU + S * z


def max_err(solver, n: int, shift: float = 1.0) -> float:
    z, exact = x_T_and_exact()
    return (solver(gaussian_velocity, z, timesteps(n, shift)) - exact).abs().max().item()


def test_timesteps_linear_and_shifted() -> None:
    assert torch.allclose(timesteps(4), torch.tensor([1.0, 0.75, 0.5, 0.25, 0.0]))
    # shift 3: t' = 3t / (1 + 2t): 0.75 -> 0.9, 0.5 -> 0.75, 0.25 -> 0.5
    assert torch.allclose(timesteps(4, shift=3.0), torch.tensor([1.0, 0.9, 0.75, 0.5, 0.0]))
    assert timesteps(10).dtype == torch.float32
    assert timesteps(10).shape == (11,)
    with pytest.raises(ValueError):
        timesteps(0)


def test_euler_one_step_by_hand() -> None:
    # one step from t=1: x0 = x - v(x, 1) = x - (x - MU) = MU for every start point
    z, _ = x_T_and_exact()
    out = euler_ode(gaussian_velocity, z, timesteps(1))
    assert torch.allclose(out, torch.full_like(z, MU))


def test_euler_is_first_order() -> None:
    e16, e32, e64 = (max_err(euler_ode, n) for n in (16, 32, 64))
    assert 1.8 < e16 / e32 < 2.2
    assert 1.8 < e32 / e64 < 2.2


def test_dpm2_first_order_at_first_and_last_step() -> None:
    z, _ = x_T_and_exact()
    for n in (1, 2):
        ts = timesteps(n)
        assert torch.allclose(
            dpm_solver2_ode(gaussian_velocity, z, ts), euler_ode(gaussian_velocity, z, ts)
        )


def test_dpm2_second_order_correction_by_hand() -> None:
    # velocity v(x, t) = x on the grid 0.8 -> 0.6 -> 0.4 -> 0 from x = 1
    ts = torch.tensor([0.8, 0.6, 0.4, 0.0], dtype=torch.float64)
    x = torch.ones(1, 1, dtype=torch.float64)
    out = dpm_solver2_ode(lambda x, t: x, x, ts)
    d0 = 1.0 - 0.8 * 1.0  # x0 prediction at t=0.8
    x1 = 0.6 / 0.8 * 1.0 + (1 - 0.6 / 0.8) * d0  # first order step
    d1 = x1 - 0.6 * x1
    lam = lambda t: math.log((1 - t) / t)  # noqa: E731
    h, h_last = lam(0.4) - lam(0.6), lam(0.6) - lam(0.8)
    d_corr = d1 + h / (2 * h_last) * (d1 - d0)
    x2 = 0.4 / 0.6 * x1 + (1 - 0.4 / 0.6) * d_corr
    x3 = x2 - 0.4 * x2  # last step: first order, lands on the x0 prediction
    assert x1 == pytest.approx(0.8)
    assert out.item() == pytest.approx(x3, rel=1e-12)
    # and it is not the Euler answer
    assert abs(euler_ode(lambda x, t: x, x, ts).item() - x3) > 1e-3


def test_dpm2_much_more_accurate_than_euler() -> None:
    for shift in (1.0, 3.0):
        assert max_err(dpm_solver2_ode, 32, shift) < max_err(euler_ode, 32, shift) / 5
    assert max_err(dpm_solver2_ode, 16) < max_err(euler_ode, 16) / 4
    # asymptotically second order: halving h cuts the error by ~4
    assert max_err(dpm_solver2_ode, 64) / max_err(dpm_solver2_ode, 128) > 3.0


def test_solvers_keep_dtype_and_pass_float_timesteps() -> None:
    seen = []

    def vf(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        seen.append((t.dtype, tuple(t.shape)))
        return x

    x = torch.ones(3, 2, dtype=torch.bfloat16)
    for solver in ("euler", "dpm2", "sde"):
        out = sample(vf, x, 4, solver=solver, generator=torch.Generator().manual_seed(0))
        assert out.dtype == torch.bfloat16
    assert set(seen) == {(torch.float32, (3,))}


def test_bad_grid_rejected() -> None:
    x = torch.zeros(1, 1)
    with pytest.raises(ValueError, match="decreasing"):
        euler_ode(lambda x, t: x, x, torch.tensor([0.0, 1.0]))


def test_flow_sde_step_mean_std_by_hand() -> None:
    x = torch.tensor([[1.0, -2.0], [0.5, 3.0]], dtype=torch.float64)
    v = torch.tensor([[0.25, 1.0], [-1.0, 2.0]], dtype=torch.float64)
    t = torch.tensor([1.0, 0.5])
    t_next = torch.tensor([0.8, 0.25])
    prev = torch.tensor([[0.9, -1.0], [0.7, 2.0]], dtype=torch.float64)
    x_next, log_prob, mean, std = flow_sde_step(x, v, t, t_next, noise_level=0.7, prev_sample=prev)
    # sample 0: t=1 -> the denominator uses t_next: sigma = 0.7 * sqrt(1 / 0.2), sigma^2 = 2.45,
    # dt = -0.2: mean = x * (1 - 2.45 / 2 * 0.2) + v * (1 + 0) * (-0.2) = 0.755 x - 0.2 v
    # sample 1: sigma = 0.7 * sqrt(0.5 / 0.5) = 0.7, dt = -0.25:
    # mean = x * (1 - 0.49 * 0.25) + v * (1 + 0.49 * 0.5) * (-0.25) = 0.8775 x - 0.31125 v
    exp_mean = torch.stack([0.755 * x[0] - 0.2 * v[0], 0.8775 * x[1] - 0.31125 * v[1]])
    assert torch.allclose(mean, exp_mean)
    assert torch.allclose(
        std.flatten(), torch.tensor([0.7 * math.sqrt(5.0), 0.7], dtype=torch.float64)
    )
    assert std.shape == (2, 1)
    # transition stds: sqrt(2.45 * 0.2) = 0.7 and 0.7 * 0.5 = 0.35
    step_std = torch.tensor([[0.7], [0.35]], dtype=torch.float64)
    normal = torch.distributions.Normal(exp_mean, step_std.expand(2, 2))
    assert torch.allclose(log_prob, normal.log_prob(prev).mean(dim=1))
    assert x_next is prev


def test_flow_sde_step_draws_with_generator() -> None:
    x = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])  # [1, 2, 2]
    v = torch.full_like(x, 0.5)
    out, log_prob, mean, _ = flow_sde_step(
        x, v, 0.5, 0.25, noise_level=0.7, generator=torch.Generator().manual_seed(7)
    )
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(7))
    assert torch.allclose(out, 0.8775 * x - 0.31125 * v + 0.35 * noise)
    assert torch.allclose(mean, 0.8775 * x - 0.31125 * v)
    expected = torch.distributions.Normal(mean, 0.35).log_prob(out).mean(dim=(1, 2))
    assert log_prob.shape == (1,)
    assert torch.allclose(log_prob, expected)
    # same generator seed -> same sample
    again, *_ = flow_sde_step(x, v, 0.5, 0.25, generator=torch.Generator().manual_seed(7))
    assert torch.equal(out, again)
    with pytest.raises(ValueError):
        flow_sde_step(x, v, 0.25, 0.5)


def test_sample_dispatch() -> None:
    z, _ = x_T_and_exact()
    assert torch.equal(
        sample(gaussian_velocity, z, 6, solver="euler", shift=2.0),
        euler_ode(gaussian_velocity, z, timesteps(6, 2.0)),
    )
    assert torch.equal(
        sample(gaussian_velocity, z, 6, solver="dpm2"),
        dpm_solver2_ode(gaussian_velocity, z, timesteps(6)),
    )
    s1 = sample(gaussian_velocity, z, 6, solver="sde", generator=torch.Generator().manual_seed(1))
    s2 = sample(gaussian_velocity, z, 6, solver="sde", generator=torch.Generator().manual_seed(1))
    s3 = sample(gaussian_velocity, z, 6, solver="sde", generator=torch.Generator().manual_seed(2))
    assert torch.equal(s1, s2)
    assert not torch.allclose(s1, s3)
    # vanishing noise level: the SDE mean is an Euler step
    quiet = sample(gaussian_velocity, z, 6, solver="sde", noise_level=1e-6)
    assert torch.allclose(quiet, euler_ode(gaussian_velocity, z, timesteps(6)), atol=1e-6)
    with pytest.raises(ValueError, match="dpm2, euler, sde"):
        sample(gaussian_velocity, z, 6, solver="heun")
