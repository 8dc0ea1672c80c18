"""Install a plugin project into a ``--target`` folder, as the registry tests need."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def pip_install_target(project: Path, target: Path) -> None:
    """``pip install --no-deps --target TARGET PROJECT`` with this interpreter (quiet)."""
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "--disable-pip-version-check",
            "--target",
            str(target),
            str(project),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
