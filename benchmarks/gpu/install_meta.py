"""Make nftkit's entry points visible on the device without building it: write
``SITE/nftkit-VERSION.dist-info`` (METADATA + entry_points.txt from pyproject.toml).

The code itself is imported from the working tree (run.sh puts the repository on PYTHONPATH);
the registry of rewards and evaluators only needs the distribution's entry points.

    python benchmarks/gpu/install_meta.py SITE
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def write_dist_info(site: Path, pyproject: Path = ROOT / "pyproject.toml") -> Path:
    """Write the dist-info folder for the project of ``pyproject`` into ``site``."""
    project = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]
    name, version = project["name"], project["version"]
    folder = site / f"{name}-{version}.dist-info"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n", encoding="utf-8"
    )
    groups = dict(project.get("entry-points", {}))
    if project.get("scripts"):
        groups["console_scripts"] = project["scripts"]
    text = "".join(
        f"[{group}]\n" + "".join(f"{k} = {v}\n" for k, v in entries.items()) + "\n"
        for group, entries in groups.items()
    )
    (folder / "entry_points.txt").write_text(text, encoding="utf-8")
    (folder / "top_level.txt").write_text(f"{name}\n", encoding="utf-8")
    return folder


if __name__ == "__main__":
    print(write_dist_info(Path(sys.argv[1])))
