"""Training survives ``kill -9``: real subprocesses SIGKILLed at chosen points, then ``--resume``.

Each killed run is resumed and must end with exactly the weights, optimizer state, EMA and
reward history of an uninterrupted run with the same seed (CPU, float32, one thread). The kill
points come from ``nftkit.train.faults``: between checkpoints (right after an optimizer step),
in the middle of writing a checkpoint (tensors written, marker missing) and with a complete
checkpoint still under its temporary name. The tiny-SD3 cases take about a minute each and
are marked slow.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from nftkit.policies.tiny_sd3 import save_tiny_sd3
from nftkit.results.store import ResultsStore
from nftkit.train import checkpoint as ckpt
from nftkit.train.faults import FAULT_ENV
from tests.conftest import run_cli
from tests.sd3_helpers import TINY_NFT, write_prompts
from tests.shapes_helpers import tiny_shapes_config, write_tiny_shapes_model

# 3 epochs of 8 samples, train batch 4: 2 optimizer steps per epoch, a checkpoint every epoch
# (the preset states 16 samples per step, so the smaller epoch states its own 4).
SHAPES_NFT = [
    "--steps",
    "3",
    "--checkpoint-every",
    "1",
    "--quiet",
    "--set",
    "samples_per_step=4",
    "--set",
    "prompts_per_epoch=2",
    "--set",
    "group_size=4",
    "--set",
    "num_steps=3",
    "--set",
    "sample_batch_size=8",
    "--set",
    "train_batch_size=4",
    "--set",
    "max_train_timesteps=1",
    "--set",
    "lora_rank=2",
    "--set",
    "lora_alpha=4",
    "--set",
    "lr=0.01",
    "--set",
    "seed=7",
    "--set",
    "policy.autocast_dtype=null",
]
SD3_NFT = ["--steps", "2", "--checkpoint-every", "1", "--quiet", *TINY_NFT]
STATE_FILES = ("adapter_default", "adapter_old", "ema", "optimizer")
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def shapes_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random shapes model (the preset's reward and prompts, a seconds-fast network)."""
    return write_tiny_shapes_model(
        tmp_path_factory.mktemp("crash-shapes"), tiny_shapes_config(16), seed=2
    )


def _shapes_args(model: Path, out: Path) -> list[str]:
    return ["train", "--preset", "shapes", "--model", str(model), "--output", str(out), *SHAPES_NFT]


def _train(db: Path, args: list[str], fault: str | None = None, resume: bool = False) -> tuple:
    env = {**ONE_THREAD, FAULT_ENV: fault or ""}
    result = run_cli("--db", f"sqlite:///{db}", *args, *(["--resume"] if resume else []), env=env)
    return result.returncode, result.stdout, result.stderr


def _rewards(out: Path) -> list[float]:
    rows = (out / "history.jsonl").read_text().splitlines()
    return [json.loads(line)["reward_mean"] for line in rows]


def _assert_same_state(straight: Path, resumed: Path) -> None:
    a = ckpt.latest_checkpoint(straight / "checkpoints")
    b = ckpt.latest_checkpoint(resumed / "checkpoints")
    assert a is not None and b is not None and a.name == b.name
    for name in STATE_FILES:
        left, right = ckpt.load_tensors(a, name), ckpt.load_tensors(b, name)
        assert left.keys() == right.keys() and left, name
        assert all(torch.equal(left[k], right[k]) for k in left), name
    left = load_file(str(straight / "lora" / "nftkit_adapter.safetensors"))
    right = load_file(str(resumed / "lora" / "nftkit_adapter.safetensors"))
    assert all(torch.equal(left[k], right[k]) for k in left)
    state_a, state_b = ckpt.load_json(a, "trainer_state"), ckpt.load_json(b, "trainer_state")
    assert (state_a["epoch"], state_a["global_step"]) == (state_b["epoch"], state_b["global_step"])
    assert _rewards(straight) == _rewards(resumed)


def _kill_and_resume(
    db: Path, args: list[str], out: Path, fault: str, survivor: str, leftover: bool
) -> None:
    """Run until the fault SIGKILLs the trainer, check what is on disk, resume to the end."""
    code, _, stderr = _train(db, args, fault=fault)
    assert code == -signal.SIGKILL, (code, stderr[-2000:])
    latest = ckpt.latest_checkpoint(out / "checkpoints")
    assert latest is not None and latest.name == survivor
    temporaries = list((out / "checkpoints").glob(f"{ckpt.TMP_PREFIX}*"))
    assert bool(temporaries) == leftover, temporaries
    if fault.startswith("before-rename"):  # complete, marker written, still not taken as valid
        assert (temporaries[0] / ckpt.COMPLETE_MARKER).is_file()
    if fault.startswith("mid-checkpoint"):
        assert not (temporaries[0] / ckpt.COMPLETE_MARKER).is_file()
        assert list(temporaries[0].glob("*.safetensors"))
    (run_id,) = [r.id for r in ResultsStore(f"sqlite:///{db}").list_runs(kind="train")]
    assert ResultsStore(f"sqlite:///{db}").get_run(run_id).status == "running"  # no clean exit

    code, stdout, stderr = _train(db, args, resume=True)
    assert code == 0, stderr[-2000:]
    assert json.loads(stdout.strip().splitlines()[-1])["run_id"] == run_id
    assert not list((out / "checkpoints").glob(f"{ckpt.TMP_PREFIX}*"))
    (run,) = ResultsStore(f"sqlite:///{db}").list_runs(kind="train")
    assert run.id == run_id and run.status == "finished"


@pytest.fixture(scope="module")
def shapes_straight(shapes_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted reference run."""
    root = tmp_path_factory.mktemp("crash-straight")
    out = root / "out"
    code, stdout, stderr = _train(root / "r.db", _shapes_args(shapes_model, out))
    assert code == 0, stderr[-2000:]
    assert json.loads(stdout.strip().splitlines()[-1])["optimizer_steps"] == 6
    return out


@pytest.mark.parametrize(
    ("fault", "survivor", "leftover"),
    [
        ("after-step:5", "step-0000002", False),  # killed between checkpoints, in epoch 3
        ("mid-checkpoint:2", "step-0000001", True),  # tensors of checkpoint 2 half written
        pytest.param("before-rename:2", "step-0000001", True, marks=pytest.mark.slow),
    ],
)
def test_shapes_preset_killed_run_resumes_to_the_same_weights(
    shapes_model: Path,
    shapes_straight: Path,
    tmp_path: Path,
    fault: str,
    survivor: str,
    leftover: bool,
) -> None:
    out = tmp_path / "out"
    _kill_and_resume(
        tmp_path / "r.db", _shapes_args(shapes_model, out), out, fault, survivor, leftover
    )
    _assert_same_state(shapes_straight, out)


@pytest.fixture(scope="module")
def sd3_setup(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("crash-sd3")
    model = save_tiny_sd3(root / "tiny")
    prompts = write_prompts(root)
    out = root / "straight"
    args = [
        "train",
        "--model",
        str(model),
        "--rewards",
        "jpeg",
        "--prompts",
        str(prompts),
        "--output",
        str(out),
        *SD3_NFT,
    ]
    code, _, stderr = _train(root / "r.db", args)
    assert code == 0, stderr[-2000:]
    return {"model": model, "prompts": prompts, "straight": out}


@pytest.mark.parametrize(
    ("fault", "survivor", "leftover"),
    [
        pytest.param(
            "after-step:3",
            "step-0000001",
            False,  # in epoch 2, between checkpoints
            marks=pytest.mark.slow,
        ),
        pytest.param("mid-checkpoint:2", "step-0000001", True, marks=pytest.mark.slow),
    ],
)
def test_tiny_sd3_killed_run_resumes_to_the_same_weights(
    sd3_setup: dict[str, Path], tmp_path: Path, fault: str, survivor: str, leftover: bool
) -> None:
    out = tmp_path / "out"
    args = [
        "train",
        "--model",
        str(sd3_setup["model"]),
        "--rewards",
        "jpeg",
        "--prompts",
        str(sd3_setup["prompts"]),
        "--output",
        str(out),
        *SD3_NFT,
    ]
    _kill_and_resume(tmp_path / "r.db", args, out, fault, survivor, leftover)
    _assert_same_state(sd3_setup["straight"], out)


@pytest.mark.parametrize(
    ("spec", "killed"),
    [("after-step:2", True), ("after-step:3", False), ("mid-checkpoint:2", False), ("", False)],
)
def test_fault_hook_kills_only_at_its_point(spec: str, killed: bool) -> None:
    code = (
        "from nftkit.train.faults import fault_point; fault_point('after-step', 2); print('alive')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, FAULT_ENV: spec},
        timeout=60,
    )
    assert result.returncode == (-signal.SIGKILL if killed else 0)
    assert (result.stdout.strip() == "alive") != killed


def test_stale_temporaries_are_removed_and_same_step_kept(tmp_path: Path) -> None:
    first = ckpt.save_checkpoint(tmp_path, 1, {"t": {"x": torch.ones(2)}}, {"s": {"v": 1}})
    stale = tmp_path / f"{ckpt.TMP_PREFIX}0000002-abc"
    stale.mkdir()
    (stale / ckpt.COMPLETE_MARKER).write_text("2")
    assert ckpt.latest_checkpoint(tmp_path) == first
    again = ckpt.save_checkpoint(tmp_path, 1, {"t": {"x": torch.zeros(2)}}, {"s": {"v": 2}})
    assert again == first and ckpt.load_json(first, "s") == {"v": 1}  # kept, not rewritten
    assert not stale.exists()
    assert sorted(p.name for p in first.iterdir()) == [
        ckpt.COMPLETE_MARKER,
        "s.json",
        "t.safetensors",
    ]
