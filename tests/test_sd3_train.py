"""`nftkit train` / `nftkit export` on the tiny Stable Diffusion 3 pipeline, through the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from nftkit.policies.loading import load_policy
from nftkit.policies.tiny_sd3 import save_tiny_sd3
from nftkit.train import checkpoint as ckpt
from tests.conftest import run_cli
from tests.sd3_helpers import TINY_NFT, write_prompts


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("sd3-train")
    return {"model": save_tiny_sd3(root / "tiny"), "prompts": write_prompts(root), "root": root}


def _train(setup: dict[str, Path], out: Path, steps: int, *extra: str) -> dict:
    result = run_cli(
        "--db",
        f"sqlite:///{setup['root'] / 'r.db'}",
        "train",
        "--model",
        str(setup["model"]),
        "--rewards",
        "jpeg",
        "--prompts",
        str(setup["prompts"]),
        "--output",
        str(out),
        "--steps",
        str(steps),
        "--quiet",
        *TINY_NFT,
        *extra,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def straight_run(setup: dict[str, Path]) -> Path:
    out = setup["root"] / "straight"
    summary = _train(setup, out, 2)
    assert summary["epochs"] == 2 and summary["optimizer_steps"] == 4
    return out


def test_training_changes_the_lora_and_diffusers_loads_it(
    setup: dict[str, Path], straight_run: Path
) -> None:
    from diffusers import StableDiffusion3Pipeline

    weights = load_file(str(straight_run / "lora" / "pytorch_lora_weights.safetensors"))
    assert weights and all(k.startswith("transformer.transformer_blocks.") for k in weights)
    # gaussian init puts B = 0: a non-zero B means training moved the (EMA) adapter
    assert max(v.abs().max().item() for k, v in weights.items() if "lora_B" in k) > 0
    info = json.loads((straight_run / "nftkit_model.json").read_text())
    assert info["family"] == "sd3" and info["lora"]["rank"] == 4

    policy = load_policy(straight_run)
    pipe = StableDiffusion3Pipeline.from_pretrained(setup["model"])
    pipe.load_lora_weights(straight_run / "lora")
    cond = policy.encode_prompts(["a red cube"])
    x, t = torch.randn(1, *policy.latent_shape), torch.tensor([0.7])
    with torch.no_grad():
        ours = policy.velocity(x, t, cond, adapter="default")
        base = policy.velocity(x, t, cond, adapter=None)
        theirs = pipe.transformer(
            hidden_states=x,
            timestep=t * 1000,
            encoder_hidden_states=cond["prompt_embeds"],
            pooled_projections=cond["pooled_projections"],
        ).sample
    assert torch.allclose(ours, theirs, atol=1e-5)
    assert not torch.allclose(ours, base, atol=1e-6)


def test_resumed_run_reaches_the_same_weights(setup: dict[str, Path], straight_run: Path) -> None:
    out = setup["root"] / "resumed"
    assert _train(setup, out, 1)["epochs"] == 1
    assert _train(setup, out, 2, "--resume")["epochs"] == 2
    a = ckpt.latest_checkpoint(straight_run / "checkpoints")
    b = ckpt.latest_checkpoint(out / "checkpoints")
    assert a is not None and b is not None and a.name == b.name
    for name in ("adapter_default", "adapter_old", "ema", "optimizer"):
        left, right = ckpt.load_tensors(a, name), ckpt.load_tensors(b, name)
        assert left.keys() == right.keys()
        assert all(torch.equal(left[k], right[k]) for k in left), name


def test_export_merge_writes_a_fused_pipeline(setup: dict[str, Path], straight_run: Path) -> None:
    from diffusers import StableDiffusion3Pipeline

    merged = setup["root"] / "merged"
    result = run_cli(
        "export", str(straight_run), "--merge", "--output", str(merged), "--dtype", "fp32"
    )
    assert result.returncode == 0, result.stderr
    pipe = StableDiffusion3Pipeline.from_pretrained(merged)
    assert not any("lora" in k for k in pipe.transformer.state_dict())
    policy = load_policy(straight_run)
    cond = policy.encode_prompts(["a blue car", "a red cube"])
    x, t = torch.randn(2, *policy.latent_shape), torch.tensor([0.9, 0.2])
    with torch.no_grad():
        ours = policy.velocity(x, t, cond)
        theirs = pipe.transformer(
            hidden_states=x,
            timestep=t * 1000,
            encoder_hidden_states=cond["prompt_embeds"],
            pooled_projections=cond["pooled_projections"],
        ).sample
    assert torch.allclose(ours, theirs, atol=1e-5)
    lora_only = setup["root"] / "lora-only"
    assert run_cli("export", str(straight_run), "--output", str(lora_only)).returncode == 0
    assert (lora_only / "pytorch_lora_weights.safetensors").is_file()


def test_staged_config_switches_rewards(setup: dict[str, Path], tmp_path: Path) -> None:
    prompts = setup["prompts"]
    config = tmp_path / "stages.toml"
    config.write_text(
        '[nft]\nnum_steps = 2\n\n[policy]\ndtype = "float32"\n\n'
        f'[[stages]]\nname = "a"\nepochs = 1\nrewards = "jpeg"\nprompts = "{prompts}"\n\n'
        f'[[stages]]\nname = "b"\nepochs = 1\nrewards = "jpeg=2"\nprompts = "{prompts}"\n'
    )
    out = tmp_path / "staged"
    _train(setup, out, 2, "--config", str(config))
    rows = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [r["stage"] for r in rows] == ["a", "b"]
    assert rows[1]["reward_mean"] == pytest.approx(2 * rows[1]["reward/jpeg"])


def test_two_processes_share_the_global_std(setup: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    launcher = Path(sys.executable).parent / "accelerate"
    cmd = [
        str(launcher),
        "launch",
        "--multi_gpu",
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        "0",
        "-m",
        "nftkit",
        "--db",
        f"sqlite:///{tmp_path / 'r.db'}",
        "train",
        "--model",
        str(setup["model"]),
        "--rewards",
        "jpeg",
        "--prompts",
        str(setup["prompts"]),
        "--output",
        str(out),
        "--steps",
        "2",
        "--quiet",
        *TINY_NFT,
        "--set",
        "train_batch_size=2",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert len(rows) == 2
    for row in rows:
        assert row["world_size"] == 2
        stds = row["reward_std_ranks"]
        assert len(stds) == 2 and stds[0] == stds[1] == row["reward_std"] and stds[0] > 0
        sums = row["lora_checksum_ranks"]
        assert sums[0] == pytest.approx(sums[1], rel=1e-12)
    # 8 samples split 4 + 4, train batch 2: two optimizer steps per epoch on each process
    assert rows[-1]["step"] == 4
    assert (out / "lora" / "pytorch_lora_weights.safetensors").is_file()
