"""Tests for nftkit.train.lora: the two-adapter LoRA scheme on plain and diffusers modules."""

from __future__ import annotations

import copy

import pytest
import torch
from peft import get_peft_model_state_dict
from torch import nn

from nftkit.train import lora
from nftkit.train.lora import (
    adapter_parameters,
    add_nft_adapters,
    load_adapter_parameters,
    lora_state_dict_for_diffusers,
    soft_update_adapter,
    use_adapter,
)

TARGETS = ["block.proj", "out"]


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block = nn.ModuleDict({"proj": nn.Linear(4, 6)})
        self.out = nn.Linear(6, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.tanh(self.block["proj"](x)))


@pytest.fixture(params=[True, False], ids=["fast-switch", "public-switch"])
def switch_mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    """Run a test with both adapter-switching paths of use_adapter."""
    monkeypatch.setattr(lora, "_FAST_SWITCH", request.param)
    return request.param


def make(seed: int = 0) -> tuple[nn.Module, nn.Module, torch.Tensor]:
    torch.manual_seed(seed)
    model = Tiny()
    base = copy.deepcopy(model)
    add_nft_adapters(model, TARGETS, rank=2, alpha=4)
    return model, base, torch.randn(5, 4)


def randomize(model: nn.Module, name: str, seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in adapter_parameters(model, name).values():
            p.copy_(torch.randn(p.shape, generator=g))


def lora_grad_flags(model: nn.Module) -> dict[str, bool]:
    return {n: p.requires_grad for n, p in model.named_parameters()}


def test_after_init_old_equals_default_and_only_default_trains() -> None:
    model, base, x = make()
    default, old = adapter_parameters(model, "default"), adapter_parameters(model, "old")
    assert list(default) == [
        "block.proj.lora_A.weight",
        "block.proj.lora_B.weight",
        "out.lora_A.weight",
        "out.lora_B.weight",
    ]
    assert list(old) == list(default)
    for key in default:
        assert torch.equal(default[key], old[key])
        assert default[key] is not old[key]
        assert default[key].dtype == torch.float32
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {
        "block.proj.lora_A.default.weight",
        "block.proj.lora_B.default.weight",
        "out.lora_A.default.weight",
        "out.lora_B.default.weight",
    }
    # gaussian init: B = 0, every adapter starts as the base model
    with torch.no_grad():
        assert torch.allclose(model(x), base(x))


def test_use_adapter_switches_and_restores(switch_mode: bool) -> None:
    model, base, x = make()
    randomize(model, "default", 1)
    randomize(model, "old", 2)
    flags = lora_grad_flags(model)
    with torch.no_grad():
        y_default = model(x)  # resting state: default active
        with use_adapter(model, None):
            y_ref = model(x)
        with use_adapter(model, "old"):
            y_old = model(x)
            with use_adapter(model, None):
                assert torch.equal(model(x), y_ref)
            assert torch.equal(model(x), y_old)  # nested exit restores "old"
        assert torch.equal(model(x), y_default)
        with use_adapter(model, "default"):
            assert torch.equal(model(x), y_default)
        assert torch.allclose(y_ref, base(x))  # adapters off == model before injection
        assert not torch.allclose(y_old, y_default)
        assert not torch.allclose(y_default, y_ref)
        # restores after an exception too
        with pytest.raises(RuntimeError), use_adapter(model, None):
            raise RuntimeError("boom")
        assert torch.equal(model(x), y_default)
    assert lora_grad_flags(model) == flags
    with pytest.raises(ValueError, match="default, old"), use_adapter(model, "nope"):
        pass


def test_use_adapter_never_touches_requires_grad(switch_mode: bool) -> None:
    model, _, x = make()
    resting = lora_grad_flags(model)
    for name in (None, "old", "default"):
        with use_adapter(model, name):
            assert lora_grad_flags(model) == resting  # inside the block too
            with use_adapter(model, None):
                assert lora_grad_flags(model) == resting
        assert lora_grad_flags(model) == resting
    # a caller who froze the trained adapter keeps it frozen through switches
    for p in adapter_parameters(model, "default").values():
        p.requires_grad_(False)
    frozen = lora_grad_flags(model)
    with use_adapter(model, "default"):
        model(x)
        assert lora_grad_flags(model) == frozen
    with use_adapter(model, None):
        pass
    assert lora_grad_flags(model) == frozen


def test_optimizer_step_moves_default_only(switch_mode: bool) -> None:
    model, base, x = make()
    randomize(model, "default", 3)
    load_adapter_parameters(model, "old", adapter_parameters(model, "default"))
    with torch.no_grad(), use_adapter(model, "old"):
        y_old_before = model(x)
    trainable = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(trainable, lr=0.1)
    with use_adapter(model, "default"):
        loss = model(x).pow(2).mean()
    with torch.no_grad(), use_adapter(model, "old"):
        old_out = model(x)  # an old-policy forward between forward and backward
    loss.backward()
    assert all(p.grad is None for p in adapter_parameters(model, "old").values())
    assert all(p.grad is not None for p in adapter_parameters(model, "default").values())
    opt.step()
    with torch.no_grad():
        with use_adapter(model, "old"):
            assert torch.equal(model(x), y_old_before)
        with use_adapter(model, "default"):
            assert not torch.allclose(model(x), y_old_before)
        with use_adapter(model, None):
            assert torch.allclose(model(x), base(x))
    assert torch.equal(old_out, y_old_before)


def test_soft_update_adapter_by_hand() -> None:
    model, _, _ = make()
    with torch.no_grad():
        for p in adapter_parameters(model, "default").values():
            p.fill_(4.0)
        for p in adapter_parameters(model, "old").values():
            p.fill_(2.0)
    soft_update_adapter(model, target="old", source="default", eta=0.25)
    for p in adapter_parameters(model, "old").values():
        assert torch.allclose(p, torch.full_like(p, 0.25 * 2.0 + 0.75 * 4.0))
    for p in adapter_parameters(model, "default").values():
        assert torch.equal(p, torch.full_like(p, 4.0))
    assert not any(p.requires_grad for p in adapter_parameters(model, "old").values())


def test_load_adapter_parameters_checks_keys() -> None:
    model, _, _ = make()
    tensors = {k: torch.ones_like(v) for k, v in adapter_parameters(model, "old").items()}
    load_adapter_parameters(model, "old", tensors)
    assert all(
        torch.equal(p, torch.ones_like(p)) for p in adapter_parameters(model, "old").values()
    )
    tensors.pop("out.lora_B.weight")
    with pytest.raises(ValueError, match="missing"):
        load_adapter_parameters(model, "old", tensors)


def test_diffusers_state_dict_keys_and_folded_scale() -> None:
    model, _, _ = make()
    randomize(model, "default", 4)
    sd = lora_state_dict_for_diffusers(model, "default")
    peft_sd = get_peft_model_state_dict(model, adapter_name="default")
    assert sorted(sd) == sorted(f"transformer.{k}" for k in peft_sd)
    live = adapter_parameters(model, "default")
    scale = 4 / 2  # alpha / rank
    assert torch.equal(sd["transformer.out.lora_A.weight"], live["out.lora_A.weight"].detach())
    assert torch.allclose(sd["transformer.out.lora_B.weight"], scale * live["out.lora_B.weight"])
    raw = lora_state_dict_for_diffusers(model, "default", prefix=None, fold_scaling=False)
    assert torch.equal(raw["out.lora_B.weight"], live["out.lora_B.weight"].detach())


def test_bf16_base_keeps_fp32_lora() -> None:
    torch.manual_seed(0)
    model = Tiny().to(torch.bfloat16)
    add_nft_adapters(model, TARGETS, rank=2, alpha=4)
    assert all(p.dtype == torch.float32 for p in adapter_parameters(model, "default").values())
    assert model.out.base_layer.weight.dtype == torch.bfloat16
    randomize(model, "default", 5)
    y = model(torch.randn(2, 4, dtype=torch.bfloat16))
    assert y.dtype == torch.bfloat16
    y.float().sum().backward()
    assert adapter_parameters(model, "default")["out.lora_B.weight"].grad.dtype == torch.float32


def test_sd3_transformer_round_trip_through_diffusers() -> None:
    from diffusers import SD3Transformer2DModel

    torch.manual_seed(0)
    config = dict(
        sample_size=8, patch_size=2, in_channels=4, num_layers=2, attention_head_dim=8,
        num_attention_heads=2, joint_attention_dim=16, caption_projection_dim=16,
        pooled_projection_dim=8, out_channels=4, pos_embed_max_size=8,
    )  # fmt: skip
    model = SD3Transformer2DModel(**config).eval()
    fresh = copy.deepcopy(model)
    inputs = dict(
        hidden_states=torch.randn(2, 4, 8, 8),
        encoder_hidden_states=torch.randn(2, 5, 16),
        pooled_projections=torch.randn(2, 8),
        timestep=torch.tensor([500.0, 250.0]),
    )
    with torch.no_grad():
        y_base = model(**inputs).sample
    targets = ["attn.to_q", "attn.to_k", "attn.to_v", "attn.to_out.0", "attn.add_q_proj",
               "attn.add_k_proj", "attn.add_v_proj", "attn.to_add_out"]  # fmt: skip
    add_nft_adapters(model, targets, rank=4, alpha=8)
    # 2 blocks x 8 layers x (A, B), minus the last block's to_add_out (context_pre_only)
    assert len(adapter_parameters(model, "default")) == 30
    with torch.no_grad():
        for key, p in adapter_parameters(model, "default").items():
            if "lora_B" in key:
                p.normal_(0.0, 0.1)
        y_default = model(**inputs).sample
        with use_adapter(model, None):
            assert torch.allclose(model(**inputs).sample, y_base, atol=1e-6)
        with use_adapter(model, "old"):
            assert torch.allclose(model(**inputs).sample, y_base, atol=1e-6)
    assert not torch.allclose(y_default, y_base, atol=1e-3)
    fresh.load_lora_adapter(lora_state_dict_for_diffusers(model), prefix="transformer")
    with torch.no_grad():
        assert torch.allclose(fresh(**inputs).sample, y_default, atol=1e-5)


def test_fast_switch_bypasses_peft_setters(monkeypatch: pytest.MonkeyPatch) -> None:
    model, base, x = make()
    randomize(model, "default", 6)

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("peft setter called on the fast path")

    layer_cls = type(model.out)
    monkeypatch.setattr(layer_cls, "set_adapter", forbidden)
    monkeypatch.setattr(layer_cls, "enable_adapters", forbidden)
    with torch.no_grad():
        with use_adapter(model, None):
            assert torch.allclose(model(x), base(x))
        assert not torch.allclose(model(x), base(x))
