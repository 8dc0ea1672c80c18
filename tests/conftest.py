"""Shared fixtures: paths to the real prompt sets beside the checkout, and CLI helpers."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.shapes_helpers import tiny_shapes_config, write_tiny_shapes_model

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


PG_URL_ENV = "NFTKIT_TEST_PG_URL"
REQUIRE_PG_ENV = "NFTKIT_REQUIRE_PG"


@pytest.fixture(scope="session")
def pg_url() -> str:
    """URL of a reachable PostgreSQL test database ($NFTKIT_TEST_PG_URL).

    Skips with the reason when none is set or reachable; fails instead under .ci/run, which
    starts a server and sets $NFTKIT_REQUIRE_PG=1.
    """
    from nftkit.errors import NftkitError
    from nftkit.results.store import ResultsStore

    url = os.environ.get(PG_URL_ENV, "").strip()
    required = os.environ.get(REQUIRE_PG_ENV) == "1"
    problem = None
    if not url:
        problem = (
            f"{PG_URL_ENV} is not set (e.g. postgresql+psycopg://USER@127.0.0.1:5432/DB; "
            ".ci/run starts a server and sets it)"
        )
    else:
        try:
            ResultsStore(url).close()
        except NftkitError as exc:
            problem = f"no PostgreSQL server reachable at {PG_URL_ENV}: {exc}"
    if problem is not None:
        if required:
            pytest.fail(f"{REQUIRE_PG_ENV}=1 but {problem}")
        pytest.skip(f"PostgreSQL tests skipped: {problem}")
    return url


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-init shapes model saved in the shipped format."""
    return write_tiny_shapes_model(
        tmp_path_factory.mktemp("tiny-shapes"),
        tiny_shapes_config(32, channels=(16, 16, 32)),
        seed=0,
        random_output=True,
        dtype=torch.float32,
    )
