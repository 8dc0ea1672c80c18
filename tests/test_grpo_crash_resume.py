"""FlowGRPO training survives ``kill -9`` at the same points as DiffusionNFT's crash test.

`nftkit train --preset shapes-grpo` on the shipped shapes-base at tiny sizes (CPU, float32,
one thread; a random-init model scores 0 everywhere, so nothing would train) is SIGKILLed right after an optimizer step between checkpoints, in the middle of writing a
checkpoint, and with a complete checkpoint still under its temporary name; each killed run is
resumed and must end with exactly the adapters, optimizer state, EMA, exported LoRA and reward
history of an uninterrupted run with the same seed. The EMA interval is 2 here so that the
six optimizer steps apply it three times (the preset's 8 would leave it at its start).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.test_crash_resume import _assert_same_state, _kill_and_resume, _train

# 3 epochs of 8 samples, train batch 4: 2 optimizer steps per epoch, a checkpoint every epoch;
# 6 SDE steps of which int(0.99 * 6) = 5 are trained, KL 0.04 (the preset's).
# Seed 2 on the shipped base keeps 1.0, 0.5 and 1.0 of the samples: both branches are exercised.
SHAPES_GRPO = [
    "--steps",
    "3",
    "--checkpoint-every",
    "1",
    "--quiet",
    "--set",
    "prompts_per_epoch=2",
    "--set",
    "group_size=4",
    "--set",
    "num_steps=6",
    "--set",
    "sample_batch_size=8",
    "--set",
    "train_batch_size=4",
    "--set",
    "lora_rank=2",
    "--set",
    "lora_alpha=4",
    "--set",
    "lr=0.01",
    "--set",
    "clip_range=0.01",
    "--set",
    "ema_interval=2",
    "--set",
    "seed=2",
    "--set",
    "policy.autocast_dtype=null",
]


def _args(out: Path) -> list[str]:
    return ["train", "--preset", "shapes-grpo", "--output", str(out), *SHAPES_GRPO]


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted reference run."""
    root = tmp_path_factory.mktemp("grpo-crash-straight")
    out = root / "out"
    code, stdout, stderr = _train(root / "r.db", _args(out))
    assert code == 0, stderr[-2000:]
    assert json.loads(stdout.strip().splitlines()[-1])["optimizer_steps"] == 6
    run = json.loads((out / "run.json").read_text())
    assert run["algo"] == "grpo" and run["grpo"]["ema_interval"] == 2
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [row["step"] for row in history] == [2, 4, 6]
    assert all(0 < row["kept_frac"] <= 1 for row in history)  # something trained each epoch
    assert min(row["kept_frac"] for row in history) < 1  # and zero advantages were dropped
    exported = load_file(str(out / "lora" / "nftkit_adapter.safetensors"))
    lora_b = [v for k, v in exported.items() if "lora_B" in k]
    assert lora_b and any(bool(v.abs().sum() > 0) for v in lora_b)  # the EMA has moved off 0
    return out


@pytest.mark.parametrize(
    ("fault", "survivor", "leftover"),
    [
        ("after-step:5", "step-0000002", False),  # killed between checkpoints, in epoch 3
        ("mid-checkpoint:2", "step-0000001", True),  # tensors of checkpoint 2 half written
        pytest.param(
            "before-rename:2",
            "step-0000001",
            True,  # complete, not yet renamed
            marks=pytest.mark.slow,
        ),  # (slow, as in the NFT crash test)
    ],
)
def test_shapes_grpo_killed_run_resumes_to_the_same_weights(
    straight: Path,
    tmp_path: Path,
    fault: str,
    survivor: str,
    leftover: bool,
) -> None:
    out = tmp_path / "out"
    _kill_and_resume(tmp_path / "r.db", _args(out), out, fault, survivor, leftover)
    _assert_same_state(straight, out)
    rows = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    expected = [json.loads(line) for line in (straight / "history.jsonl").read_text().splitlines()]
    drop = {"seconds"}  # wall time differs; every other statistic is bit-identical
    assert [{k: v for k, v in r.items() if k not in drop} for r in rows] == [
        {k: v for k, v in r.items() if k not in drop} for r in expected
    ]
