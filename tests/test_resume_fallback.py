"""Resume after a damaged newest checkpoint: fall back to the previous one, never start over.

A checkpoint can be complete (marker written) and still be damaged afterwards: a truncated
safetensors file, a deleted file, a JSON file that no longer parses. Resume must warn, set the
damaged folder aside and continue from the previous complete checkpoint, ending with exactly the
state of an uninterrupted run; with no readable checkpoint left it must fail with one clear
line and write nothing.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
import torch

from nftkit.train import checkpoint as ckpt
from nftkit.train.checkpoint_read import (
    CORRUPT_PREFIX,
    CheckpointUnreadableError,
    newest_readable_checkpoint,
)
from tests.test_crash_resume import _assert_same_state, _shapes_args, _train

pytest_plugins = ["tests.test_crash_resume"]  # its shapes_model / shapes_straight fixtures


def _save(root: Path, step: int) -> Path:
    tensors = {
        name: {"w": torch.full((2,), float(step))}
        for name in ("adapter_default", "adapter_old", "ema", "optimizer")
    }
    state = {"algo": "nft", "epoch": step, "global_step": 2 * step, "history": []}
    return ckpt.save_checkpoint(
        root, step, tensors, {"trainer_state": state, "optimizer_meta": {"param_groups": []}}
    )


def _truncate(path: Path) -> None:
    file = path / "adapter_default.safetensors"
    data = file.read_bytes()
    file.write_bytes(data[: len(data) // 2])


def _delete(path: Path) -> None:
    (path / "ema.safetensors").unlink()


def _bad_json(path: Path) -> None:
    (path / "trainer_state.json").write_text('{"epoch": 2, "global_st')


DAMAGE = {
    "truncated-safetensors": (_truncate, "adapter_default.safetensors"),
    "missing-file": (_delete, "ema.safetensors: missing"),
    "bad-json": (_bad_json, "trainer_state.json"),
}


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_damaged_newest_checkpoint_falls_back_with_a_warning(tmp_path: Path, kind: str) -> None:
    _save(tmp_path, 1)
    newest = _save(tmp_path, 2)
    damage, named = DAMAGE[kind]
    damage(newest)
    warnings: list[str] = []
    state = newest_readable_checkpoint(tmp_path, on_warning=warnings.append)
    assert state is not None and state.path.name == "step-0000001"
    assert state.json["trainer_state"]["epoch"] == 1
    assert torch.equal(state.tensors["ema"]["w"], torch.full((2,), 1.0))
    assert len(warnings) == 1 and named in warnings[0] and "step-0000002" in warnings[0]
    # set aside: no longer complete, so the next save at step 2 writes a fresh checkpoint
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["step-0000001"]
    assert (tmp_path / f"{CORRUPT_PREFIX}step-0000002").is_dir()
    fresh = _save(tmp_path, 2)
    assert newest_readable_checkpoint(tmp_path, on_warning=warnings.append).path == fresh


def test_no_readable_checkpoint_is_an_error_not_a_restart(tmp_path: Path) -> None:
    _truncate(_save(tmp_path, 1))
    _bad_json(_save(tmp_path, 2))
    with pytest.raises(CheckpointUnreadableError) as info:
        newest_readable_checkpoint(tmp_path, on_warning=lambda _: None)
    message = str(info.value)
    assert "step-0000001" in message and "step-0000002" in message and "\n" not in message
    assert newest_readable_checkpoint(tmp_path / "empty") is None  # nothing saved yet: fresh


def test_resume_after_a_truncated_newest_checkpoint_matches_the_straight_run(
    shapes_model: Path, shapes_straight: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    args = _shapes_args(shapes_model, out)
    code, _, stderr = _train(tmp_path / "r.db", args, fault="after-step:5")  # in epoch 3
    assert code == -signal.SIGKILL, stderr[-2000:]
    names = [p.name for p in ckpt.list_checkpoints(out / "checkpoints")]
    assert names == ["step-0000001", "step-0000002"]
    _truncate(out / "checkpoints" / "step-0000002")
    code, stdout, stderr = _train(tmp_path / "r.db", args, resume=True)
    assert code == 0, stderr[-2000:]
    warning = [line for line in stderr.splitlines() if line.startswith("warning: ")]
    assert len(warning) == 1 and "step-0000002" in warning[0], stderr[-2000:]
    assert json.loads(stdout.strip().splitlines()[-1])["epochs"] == 3
    _assert_same_state(shapes_straight, out)  # resumed from step 1, not from scratch
