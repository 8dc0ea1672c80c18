"""Shared fixtures: paths to the real prompt sets beside the checkout, and CLI helpers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (the real public prompt sets); tests needing it skip when absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"public prompt sets not found at {SHARED_DATA}")
    return SHARED_DATA


def run_cli(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m nftkit ARGS`` in a subprocess and capture its output."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "nftkit", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A --weights-dir with tiny random-init checkpoints of every model reward (real formats)."""
    from nftkit.debug_tiny import make_tiny_weights

    root = tmp_path_factory.mktemp("tiny-weights")
    make_tiny_weights(root)
    return root
