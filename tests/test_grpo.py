"""The FlowGRPO baseline: SDE log-probs, PPO clipping, masking, the trainer and `--algo grpo`."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from nftkit.compose import RewardComposer, RewardTerm, informative_mask
from nftkit.errors import UsageError
from nftkit.policies.loading import load_policy
from nftkit.rewards.base import Reward, RewardOutput
from nftkit.shapes.prompts import split_prompts
from nftkit.train.grpo import GRPOConfig, GRPOTrainer, TrajectoryBatch
from nftkit.train.grpo_loss import grpo_loss, ppo_clip_loss
from nftkit.train.lora import adapter_parameters
from nftkit.train.nft import NFTConfig, NFTTrainer, PromptItem
from nftkit.train.sampling import flow_sde_step, sde_trajectory, timesteps
from tests.conftest import run_cli

EPS = 0.2


def _trainer(
    model: str | Path,
    out: Path,
    rewards: str | RewardComposer = "jpeg",
    n_prompts: int = 6,
    **overrides: object,
) -> GRPOTrainer:
    base = dict(
        epochs=2,
        prompts_per_epoch=2,
        group_size=4,
        num_steps=4,
        sample_batch_size=8,
        train_batch_size=4,
        lora_rank=4,
        lora_alpha=8,
        lr=1e-3,
        clip_range=1e-3,
        kl_beta=0.04,
        seed=3,
    )
    base.update(overrides)
    policy = load_policy(model, autocast_dtype=None)  # exact float32 for the equality checks
    train, _ = split_prompts()
    prompts = [PromptItem(m["prompt"], m) for m in train[:n_prompts]]
    composer = RewardComposer(rewards) if isinstance(rewards, str) else rewards
    return GRPOTrainer(policy, composer, prompts, GRPOConfig.from_dict(base), out)


# ---------------------------------------------------------------- SDE step and trajectory
@pytest.mark.parametrize(("t", "t_next"), [(0.6, 0.45), (1.0, 0.9), (0.2, 0.0)])
def test_sde_log_prob_is_the_analytic_gaussian(t: float, t_next: float) -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 2, 4, 4, generator=gen, dtype=torch.float64)
    v = torch.randn(3, 2, 4, 4, generator=gen, dtype=torch.float64)
    y = torch.randn(3, 2, 4, 4, generator=gen, dtype=torch.float64)
    a = 0.7
    sigma = a * math.sqrt(t / (1 - (t_next if t == 1.0 else t)))
    dt = t_next - t
    mean = x * (1 + sigma**2 / (2 * t) * dt) + v * (1 + sigma**2 * (1 - t) / (2 * t)) * dt
    s = sigma * math.sqrt(-dt)
    density = torch.exp(-((y - mean) ** 2) / (2 * s * s)) / (s * math.sqrt(2 * math.pi))
    expected = torch.log(density).mean(dim=(1, 2, 3))
    _, log_prob, got_mean, got_sigma = flow_sde_step(x, v, t, t_next, a, prev_sample=y)
    assert torch.allclose(log_prob, expected, rtol=1e-10, atol=1e-10)
    assert torch.allclose(got_mean, mean) and torch.allclose(
        got_sigma.flatten(), torch.full((3,), sigma, dtype=x.dtype)
    )
    # a drawn sample is scored under the same Gaussian
    drawn, lp_drawn, _, _ = flow_sde_step(x, v, t, t_next, a, generator=gen)
    lp_manual = (
        -((drawn - mean) ** 2) / (2 * s * s) - math.log(s) - 0.5 * math.log(2 * math.pi)
    ).mean(dim=(1, 2, 3))
    assert torch.allclose(lp_drawn, lp_manual, rtol=1e-10, atol=1e-10)


def test_trajectory_records_sde_steps_and_runs_ode_elsewhere() -> None:
    x_T = torch.randn(2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    ts = timesteps(5)
    vf = lambda x, t: 0.5 * x - 0.1  # noqa: E731
    states, log_probs = sde_trajectory(
        vf, x_T, ts, 0.7, torch.Generator().manual_seed(2), sde_steps=[1, 2]
    )
    assert states.shape == (2, 6, 3) and log_probs.shape == (2, 5)
    assert torch.equal(states[:, 0], x_T)
    assert torch.isnan(log_probs[:, [0, 3, 4]]).all() and torch.isfinite(log_probs[:, 1:3]).all()
    grid = ts.tolist()
    for i in range(5):
        x, x_next = states[:, i], states[:, i + 1]
        if i in (1, 2):
            _, lp, _, _ = flow_sde_step(
                x, vf(x, None), grid[i], grid[i + 1], 0.7, prev_sample=x_next
            )
            assert torch.allclose(lp, log_probs[:, i])
        else:  # an Euler step of the ODE
            assert torch.allclose(x_next, x + (grid[i + 1] - grid[i]) * vf(x, None))
    with pytest.raises(ValueError, match="sde_steps"):
        sde_trajectory(vf, x_T, ts, sde_steps=[5])


# ---------------------------------------------------------------- PPO clipping and the loss
@pytest.mark.parametrize(
    ("advantage", "ratio", "grad_is_zero"),
    [
        (1.0, 1 + 2 * EPS, True),  # A > 0, ratio above 1 + eps: clipped, no push further up
        (-1.0, 1 - 2 * EPS, True),  # A < 0, ratio below 1 - eps: clipped, no push further down
        (1.0, 1 - 2 * EPS, False),  # A > 0 but the ratio fell: the rule lets it recover
        (-1.0, 1 + 2 * EPS, False),  # A < 0 but the ratio rose: the rule lets it recover
        (1.0, 1 + EPS / 2, False),  # inside the range
        (-1.0, 1 - EPS / 2, False),  # inside the range
    ],
)
def test_ppo_clip_gradients(advantage: float, ratio: float, grad_is_zero: bool) -> None:
    log_prob = torch.tensor([math.log(ratio)], dtype=torch.float64, requires_grad=True)
    loss, got_ratio = ppo_clip_loss(
        log_prob,
        torch.zeros(1, dtype=torch.float64),
        torch.tensor([advantage], dtype=torch.float64),
        EPS,
    )
    loss.sum().backward()
    assert got_ratio.item() == pytest.approx(ratio)
    grad = log_prob.grad.item()
    if grad_is_zero:
        assert grad == 0.0
        clipped = min(max(ratio, 1 - EPS), 1 + EPS)
        assert loss.item() == pytest.approx(-advantage * clipped)
    else:  # d(-A * exp(logp)) / dlogp = -A * ratio
        assert grad == pytest.approx(-advantage * ratio)


def test_grpo_loss_masks_groups_and_adds_kl() -> None:
    rewards = torch.tensor([0.5, 0.5, 0.2, 0.9])
    mask = informative_mask(rewards, [7, 7, 3, 3])
    assert mask.tolist() == [False, False, True, True]
    log_prob = torch.zeros(4, requires_grad=True)
    mean = torch.zeros(4, 2, requires_grad=True)
    mean_ref = torch.tensor([[1.0, 1.0], [1.0, 1.0], [0.0, 2.0], [1.0, 3.0]])
    sigma = torch.tensor([0.5, 0.5, 1.0, 2.0]).reshape(4, 1)
    adv = torch.tensor([3.0, -3.0, -1.0, 1.0])
    loss, diag = grpo_loss(
        log_prob,
        torch.zeros(4),
        adv,
        mask,
        0.1,
        kl_beta=0.5,
        mean=mean,
        mean_ref=mean_ref,
        sigma=sigma,
    )
    kl = [(0 + 4) / 2 / (2 * 1.0), (1 + 9) / 2 / (2 * 4.0)]  # mean over dims / (2 sigma^2)
    policy = (1.0 - 1.0) / 2  # -A * ratio at ratio 1 for the two unmasked samples
    assert loss.item() == pytest.approx(policy + 0.5 * sum(kl) / 2)
    assert diag["kl"] == pytest.approx(sum(kl) / 2)
    loss.backward()
    assert torch.equal(log_prob.grad[:2], torch.zeros(2))  # masked group: no gradient at all
    assert torch.equal(mean.grad[:2], torch.zeros(2, 2))
    assert log_prob.grad[2].item() == pytest.approx(0.5) and mean.grad[3].abs().sum() > 0


# ---------------------------------------------------------------- the trainer
def test_sampled_log_probs_are_on_policy(tiny_model_dir: Path, tmp_path: Path) -> None:
    trainer = _trainer(tiny_model_dir, tmp_path)
    batch = trainer.sample_epoch(0)
    assert isinstance(batch, TrajectoryBatch)
    assert batch.states.shape == (8, 5, 3, 32, 32) and batch.sde_steps == [0, 1, 2, 3]
    assert batch.train_steps == [0, 1, 2]  # int(0.99 * 4) trained; all 4 sampled with the SDE
    cond = batch.cond
    grid = timesteps(4).tolist()
    for j in batch.sde_steps:  # the trained adapter, before any update, scores ratio 1
        t = torch.full((8,), grid[j])
        with torch.no_grad():
            v = trainer.policy.velocity(batch.states[:, j], t, cond, adapter="default")
        _, lp, _, _ = flow_sde_step(
            batch.states[:, j], v, grid[j], grid[j + 1], 0.7, prev_sample=batch.states[:, j + 1]
        )
        assert torch.allclose(lp, batch.log_probs[:, j], atol=1e-5)
    assert torch.isfinite(batch.log_probs).all()  # the last step is an SDE step too


def test_fast_variant_trains_on_policy_inside_the_window(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    trainer = _trainer(tiny_model_dir, tmp_path, num_steps=6, sde_window=2, epochs=1)
    model = trainer.policy.model
    before = {k: v.clone() for k, v in adapter_parameters(model, "default").items()}
    record = trainer.run_epoch()
    window = trainer.sde_steps(0)
    assert len(window) == 2 and window[1] == window[0] + 1 and 0 <= window[0] <= 3
    assert record["sde_first_step"] == window[0] and record["step"] == 2
    after = adapter_parameters(model, "default")
    assert any(not torch.equal(before[k], after[k]) for k in after)
    old = adapter_parameters(model, "old")  # the next epoch samples with the trained weights
    assert all(torch.equal(old[k], after[k]) for k in old)
    with pytest.raises(UsageError, match="sde_window"):
        GRPOConfig(num_steps=4, sde_window=4)


class MeanBrightness(Reward):
    """Mean pixel value: a dense reward every sample of a group ranks differently on."""

    name = "brightness"
    higher_is_better = True
    score_range = (0.0, 1.0)
    input_format = "tensor"

    def score_batch(
        self, images: torch.Tensor, prompts: list[str], metadata: list[dict]
    ) -> RewardOutput:
        """Mean over channels and pixels."""
        return RewardOutput(images.float().mean(dim=(1, 2, 3)))


def test_grpo_raises_the_reward_on_shapes(tmp_path: Path) -> None:
    composer = RewardComposer("jpeg")
    composer.terms = [RewardTerm("brightness")]
    composer.rewards = {"brightness": MeanBrightness()}
    # 6 epochs (5 before the last sampling step became an SDE step, as in the reference: its
    # noise, std 0.2 on this 4-step grid, makes the reward noisier)
    trainer = _trainer(
        "shapes-base",
        tmp_path,
        rewards=composer,
        n_prompts=4,
        epochs=6,
        group_size=8,
        sample_batch_size=16,
        train_batch_size=8,
        lr=3e-3,
        clip_range=0.02,
        kl_beta=0.0,
        seed=0,
    )
    rewards = [trainer.run_epoch()["reward_mean"] for _ in range(6)]
    assert sum(rewards[-2:]) / 2 > rewards[0] + 0.05, rewards
    assert sum(rewards[1:]) / 5 > rewards[0], rewards


# ---------------------------------------------------------------- the CLI
def test_cli_train_algo_grpo(tiny_model_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    small = [
        "--set",
        "prompts_per_epoch=2",
        "--set",
        "group_size=4",
        "--set",
        "num_steps=3",
        "--set",
        "sample_batch_size=8",
        "--set",
        "train_batch_size=8",
        "--set",
        "lora_rank=2",
        "--set",
        "lora_alpha=4",
        "--set",
        "sde_window=1",
        "--set",
        "policy.autocast_dtype=null",
    ]
    db = f"sqlite:///{tmp_path / 'r.db'}"
    result = run_cli(
        "--db",
        db,
        "train",
        "--algo",
        "grpo",
        "--model",
        str(tiny_model_dir),
        "--rewards",
        "jpeg",
        "--prompts",
        "shapes-train",
        "--output",
        str(out),
        "--steps",
        "1",
        "--quiet",
        *small,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["epochs"] == 1 and summary["optimizer_steps"] == 1
    run = json.loads((out / "run.json").read_text())
    assert run["algo"] == "grpo" and run["grpo"]["sde_window"] == 1
    history = json.loads((out / "history.jsonl").read_text().splitlines()[0])
    assert {"clipfrac", "kl", "ratio_mean"} <= set(history)
    assert (out / "lora" / "nftkit_adapter.safetensors").is_file()
    # an NFT trainer refuses to resume the GRPO checkpoint
    policy = load_policy(tiny_model_dir, autocast_dtype=None)
    nft = NFTTrainer(
        policy,
        RewardComposer("jpeg"),
        [PromptItem("a photo of a circle")],
        NFTConfig(lora_rank=2, lora_alpha=4),
        out,
    )
    with pytest.raises(UsageError, match="--algo grpo"):
        nft.resume()
    unknown = run_cli(
        "train", "--algo", "ppo", "--preset", "shapes", "--output", str(tmp_path / "o")
    )
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == "error: unknown --algo 'ppo'; choose one of: nft, grpo"


def test_preset_algo_mismatch_is_a_usage_error(tmp_path: Path) -> None:
    from nftkit.cli.train import train

    with pytest.raises(UsageError, match="preset 'shapes-grpo' trains with --algo grpo"):
        train(
            preset="shapes-grpo",
            algo="nft",
            model=None,
            rewards=None,
            prompts=None,
            output=tmp_path / "o",
            steps=None,
            resume=False,
            seed=None,
            device="cpu",
            checkpoint_every=None,
            config_file=None,
            overrides=None,
            quiet=True,
        )
    with pytest.raises(UsageError, match="unknown GRPO option"):
        GRPOConfig.from_dict({"beta": 1.0})
    assert not (tmp_path / "o").exists()
