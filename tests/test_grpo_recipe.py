"""The FlowGRPO reference recipe (yifan123/flow_grpo scripts/train_sd3.py, config/grpo.py).

SDE on every sampling step, CFG in sampling and in the training forward, zero-advantage drop
and padding, the EMA stepped every 8 optimizer steps, and the sd35m-grpo-geneval preset. The
expected numbers are written down from the reference formulas; the random draws are the
reference's own ``torch.randperm`` calls on a seeded generator.
"""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import torch

import nftkit.train.grpo as grpo_module
from nftkit.compose import RewardComposer, RewardTerm
from nftkit.eval import EvalSettings
from nftkit.policies.loading import load_policy
from nftkit.rewards.base import Reward, RewardOutput
from nftkit.shapes.prompts import split_prompts
from nftkit.train.grpo import GRPOConfig, GRPOTrainer
from nftkit.train.grpo_recipe import IntervalEma, cfg_velocity, kept_samples, train_batches
from nftkit.train.lora import adapter_parameters
from nftkit.train.nft import PromptItem
from nftkit.train.presets import get_preset

A = 0.7  # noise level


def _trainer(
    model: Path,
    out: Path,
    composer: RewardComposer | None = None,
    n_prompts: int = 6,
    **overrides: Any,
) -> GRPOTrainer:
    base = dict(
        epochs=2,
        prompts_per_epoch=2,
        group_size=4,
        num_steps=4,
        sample_batch_size=8,
        train_batch_size=4,
        lora_rank=2,
        lora_alpha=4,
        lr=1e-3,
        clip_range=1e-3,
        kl_beta=0.04,
        seed=3,
        noise_level=A,
    )
    base.update(overrides)
    policy = load_policy(model, autocast_dtype=None)
    train, _ = split_prompts()
    prompts = [PromptItem(m["prompt"], m) for m in train[:n_prompts]]
    return GRPOTrainer(
        policy, composer or RewardComposer("jpeg"), prompts, GRPOConfig.from_dict(base), out
    )


def _gaussian_log_prob(
    x: torch.Tensor, v: torch.Tensor, y: torch.Tensor, t: float, t_next: float
) -> torch.Tensor:
    """REFERENCE.md 2: the SDE transition density of y, averaged over latent dims (float64)."""
    sigma = A * math.sqrt(t / (1 - (t_next if t == 1.0 else t)))
    dt = t_next - t
    x, v, y = x.double(), v.double(), y.double()
    mean = x * (1 + sigma**2 / (2 * t) * dt) + v * (1 + sigma**2 * (1 - t) / (2 * t)) * dt
    s = sigma * math.sqrt(-dt)
    lp = -((y - mean) ** 2) / (2 * s * s) - math.log(s) - 0.5 * math.log(2 * math.pi)
    return lp.mean(dim=tuple(range(1, lp.ndim)))


# ---------------------------------------------------------------- CFG
def test_cfg_velocity_combines_and_detaches_the_unconditional_branch() -> None:
    p = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    x = torch.tensor([[1.0, -2.0], [0.5, 4.0]], dtype=torch.float64)
    t = torch.tensor([0.8, 0.4], dtype=torch.float64)
    cond = {"w": torch.tensor([2.0, -1.0], dtype=torch.float64)}
    uncond = {"w": torch.zeros(2, dtype=torch.float64)}
    batches: list[int] = []

    def toy(xx: torch.Tensor, tt: torch.Tensor, cc: dict) -> torch.Tensor:
        batches.append(xx.shape[0])
        return p * xx * (1 + cc["w"])[:, None] + (cc["w"] * tt)[:, None]

    v = cfg_velocity(toy, x, t, cond, uncond, 4.5)
    # v_u = p x, v_c = p x (1 + w) + w t, v = v_u + 4.5 (v_c - v_u); p = 0.3
    assert torch.allclose(v, torch.tensor([[10.2, 1.2], [-2.325, -6.0]], dtype=torch.float64))
    assert batches == [4]  # one forward on [uncond; cond]
    v.sum().backward()
    # v_u detached: d sum(v) / dp = 4.5 * sum(x (1 + w)) = 4.5 * (-3) (without detach: -25.75)
    assert p.grad.item() == pytest.approx(-13.5)
    plain = cfg_velocity(toy, x, t, cond, uncond, 1.0)
    assert batches[-1] == 2 and torch.equal(plain, toy(x, t, cond))


def _lora_b_sum(model: torch.nn.Module, adapter: str | None) -> torch.Tensor:
    if adapter is None:
        return torch.zeros(())
    return sum(v.sum() for k, v in adapter_parameters(model, adapter).items() if "lora_B" in k)


def _toy_velocity(model: torch.nn.Module) -> Any:
    """v = (0.5 + sum of the adapter's lora_B) x + 0.1 * (prompt words) * t: known by hand.

    (The shapes network itself has no unconditional mode: the empty prompt masks every text
    token, so the toy stands in for it.)
    """

    def toy(x: torch.Tensor, t: torch.Tensor, cond: dict, adapter: str | None = "default"):
        words = cond["mask"].sum(1).reshape(-1, 1, 1, 1)  # 0 for the empty prompt
        return (0.5 + _lora_b_sum(model, adapter)) * x + 0.1 * words * t.reshape(-1, 1, 1, 1)

    return toy


def test_trainer_guides_sampling_and_training_with_the_empty_prompt(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trainer = _trainer(tiny_model_dir, tmp_path, guidance_scale=4.5, kl_beta=0.0)
    model = trainer.policy.model
    monkeypatch.setattr(trainer.policy, "velocity", _toy_velocity(model))
    batch = trainer.sample_epoch(0)
    words = batch.cond["mask"].sum(1).double().reshape(-1, 1, 1, 1)
    grid = trainer.grid
    for j in range(4):  # guided v = 0.5 x + 4.5 * 0.1 * words * t (lora_B starts at zero)
        x = batch.states[:, j].double()
        v = 0.5 * x + 0.45 * words * grid[j]
        expected = _gaussian_log_prob(x, v, batch.states[:, j + 1], grid[j], grid[j + 1])
        assert torch.allclose(batch.log_probs[:, j].double(), expected, rtol=1e-5, atol=1e-4)

    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    real_loss = grpo_module.grpo_loss

    def spy(log_prob: torch.Tensor, old: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        seen.append((log_prob.detach().clone(), old.clone()))
        return real_loss(log_prob, old, *args, **kwargs)

    monkeypatch.setattr(grpo_module, "grpo_loss", spy)
    trainer.train_on(batch, 0)
    assert len(seen) == 2 * 3  # 2 batches x int(0.99 * 4) trained steps
    for log_prob, old in seen[:3]:  # before the first update the training forward is on-policy
        assert torch.allclose(log_prob, old, atol=1e-5)
    # the guided velocity's gradient flows through the conditional branch only: 4.5 dv_c / db
    x = batch.states[:2, 0]
    t = torch.full((2,), grid[0])
    cond = {k: v[:2] for k, v in batch.cond.items()}
    param = next(v for k, v in adapter_parameters(model, "default").items() if "lora_B" in k)
    param.grad = None
    trainer.guided_velocity(x, t, cond, "default").sum().backward()
    assert param.grad is not None
    assert torch.allclose(param.grad, torch.full_like(param, 4.5 * float(x.sum())), rtol=1e-5)


# ---------------------------------------------------------------- SDE on every step
def test_sde_on_every_sampling_step_and_the_velocity_call_count(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trainer = _trainer(tiny_model_dir, tmp_path, guidance_scale=4.5)
    calls: list[tuple[int, str | None]] = []
    toy = _toy_velocity(trainer.policy.model)

    def counting(x: torch.Tensor, t: torch.Tensor, cond: Any, adapter: str | None = "default"):
        calls.append((x.shape[0], adapter))
        return toy(x, t, cond, adapter)

    monkeypatch.setattr(trainer.policy, "velocity", counting)
    batch = trainer.sample_epoch(0)
    # one guided forward (8 samples doubled) per step of the 4-step grid, the last included
    assert calls == [(16, "old")] * 4
    assert batch.sde_steps == [0, 1, 2, 3] and torch.isfinite(batch.log_probs).all()
    grid = trainer.grid
    last = batch.states[:, 3]
    ode_end = last + (grid[4] - grid[3]) * trainer.guided_velocity(
        last, torch.full((8,), grid[3]), batch.cond, "old"
    )
    assert not torch.allclose(batch.states[:, 4], ode_end, atol=1e-3)  # noise on the last step
    calls.clear()
    trainer.train_on(batch, 0)
    # 2 batches x 3 trained steps x (trained + KL reference), each a doubled guided forward
    assert Counter(calls) == Counter({(8, None): 6, (8, "default"): 6})


# ---------------------------------------------------------------- zero advantages
def test_zero_advantages_are_dropped_then_padded_from_the_dropped_ones() -> None:
    adv = torch.tensor([0.0, 1.5, 0.0, -1.0, 2.0, 0.0, 0.0, 3.0, -2.0, 0.0, 1.0, -1.0])
    gen = torch.Generator().manual_seed(0)
    kept = kept_samples(adv, 4, gen)
    # 7 non-zero; 7 % 4 = 3, so 4 - 3 = 1 of the dropped [0, 2, 5, 6, 9] comes back
    dropped = [0, 2, 5, 6, 9]
    pick = torch.randperm(5, generator=torch.Generator().manual_seed(0))[:1].tolist()
    expected = sorted([1, 3, 4, 7, 8, 10, 11] + [dropped[i] for i in pick])
    assert kept.tolist() == expected and len(expected) == 8
    batches = train_batches(kept, 4, gen)
    reference = torch.Generator().manual_seed(0)
    torch.randperm(5, generator=reference)
    order = torch.tensor(expected)[torch.randperm(8, generator=reference)]
    assert [b.tolist() for b in batches] == order.reshape(4, 2).tolist()

    # a kept count that already splits: no draw at all
    gen = torch.Generator().manual_seed(1)
    state = gen.get_state()
    assert kept_samples(torch.tensor([0.0, 1.0, -1.0, 0.0]), 2, gen).tolist() == [1, 2]
    assert torch.equal(gen.get_state(), state)
    # too few dropped samples to pad (10 samples, 4 batches): the 9 non-zero ones, uneven sizes
    kept = kept_samples(torch.tensor([1.0] * 9 + [0.0]), 4, gen)
    assert kept.tolist() == list(range(9))
    assert [len(b) for b in train_batches(kept, 4, gen)] == [3, 2, 2, 2]
    assert kept_samples(torch.zeros(6), 3, gen).numel() == 0


class ByPrompt(Reward):
    """Scores from a table: prompt -> the score of its 1st, 2nd, ... sample."""

    name = "by-prompt"
    higher_is_better = True
    score_range = (0.0, 1.0)
    input_format = "tensor"

    def __init__(self, table: dict[str, list[float]]) -> None:
        super().__init__()
        self.table = table

    def score_batch(
        self, images: torch.Tensor, prompts: list[str], metadata: list[dict]
    ) -> RewardOutput:
        """The next table entry of each sample's prompt."""
        seen: Counter[str] = Counter()
        scores = []
        for p in prompts:
            scores.append(self.table[p][seen[p]])
            seen[p] += 1
        return RewardOutput(torch.tensor(scores))


def test_trainer_trains_only_on_non_zero_advantages(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    train, _ = split_prompts()
    first, second = train[0]["prompt"], train[1]["prompt"]
    composer = RewardComposer("jpeg")
    composer.terms = [RewardTerm("by-prompt")]
    composer.rewards = {"by-prompt": ByPrompt({first: [0.5] * 4, second: [0.0, 0.5, 0.5, 1.0]})}
    trainer = _trainer(tiny_model_dir, tmp_path, composer, n_prompts=2, num_steps=3)
    seen: list[torch.Tensor] = []
    real_loss = grpo_module.grpo_loss

    def spy(
        log_prob: torch.Tensor,
        old: torch.Tensor,
        adv: torch.Tensor,
        mask: torch.Tensor,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        assert bool(mask.all())
        seen.append(adv.clone())
        return real_loss(log_prob, old, adv, mask, *args, **kwargs)

    monkeypatch.setattr(grpo_module, "grpo_loss", spy)
    record = trainer.run_epoch()
    # rewards [.5 .5 .5 .5 | 0 .5 .5 1]: mean of the second group .5, global std .25; only the
    # 0 and the 1 have a non-zero advantage, +-0.5 / (0.25 + 1e-4); 2 kept = 2 batches of 1
    a = 0.5 / (0.25 + 1e-4)
    assert [s.shape for s in seen] == [torch.Size([1])] * 4  # 2 batches x 2 trained steps
    assert sorted(round(float(s), 5) for s in seen) == sorted(
        [round(-a, 5)] * 2 + [round(a, 5)] * 2
    )
    assert record["kept_frac"] == 0.25 and record["zero_adv_frac"] == 0.75
    assert record["train_batch"] == 1.0 and record["step"] == 2  # still 2 optimizer steps


# ---------------------------------------------------------------- the EMA
def test_interval_ema_applies_every_eighth_step_with_the_reference_decay() -> None:
    p = torch.zeros(1)
    ema = IntervalEma([p], interval=8)
    values = []
    for step in range(1, 17):
        p.fill_(float(step))
        applied = ema.update([p], step)
        assert (applied is not None) == (step in (7, 15))
        values.append(ema.shadow[0].item())
    # step 7: d = min(8 / 17, 0.9), shadow 0 -> (9 / 17) * 7; step 15: d = 16 / 25
    at7 = 9 / 17 * 7
    assert values[:6] == [0.0] * 6 and values[6] == pytest.approx(at7)
    assert values[7:14] == [pytest.approx(at7)] * 7
    assert values[14] == pytest.approx(0.64 * at7 + 0.36 * 15)
    assert ema.update([p], 95) == 0.9  # (1 + 95) / (10 + 95) > 0.9: the cap
    with pytest.raises(ValueError, match="interval"):
        IntervalEma([p], interval=0)


def test_trainer_steps_the_ema_after_every_batch_as_the_reference(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trainer = _trainer(tiny_model_dir, tmp_path, num_steps=2, train_batch_size=2, grad_accum=2)
    assert isinstance(trainer.ema, IntervalEma) and trainer.ema.interval == 8
    initial = [s.clone() for s in trainer.ema.shadow]
    steps: list[int] = []
    real = trainer.ema.update

    def spy(params: Any, step: int) -> Any:
        steps.append(step)
        return real(params, step)

    monkeypatch.setattr(trainer.ema, "update", spy)
    trainer.run_epoch()
    trainer.run_epoch()
    # 4 batches per epoch, accumulation 2: the reference calls ema.step(global_step) after
    # each batch, i.e. with 0, 1, 1, 2 in the first epoch and 2, 3, 3, 4 in the second
    assert steps == [0, 1, 1, 2, 2, 3, 3, 4] and trainer.global_step == 4
    assert all(torch.equal(a, b) for a, b in zip(initial, trainer.ema.shadow, strict=True))


# ---------------------------------------------------------------- the preset
def test_sd35m_grpo_geneval_preset_has_the_reference_settings() -> None:
    preset = get_preset("sd35m-grpo-geneval")
    cfg = preset.train_config()
    assert isinstance(cfg, GRPOConfig) and preset.algo == "grpo"
    assert preset.model == "stabilityai/stable-diffusion-3.5-medium"
    assert (preset.rewards, preset.prompts, preset.eval_suite) == (
        "geneval",
        "geneval-train",
        "geneval",
    )
    assert preset.policy == {"resolution": 512}
    assert (cfg.prompts_per_epoch, cfg.group_size) == (48, 24)
    assert (cfg.sample_batch_size, cfg.train_batch_size) == (9, 9)  # train batch = sample batch
    assert (cfg.num_steps, cfg.noise_level, cfg.guidance_scale) == (10, 0.7, 4.5)
    assert (cfg.timestep_fraction, cfg.trained_steps) == (0.99, 9)
    assert (cfg.clip_range, cfg.adv_clip, cfg.kl_beta, cfg.std_mode) == (1e-4, 5.0, 0.04, "global")
    assert (cfg.lora_rank, cfg.lora_alpha, cfg.lora_init, cfg.lr) == (32, 64, "gaussian", 3e-4)
    assert (cfg.adam_betas, cfg.weight_decay, cfg.adam_eps, cfg.grad_clip) == (
        (0.9, 0.999),
        1e-4,
        1e-8,
        1.0,
    )
    assert cfg.ema_interval == 8 and cfg.sde_window is None
    # two optimizer steps per epoch: 1,152 samples in steps of 576
    per_epoch = getattr(cfg, "steps_per_epoch", None)
    if per_epoch is None:
        per_epoch = 48 * 24 // (cfg.train_batch_size * cfg.grad_accum)
    assert per_epoch == 2
    settings = EvalSettings(**preset.eval_settings)
    assert (settings.steps, settings.solver, settings.cfg) == (40, "euler", 4.5)


@pytest.mark.parametrize("name", ["shapes-grpo", "shapes-grpo-fast"])
def test_shapes_grpo_presets_stay_cfg_free(name: str) -> None:
    cfg = get_preset(name).train_config()
    assert cfg.guidance_scale == 1.0 and GRPOConfig().guidance_scale == 1.0
    with pytest.raises(Exception, match="guidance_scale must be > 0"):
        GRPOConfig(guidance_scale=0.0)


def test_tiny_sd3_grpo_guides_against_the_empty_prompt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nftkit.policies.tiny_sd3 import save_tiny_sd3
    from tests.sd3_helpers import PROMPTS

    policy = load_policy(save_tiny_sd3(tmp_path / "tiny"), autocast_dtype=None)
    config = GRPOConfig(
        epochs=1,
        prompts_per_epoch=2,
        group_size=2,
        num_steps=2,
        sample_batch_size=4,
        train_batch_size=2,
        lora_rank=2,
        lora_alpha=4,
        guidance_scale=4.5,
        seed=1,
    )
    trainer = GRPOTrainer(
        policy,
        RewardComposer("jpeg"),
        [PromptItem(p) for p in PROMPTS[:2]],
        config,
        tmp_path / "out",
    )
    x = torch.randn((2, *policy.latent_shape), generator=torch.Generator().manual_seed(0))
    t = torch.full((2,), 0.8)
    cond = policy.encode_prompts(PROMPTS[:2])
    v_c = policy.velocity(x, t, cond, adapter="old")
    v_u = policy.velocity(x, t, policy.encode_prompts(["", ""]), adapter="old")
    guided = trainer.guided_velocity(x, t, cond, "old")
    assert torch.allclose(guided, v_u + 4.5 * (v_c - v_u), atol=1e-4)
    assert not torch.allclose(guided, v_c, atol=1e-2)

    seen: list[tuple[torch.Tensor, torch.Tensor]] = []
    real_loss = grpo_module.grpo_loss

    def spy(log_prob: torch.Tensor, old: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        seen.append((log_prob.detach().clone(), old.clone()))
        return real_loss(log_prob, old, *args, **kwargs)

    monkeypatch.setattr(grpo_module, "grpo_loss", spy)
    record = trainer.run_epoch()
    assert record["step"] == 2 and len(seen) == 2  # 2 batches x int(0.99 * 2) = 1 step
    log_prob, old = seen[0]  # guided in training as in sampling: on-policy before the update
    assert torch.allclose(log_prob, old, atol=1e-4)
