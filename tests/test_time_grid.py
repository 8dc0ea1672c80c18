"""The policy's own time grid (issue 18, item 2) and the adv_clip / beta loss scale (item 5).

Expected grids are computed here from the formula of REFERENCE.md section 7 (diffusers'
FlowMatchEulerDiscreteScheduler.set_timesteps): with f(u) = s u / (1 + (s - 1) u),
sigmas = f(linspace(1, f(1/1000), N)) followed by 0.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from nftkit.policies.base import check_time_grid, policy_time_grid
from nftkit.policies.sd3 import SD3Policy
from nftkit.policies.shapes import ShapesPolicy
from nftkit.train.nft_loss import nft_loss
from nftkit.train.sampling import euler_ode, sample, timesteps

# SD3.5-M, shift 3, 10 steps, as listed in REFERENCE.md section 7
REFERENCE_N10 = [1.0, 0.960, 0.913, 0.858, 0.790, 0.707, 0.602, 0.465, 0.278, 0.0089, 0.0]


def formula_grid(num_steps: int, shift: float) -> np.ndarray:
    def f(u: np.ndarray | float) -> np.ndarray | float:
        return shift * u / (1.0 + (shift - 1.0) * u)

    return np.append(f(np.linspace(1.0, f(1.0 / 1000.0), num_steps)), 0.0)


def _scheduler_policy(shift: float) -> SimpleNamespace:
    from diffusers import FlowMatchEulerDiscreteScheduler

    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=shift)
    return SimpleNamespace(pipeline=SimpleNamespace(scheduler=scheduler))


@pytest.mark.parametrize("num_steps", [10, 25, 40])
def test_sd3_grid_is_the_scheduler_formula(num_steps: int) -> None:
    grid = SD3Policy.time_grid(_scheduler_policy(3.0), num_steps)  # type: ignore[arg-type]
    assert grid.dtype == torch.float64 and grid.shape == (num_steps + 1,)
    np.testing.assert_allclose(grid.numpy(), formula_grid(num_steps, 3.0), rtol=0, atol=1e-6)
    assert grid[-1] == 0 and grid[0] == 1 and bool((grid[1:] < grid[:-1]).all())
    # the low end is shifted twice: f(f(1/1000)) with s = 3 is 0.0089, far below nftkit's old
    # shift(linspace) value 3 (1/N) / (1 + 2/N)
    old_last = 3.0 / num_steps / (1.0 + 2.0 / num_steps)
    assert float(grid[-2]) == pytest.approx(0.008929, abs=1e-5) and old_last > 0.07


def test_sd3_grid_at_ten_steps_matches_the_reference_values() -> None:
    grid = SD3Policy.time_grid(_scheduler_policy(3.0), 10).tolist()  # type: ignore[arg-type]
    for ours, listed in zip(grid, REFERENCE_N10, strict=True):
        decimals = 4 if listed == 0.0089 else 3
        assert ours == pytest.approx(listed, abs=0.5 * 10**-decimals)


def test_policy_time_grid_prefers_the_policy_and_falls_back() -> None:
    sd3 = _scheduler_policy(3.0)
    sd3.time_grid = lambda n: SD3Policy.time_grid(sd3, n)  # type: ignore[arg-type]
    np.testing.assert_allclose(policy_time_grid(sd3, 10).numpy(), formula_grid(10, 3.0), atol=1e-6)
    # an explicit shift forces nftkit's shifted linspace grid: 3 t / (1 + 2 t) at t = 0.5 is 0.75
    assert float(policy_time_grid(sd3, 2, shift=3.0)[1]) == pytest.approx(0.75)
    plain = SimpleNamespace()  # no time_grid: the uniform grid
    assert policy_time_grid(plain, 4).tolist() == [1.0, 0.75, 0.5, 0.25, 0.0]


def test_the_shapes_world_keeps_its_uniform_grid() -> None:
    grid = ShapesPolicy.time_grid(None, 10)  # type: ignore[arg-type]
    assert grid.dtype == torch.float64
    assert torch.equal(grid, timesteps(10, 1.0).double())  # what it trained on before


def test_bad_grids_are_refused() -> None:
    with pytest.raises(ValueError, match="expected 4"):
        check_time_grid(torch.tensor([1.0, 0.5, 0.0]), 3)
    with pytest.raises(ValueError, match="exactly 0"):
        check_time_grid(torch.tensor([1.0, 0.5, 0.1]), 2)
    with pytest.raises(ValueError, match="decrease"):
        check_time_grid(torch.tensor([1.0, 0.5, 0.6, 0.0]), 3)


def test_sample_integrates_along_the_given_grid() -> None:
    grid = torch.tensor(formula_grid(4, 3.0))
    x = torch.randn(2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    seen: list[float] = []

    def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        seen.append(float(t[0]))
        return -x

    out = sample(velocity, x, 4, "euler", grid=grid)
    assert seen == pytest.approx(grid[:-1].tolist())
    # Euler with v = -x: x <- x (1 - (t_next - t)) on each step
    pairs = zip(grid[:-1].tolist(), grid[1:].tolist(), strict=True)
    factor = np.prod([1.0 - (b - a) for a, b in pairs])
    torch.testing.assert_close(out, x * factor)
    torch.testing.assert_close(out, euler_ode(velocity, x, grid))
    with pytest.raises(ValueError, match="5 entries"):
        sample(velocity, x, 3, "euler", grid=grid)


def test_loss_scale_is_adv_clip_over_beta() -> None:
    # adaptive weighting with v_old = v, beta = 0.5: L_pos = L_neg = mean(e^2) / mean|e| for
    # e = x0_hat - x0; policy loss = adv_clip * mean_B[(r L + (1 - r) L) / beta] = adv_clip L / beta
    g = torch.Generator().manual_seed(1)
    x0, eps = torch.randn(3, 4, generator=g), torch.randn(3, 4, generator=g)
    t = torch.tensor([0.2, 0.5, 0.9])
    x_t = (1 - t[:, None]) * x0 + t[:, None] * eps
    v = torch.randn(3, 4, generator=g)
    r = torch.tensor([0.1, 0.5, 1.0])
    err = x_t - t[:, None] * v - x0
    per_sample = (err**2).mean(1) / err.abs().mean(1)
    expected = 3.0 * (per_sample / 0.5).mean()
    loss, diag = nft_loss(
        v, v.clone(), None, x_t, x0, eps, t, r, beta=0.5, ref_weight=0.0, adv_clip=3.0
    )
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)
    default, _ = nft_loss(v, v.clone(), None, x_t, x0, eps, t, r, beta=0.5, ref_weight=0.0)
    assert float(default) == pytest.approx(float(expected) * 5.0 / 3.0, rel=1e-6)
    assert diag["policy_loss"] == pytest.approx(float(expected), rel=1e-6)
