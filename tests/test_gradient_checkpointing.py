"""Gradient checkpointing on every tiny diffusers family: on when asked, same LoRA gradients."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nftkit.policies.loading import load_policy
from nftkit.train.lora import adapter_parameters, add_nft_adapters
from tests.family_helpers import PROMPTS, invoke


def _lora_grads(policy: object, cond: object, x_t: torch.Tensor) -> dict[str, torch.Tensor | None]:
    model = policy.model  # type: ignore[attr-defined]
    params = adapter_parameters(model, "default")
    for p in params.values():
        p.grad = None
    t = torch.full((x_t.shape[0],), 0.6)
    policy.velocity(x_t, t, cond, adapter="default").square().mean().backward()  # type: ignore[attr-defined]
    # a LoRA whose output the loss never reads (the last block's text stream) has no gradient
    return {k: None if p.grad is None else p.grad.clone() for k, p in params.items()}


@pytest.mark.parametrize("family", ["sd3", "flux", "qwen-image", "sana"])
def test_checkpointed_gradients_equal_plain_ones(tmp_path: Path, family: str) -> None:
    invoke("debug", "make-tiny", "--family", family, str(tmp_path / family))
    policy = load_policy(tmp_path / family, gradient_checkpointing=True)
    model = policy.model
    assert model.is_gradient_checkpointing
    torch.manual_seed(0)
    add_nft_adapters(model, policy.lora_targets, rank=4, alpha=8)
    for p in adapter_parameters(model, "default").values():  # B != 0 so A gets a gradient too
        torch.nn.init.normal_(p, std=0.05)
    cond = policy.encode_prompts(PROMPTS[:2])
    x_t = torch.randn(2, *policy.latent_shape, generator=torch.Generator().manual_seed(1))
    model.train()
    checkpointed = _lora_grads(policy, cond, x_t)
    model.disable_gradient_checkpointing()
    assert not model.is_gradient_checkpointing
    plain = _lora_grads(policy, cond, x_t)
    assert checkpointed.keys() == plain.keys() and len(plain) > 0
    assert sum(g is not None and bool(g.abs().sum() > 0) for g in plain.values()) > len(plain) / 2
    for name, grad in plain.items():
        if grad is None:
            assert checkpointed[name] is None, name
        else:
            torch.testing.assert_close(checkpointed[name], grad, rtol=1e-4, atol=1e-6)
