"""Tests for nftkit.train.nft_loss and nftkit.train.schedules (hand-computed values)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from nftkit.train.nft_loss import (
    adaptive_x0_loss,
    forward_noise,
    implicit_policies,
    nft_loss,
    training_timestep_indices,
    velocity_loss,
)
from nftkit.train.schedules import (
    EmaWeights,
    ema_decay,
    old_policy_decay,
    soft_update_,
)

f64 = torch.float64


def t64(*rows: list[float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=f64)


# --- timestep indices and forward process ---------------------------------------------------


def test_training_timestep_indices() -> None:
    idx = training_timestep_indices(10, 3, generator=torch.Generator().manual_seed(0))
    assert idx.dtype == torch.long
    assert idx.shape == (3, 9)  # int(0.99 * 10) = 9
    for row in idx.tolist():
        assert len(set(row)) == 9 and set(row) <= set(range(10))
    assert len({tuple(r) for r in idx.tolist()}) > 1  # per-sample permutations
    again = training_timestep_indices(10, 3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(idx, again)
    assert training_timestep_indices(40, 2, fraction=0.5).shape == (2, 20)
    assert training_timestep_indices(1, 2, fraction=1.0).tolist() == [[0], [0]]
    with pytest.raises(ValueError):
        training_timestep_indices(10, 2, fraction=0.05)


def test_forward_noise_per_sample_t() -> None:
    x0 = torch.tensor([[[2.0]], [[2.0]]])  # [2, 1, 1]
    eps = torch.tensor([[[4.0]], [[-2.0]]])
    out = forward_noise(x0, torch.tensor([0.25, 1.0]), eps)
    assert torch.allclose(out.flatten(), torch.tensor([0.75 * 2 + 0.25 * 4, -2.0]))


def test_implicit_policies() -> None:
    v, v_old = torch.tensor([2.0, -1.0]), torch.tensor([1.0, 3.0])
    pos, neg = implicit_policies(v, v_old, 0.1)
    assert torch.allclose(pos, torch.tensor([0.1 * 2 + 0.9 * 1, 0.1 * -1 + 0.9 * 3]))
    assert torch.allclose(neg, torch.tensor([1.1 * 1 - 0.1 * 2, 1.1 * 3 - 0.1 * -1]))
    pos1, neg1 = implicit_policies(v, v_old, 1.0)
    assert torch.equal(pos1, v) and torch.allclose(neg1, 2 * v_old - v)


# --- adaptive x0 loss -----------------------------------------------------------------------


def test_adaptive_x0_loss_by_hand_with_clip() -> None:
    t = torch.tensor([0.5, 0.5])
    x0 = torch.zeros(2, 2, dtype=f64)
    x_t = t64([1.0, 1.0], [0.0, 0.0])
    err = t64([0.5, -1.5], [1e-6, -1e-6])  # wanted x0_hat - x0
    v = ((x_t - err) / 0.5).requires_grad_(True)  # x0_hat = x_t - t v = err
    loss = adaptive_x0_loss(v, x_t, x0, t)
    # sample 0: mse (0.25 + 2.25) / 2 = 1.25, weight mean|err| = 1.0
    # sample 1: mse 1e-12, weight 1e-6 clipped to 1e-5 -> 1e-7
    assert loss.shape == (2,)
    assert loss[0].item() == pytest.approx(1.25)
    assert loss[1].item() == pytest.approx(1e-7, rel=1e-6)
    # the weight is a constant: d loss0 / d v = 2 err (-t) / (n w) = -0.5 err
    loss[0].backward()
    assert torch.allclose(v.grad[0], torch.tensor([-0.25, 0.75], dtype=f64))
    assert torch.allclose(v.grad[1], torch.zeros(2, dtype=f64))


def test_adaptive_weight_is_float64_and_result_float32() -> None:
    x0 = torch.zeros(1, 4, dtype=torch.bfloat16)
    x_t = torch.ones(1, 4, dtype=torch.bfloat16)
    v = torch.ones(1, 4, dtype=torch.bfloat16)  # x0_hat = 1 - 0.5 = 0.5
    loss = adaptive_x0_loss(v, x_t, x0, torch.tensor([0.5]))
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(0.25 / 0.5)


def test_velocity_loss() -> None:
    v = t64([1.0, 2.0, 3.0])
    target = t64([0.0, 2.0, 5.0])
    assert velocity_loss(v, target).item() == pytest.approx((1 + 0 + 4) / 3)


# --- full NFT loss --------------------------------------------------------------------------
# One sample, two dims: x0 = 0, x_t = (1, 1), t = 0.5, v = (2, 0), v_old = (1, 0.5).


def one_sample() -> dict[str, torch.Tensor]:
    return {
        "x_t": t64([1.0, 1.0]),
        "x0": t64([0.0, 0.0]),
        "eps": t64([2.0, 2.0]),
        "t": torch.tensor([0.5]),
    }


def test_nft_loss_beta_one_by_hand() -> None:
    d = one_sample()
    v, v_old = t64([2.0, 0.0]), t64([1.0, 0.5])
    # v_pos = v -> x0_hat = (0, 1): mse 0.5, w 0.5 -> L_pos = 1
    # v_neg = 2 v_old - v = (0, 1) -> x0_hat = (1, 0.5): mse 0.625, w 0.75 -> L_neg = 5/6
    l_pos, l_neg = 1.0, 0.625 / 0.75
    for r, expected in [
        (1.0, 5 * l_pos),
        (0.0, 5 * l_neg),
        (0.25, 5 * (0.25 * l_pos + 0.75 * l_neg)),
    ]:
        loss, diag = nft_loss(v, v_old, None, r=torch.tensor([r]), beta=1.0, ref_weight=0.0, **d)
        assert loss.item() == pytest.approx(expected)
        assert diag["loss_pos"] == pytest.approx(l_pos)
        assert diag["loss_neg"] == pytest.approx(l_neg)
        assert diag["ref_loss"] == 0.0


def test_nft_loss_beta_half_and_reference_term() -> None:
    d = one_sample()
    v, v_old, v_ref = t64([2.0, 0.0]), t64([1.0, 0.5]), t64([0.0, 0.0])
    # v_pos = 0.5 v + 0.5 v_old = (1.5, 0.25) -> x0_hat = (0.25, 0.875)
    l_pos = ((0.25**2 + 0.875**2) / 2) / ((0.25 + 0.875) / 2)
    # v_neg = 1.5 v_old - 0.5 v = (0.5, 0.75) -> x0_hat = (0.75, 0.625)
    l_neg = ((0.75**2 + 0.625**2) / 2) / ((0.75 + 0.625) / 2)
    ref = (2.0**2 + 0.0) / 2  # mean((v - v_ref)^2)
    r = 0.8
    loss, diag = nft_loss(v, v_old, v_ref, r=torch.tensor([r]), beta=0.5, ref_weight=0.1, **d)
    policy = 5 * (r * l_pos + (1 - r) * l_neg) / 0.5  # the 5 / beta scale
    assert diag["policy_loss"] == pytest.approx(policy)
    assert diag["ref_loss"] == pytest.approx(ref)
    assert loss.item() == pytest.approx(policy + 0.1 * ref)
    assert diag["loss"] == pytest.approx(policy + 0.1 * ref)
    assert diag["old_deviation"] == pytest.approx((1.0 + 0.25) / 2)


def test_nft_loss_batch_mean_and_broadcast_over_chw() -> None:
    g = torch.Generator().manual_seed(0)
    shape = (3, 2, 2, 2)
    v, v_old, v_ref, x0, eps = (torch.randn(shape, generator=g, dtype=f64) for _ in range(5))
    t = torch.tensor([0.2, 0.5, 0.9])
    r = torch.tensor([0.0, 0.5, 1.0], dtype=f64)
    x_t = forward_noise(x0, t, eps)
    loss, _ = nft_loss(v, v_old, v_ref, x_t, x0, eps, t, r, beta=0.3, ref_weight=1e-4)
    per_sample = []
    for b in range(3):
        one = [a[b : b + 1] for a in (v, v_old, v_ref, x_t, x0, eps)]
        lb, _ = nft_loss(*one, t[b : b + 1], r[b : b + 1], beta=0.3, ref_weight=0.0)
        per_sample.append(lb.item())
    expected = sum(per_sample) / 3 + 1e-4 * ((v - v_ref) ** 2).mean().item()
    assert loss.item() == pytest.approx(expected)


def test_nft_loss_gradients_only_into_v() -> None:
    d = one_sample()
    v = t64([2.0, 0.0]).requires_grad_(True)
    v_old = t64([1.0, 0.5]).requires_grad_(True)
    v_ref = t64([0.0, 0.0]).requires_grad_(True)
    loss, _ = nft_loss(v, v_old, v_ref, r=torch.tensor([1.0]), beta=1.0, ref_weight=0.1, **d)
    loss.backward()
    assert v_old.grad is None and v_ref.grad is None
    # r=1, beta=1: loss = 5 * mean(err^2) / w + 0.1 * mean(v^2), err = x_t - 0.5 v, w const 0.5
    # d/dv = 5 * 2 err (-0.5) / (2 * 0.5) + 0.1 * 2 v / 2 = -5 err + 0.1 v, err = (0, 1)
    assert torch.allclose(v.grad, torch.tensor([0.2, -5.0], dtype=f64))


def test_nft_loss_velocity_weighting() -> None:
    d = one_sample()
    v, v_old = t64([2.0, 0.0]), t64([1.0, 0.5])
    # target = eps - x0 = (2, 2); beta 1, r 1: 5 * mean((v - target)^2) = 5 * (0 + 4) / 2
    loss, _ = nft_loss(
        v, v_old, None, r=torch.tensor([1.0]), beta=1.0, ref_weight=0.0, weighting="velocity", **d
    )
    assert loss.item() == pytest.approx(10.0)
    # r 0: v_neg = (0, 1): 5 * (4 + 1) / 2
    loss, _ = nft_loss(
        v, v_old, None, r=torch.tensor([0.0]), beta=1.0, ref_weight=0.0, weighting="velocity", **d
    )
    assert loss.item() == pytest.approx(12.5)


def test_nft_loss_rejects_bad_input() -> None:
    d = one_sample()
    v = t64([2.0, 0.0])
    with pytest.raises(ValueError, match="weighting"):
        nft_loss(v, v, None, r=torch.tensor([1.0]), beta=1.0, ref_weight=0, weighting="x", **d)
    with pytest.raises(ValueError, match="beta"):
        nft_loss(v, v, None, r=torch.tensor([1.0]), beta=0.0, ref_weight=0, **d)
    with pytest.raises(ValueError, match="v_ref"):
        nft_loss(v, v, None, r=torch.tensor([1.0]), beta=1.0, ref_weight=1e-4, **d)
    with pytest.raises(ValueError, match="r must"):
        nft_loss(v, v, None, r=torch.tensor([1.0, 0.0]), beta=1.0, ref_weight=0, **d)


# --- schedules ------------------------------------------------------------------------------


def test_old_policy_decay_schedules() -> None:
    assert old_policy_decay(0) == 0.0
    assert old_policy_decay(100) == pytest.approx(0.1)
    assert old_policy_decay(500) == pytest.approx(0.5)
    assert old_policy_decay(2000) == 0.5
    assert old_policy_decay(74, "ocr") == 0.0
    assert old_policy_decay(75, "ocr") == 0.0
    assert old_policy_decay(76, "ocr") == pytest.approx(0.0075)
    assert old_policy_decay(175, "ocr") == pytest.approx(0.75)
    assert old_policy_decay(208, "ocr") == pytest.approx(0.9975)
    assert old_policy_decay(300, "ocr") == 0.999
    assert old_policy_decay(300, "zero") == 0.0
    with pytest.raises(ValueError, match="default, ocr, zero"):
        old_policy_decay(1, "cosine")


def test_ema_decay_values() -> None:
    assert ema_decay(0) == pytest.approx(0.1)
    assert ema_decay(1) == pytest.approx(2 / 11)
    assert ema_decay(10) == pytest.approx(0.55)
    assert ema_decay(71) == pytest.approx(72 / 81)
    assert ema_decay(80) == pytest.approx(0.9)
    assert ema_decay(10_000) == 0.9


def test_soft_update_by_hand() -> None:
    target = [torch.tensor([1.0, 2.0]), torch.tensor([[0.0]])]
    source = [torch.tensor([3.0, 4.0]), torch.tensor([[8.0]])]
    soft_update_(target, source, 0.25)
    assert torch.allclose(target[0], torch.tensor([0.25 + 2.25, 0.5 + 3.0]))
    assert torch.allclose(target[1], torch.tensor([[6.0]]))
    soft_update_(target, source, 0.0)  # eta 0: copy
    assert torch.equal(target[0], source[0])
    with pytest.raises(ValueError):
        soft_update_(target, source[:1], 0.5)


def test_ema_weights_update_copy_swap_and_state() -> None:
    p = torch.nn.Parameter(torch.tensor([1.0, 2.0], dtype=torch.bfloat16))
    ema = EmaWeights([p])
    assert ema.shadow[0].dtype == torch.float32
    with torch.no_grad():
        p.copy_(torch.tensor([3.0, 6.0]))
    assert ema.update([p], step=0) == pytest.approx(0.1)
    assert torch.allclose(ema.shadow[0], torch.tensor([0.1 * 1 + 0.9 * 3, 0.1 * 2 + 0.9 * 6]))
    with torch.no_grad():
        p.zero_()
    ema.update([p], step=10)  # decay 0.55
    expected = 0.55 * torch.tensor([2.8, 5.6])
    assert torch.allclose(ema.shadow[0], expected)

    with ema.swapped_in([p]):
        assert torch.allclose(p.float(), expected, atol=1e-2)  # bf16 rounding
    assert torch.equal(p, torch.zeros(2, dtype=torch.bfloat16))
    with pytest.raises(RuntimeError), ema.swapped_in([p]):
        raise RuntimeError("boom")
    assert torch.equal(p, torch.zeros(2, dtype=torch.bfloat16))

    blob = st_save(ema.state_dict())
    other = EmaWeights([torch.zeros(2)])
    other.load_state_dict(st_load(blob))
    assert torch.equal(other.shadow[0], ema.shadow[0])
    q = torch.zeros(2)
    other.copy_to([q])
    assert torch.equal(q, expected.float())
    with pytest.raises(ValueError):
        other.load_state_dict({"1": torch.zeros(2)})
    with pytest.raises(ValueError):
        other.update([torch.zeros(3)], step=0)
