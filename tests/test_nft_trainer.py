"""The DiffusionNFT trainer end to end on a tiny random shapes model (CPU, seconds)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from nftkit.compose import RewardComposer
from nftkit.errors import UsageError
from nftkit.policies.loading import load_policy
from nftkit.shapes.prompts import split_prompts
from nftkit.train import checkpoint as ckpt
from nftkit.train.lora import adapter_parameters
from nftkit.train.nft import NFTConfig, NFTTrainer, PromptItem


def _config(**overrides: object) -> NFTConfig:
    base = dict(
        epochs=3,
        prompts_per_epoch=2,
        group_size=4,
        num_steps=4,
        sample_batch_size=8,
        train_batch_size=4,
        max_train_timesteps=2,
        lora_rank=4,
        lora_alpha=8,
        lr=1e-3,
        checkpoint_every=1,
        seed=3,
    )
    base.update(overrides)
    return NFTConfig.from_dict(base)


def _trainer(model_dir: Path, out: Path, config: NFTConfig) -> NFTTrainer:
    policy = load_policy(model_dir)
    policy.autocast_dtype = None  # exact float32 arithmetic for the equality checks
    train, _ = split_prompts()
    prompts = [PromptItem(m["prompt"], m) for m in train[:6]]
    return NFTTrainer(
        policy,
        RewardComposer("jpeg"),
        prompts,
        config,
        out,
        model_info={"family": "shapes", "base": str(model_dir)},
    )


def test_training_changes_default_adapter_only(tiny_model_dir: Path, tmp_path: Path) -> None:
    trainer = _trainer(tiny_model_dir, tmp_path, _config(epochs=1, eta_schedule="zero"))
    model = trainer.policy.model
    before_default = {k: v.clone() for k, v in adapter_parameters(model, "default").items()}
    base_before = {k: v.clone() for k, v in model.state_dict().items() if "lora_" not in k}
    record = trainer.run_epoch()
    after_default = adapter_parameters(model, "default")
    assert any(not torch.equal(before_default[k], after_default[k]) for k in after_default)
    base_after = {k: v for k, v in model.state_dict().items() if "lora_" not in k}
    assert all(torch.equal(base_before[k], base_after[k]) for k in base_before)
    # eta = 0 (fully on-policy): the old adapter equals the trained one after the epoch
    old = adapter_parameters(model, "old")
    assert all(torch.equal(old[k], after_default[k]) for k in old)
    assert record["step"] == 2  # 8 samples / batch 4 = 2 optimizer steps
    assert 0.0 <= record["r_mean"] <= 1.0


def test_resume_reaches_the_same_weights(tiny_model_dir: Path, tmp_path: Path) -> None:
    straight = _trainer(tiny_model_dir, tmp_path / "a", _config())
    for _ in range(3):
        straight.run_epoch()
    first = _trainer(tiny_model_dir, tmp_path / "b", _config())
    for _ in range(2):
        first.run_epoch()
    first.save_checkpoint()
    resumed = _trainer(tiny_model_dir, tmp_path / "b", _config())
    assert resumed.resume() and resumed.epoch == 2
    resumed.run_epoch()
    for name in ("default", "old"):
        a = adapter_parameters(straight.policy.model, name)
        b = adapter_parameters(resumed.policy.model, name)
        assert all(torch.equal(a[k], b[k]) for k in a), name
    assert torch.equal(straight.ema.state_dict()["0"], resumed.ema.state_dict()["0"])
    assert [h["reward_mean"] for h in straight.history] == [
        h["reward_mean"] for h in resumed.history
    ]


def test_incomplete_checkpoint_is_ignored(tmp_path: Path) -> None:
    good = ckpt.save_checkpoint(tmp_path, 1, {"t": {"x": torch.ones(2)}}, {"s": {"epoch": 1}})
    half = tmp_path / "step-0000002"
    half.mkdir()
    (half / "t.safetensors").write_bytes(b"truncated")
    assert ckpt.latest_checkpoint(tmp_path) == good
    assert ckpt.load_json(good, "s") == {"epoch": 1}
    for k in range(3, 6):
        ckpt.save_checkpoint(tmp_path, k, {"t": {"x": torch.ones(1)}}, {}, keep=2)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step-0000004", "step-0000005"]


def test_optimizer_state_round_trip() -> None:
    param = torch.nn.Parameter(torch.randn(3))
    opt = torch.optim.AdamW([param], lr=0.1)
    param.sum().backward()
    opt.step()
    tensors, meta = ckpt.optimizer_to_tensors(opt)
    fresh = torch.optim.AdamW([param], lr=0.5)
    ckpt.optimizer_from_tensors(fresh, tensors, meta)
    assert fresh.param_groups[0]["lr"] == 0.1
    assert torch.equal(fresh.state[param]["exp_avg"], opt.state[param]["exp_avg"])


def test_exported_adapter_reloads_as_tuned_model(tiny_model_dir: Path, tmp_path: Path) -> None:
    trainer = _trainer(tiny_model_dir, tmp_path, _config(epochs=1))
    trainer.run_epoch()
    trainer.export()
    tuned = load_policy(tmp_path)
    tuned.autocast_dtype = None
    x = torch.randn(2, 3, 32, 32)
    t = torch.tensor([0.3, 0.8])
    cond = tuned.encode_prompts(["a photo of a red circle"] * 2)
    with trainer.ema.swapped_in(trainer.trainable), torch.no_grad():
        expected = trainer.policy.velocity(x, t, cond, adapter="default")
    with torch.no_grad():
        got = tuned.velocity(x, t, cond, adapter="default")
        base = tuned.velocity(x, t, cond, adapter=None)
    assert torch.allclose(got, expected, atol=1e-5)
    assert not torch.allclose(got, base, atol=1e-6)


def test_high_noise_steps_trains_only_the_first_sampler_steps(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import nftkit.train.nft as nft_module

    seen: list[torch.Tensor] = []
    real = nft_module.forward_noise

    def recording(x0: torch.Tensor, t: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
        seen.append(t.detach().clone())
        return real(x0, t, eps)

    monkeypatch.setattr(nft_module, "forward_noise", recording)
    trainer = _trainer(tiny_model_dir, tmp_path, _config(epochs=1, num_steps=4, high_noise_steps=2))
    trainer.run_epoch()
    drawn = torch.cat(seen)
    assert set(drawn.tolist()) == set(trainer.ts[:2].tolist())  # both, and only, t >= ts[1]


def test_high_noise_steps_outside_the_schedule_is_refused() -> None:
    with pytest.raises(UsageError, match="high_noise_steps=12"):
        _config(num_steps=10, high_noise_steps=12)


def test_epoch_clock_steps_eta_and_the_ema_once_per_epoch(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    config = _config(epochs=2, group_size=8, schedule_clock="epoch")  # 4 optimizer steps/epoch
    trainer = _trainer(tiny_model_dir, tmp_path, config)
    calls: list[int] = []
    update = trainer.ema.update
    trainer.ema.update = lambda params, step: calls.append(step) or update(params, step)
    records = [trainer.run_epoch() for _ in range(2)]
    assert [r["step"] for r in records] == [4, 8]
    assert calls == [1, 2]  # once per epoch, indexed by epochs done (not 4 and 8)
    assert [r["eta"] for r in records] == pytest.approx([0.001, 0.002])  # default: 0.001 x epochs
    stepped = _trainer(tiny_model_dir, tmp_path / "s", _config(epochs=1, group_size=8))
    assert stepped.run_epoch()["eta"] == pytest.approx(0.004)  # the reference clock: 4 steps


def test_unknown_schedule_clock_is_refused() -> None:
    with pytest.raises(UsageError, match="schedule_clock"):
        _config(schedule_clock="wallclock")
