"""A run folder is locked while a process trains in it (fcntl.flock, the holder's pid inside).

The holder is a real second process; the lock goes away when it exits, kill -9 included.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from nftkit.train.run_lock import LOCK_FILE, RunFolderLocked, RunLock, lock_holder
from tests.shapes_helpers import TINY_TRAIN, tiny_shapes_config, write_tiny_shapes_model

HOLD = (
    "import sys; from nftkit.train.run_lock import RunLock; lock = RunLock(sys.argv[1]); "
    "lock.acquire(); print('locked', flush=True); sys.stdin.read()"
)


def _cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str):
    from nftkit.cli.main import run

    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["nftkit", *args])
    try:
        run()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


def _hold(folder: Path) -> subprocess.Popen[str]:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    return holder


def _snapshot(root: Path) -> dict[str, float]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")}


def test_second_resume_fails_at_once_naming_the_holder_then_works_after_kill_9(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    model = write_tiny_shapes_model(tmp_path / "model", tiny_shapes_config(8), seed=3)
    out = tmp_path / "run"
    db = f"sqlite:///{tmp_path / 'r.db'}"
    args = [
        "--db",
        db,
        "train",
        "--model",
        str(model),
        "--rewards",
        "jpeg",
        "--prompts",
        "shapes-train",
        "--output",
        str(out),
    ]
    code, _, err = _cli(monkeypatch, capsys, *args, *TINY_TRAIN)
    assert code == 0, err
    assert lock_holder(out) is None and (out / LOCK_FILE).read_text() == ""  # released on exit

    holder = _hold(out)
    try:
        before = _snapshot(out)
        started = time.monotonic()
        code, stdout, err = _cli(monkeypatch, capsys, *args, *TINY_TRAIN, "--resume")
        elapsed = time.monotonic() - started
        assert code == 2 and stdout == ""
        (line,) = [x for x in err.splitlines() if x.strip()]
        assert line.startswith("error: ") and f"pid {holder.pid}" in line and str(out) in line
        assert elapsed < 5.0, elapsed  # before the model is loaded
        assert _snapshot(out) == before  # nothing touched
        assert lock_holder(out) == holder.pid
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
    assert holder.returncode == -signal.SIGKILL
    assert lock_holder(out) is None  # the kernel released it with the process
    steps = [
        a if a != "1" or TINY_TRAIN[i - 1] != "--steps" else "2" for i, a in enumerate(TINY_TRAIN)
    ]
    code, stdout, err = _cli(monkeypatch, capsys, *args, *steps, "--resume")
    assert code == 0, err
    assert json.loads(stdout.strip().splitlines()[-1])["epochs"] == 2


def test_lock_is_exclusive_within_a_process_and_names_its_pid(tmp_path: Path) -> None:
    with RunLock(tmp_path) as first:
        assert first.held and (tmp_path / LOCK_FILE).read_text().strip() == str(os.getpid())
        with pytest.raises(RunFolderLocked, match=f"pid {os.getpid()}"):
            RunLock(tmp_path).acquire()
    assert not first.held and lock_holder(tmp_path) is None
    again = RunLock(tmp_path)
    again.acquire()  # free again
    again.release()


def test_a_missing_folder_is_locked_only_once_created(tmp_path: Path) -> None:
    folder = tmp_path / "new"
    with RunLock(folder) as lock:
        assert not lock.held and not folder.exists()
        folder.mkdir()
        lock.acquire()
        assert lock_holder(folder) == os.getpid()
    assert lock_holder(folder) is None
