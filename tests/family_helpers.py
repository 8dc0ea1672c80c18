"""Shared pieces of the tiny model-family tests (tests/test_family_*.py)."""

from __future__ import annotations

from typing import Any

from typer.testing import CliRunner

from nftkit.cli.main import app
from tests.sd3_helpers import PROMPTS, TINY_NFT  # noqa: F401  (shared by the family tests)


def invoke(*args: str) -> Any:
    """Run the nftkit CLI in-process; fail the test on a non-zero exit."""
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return result
