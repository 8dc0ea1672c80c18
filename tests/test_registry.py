"""The entry-point registry with a real third-party plugin installed by pip, and a broken one."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nftkit.errors import UnknownPluginError
from nftkit.registry import REWARDS, Registry
from tests.conftest import REPO_ROOT, run_cli
from tests.plugin_install import pip_install_target

EXAMPLE = REPO_ROOT / "examples" / "nftkit-colorfulness"


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A --target folder holding the example plugin and a plugin that raises on import."""
    target = tmp_path_factory.mktemp("plugins")
    pip_install_target(EXAMPLE, target)
    broken = tmp_path_factory.mktemp("broken-src")
    (broken / "nftkit_broken").mkdir()
    (broken / "nftkit_broken" / "__init__.py").write_text(
        "raise RuntimeError('this plugin is broken on purpose')\n"
    )
    (broken / "nftkit_half_done").mkdir()
    (broken / "nftkit_half_done" / "__init__.py").write_text(
        textwrap.dedent("""
        import torch
        from nftkit.rewards.base import Reward, RewardOutput

        class HalfDone(Reward):
            name = "half-done"

            def __call__(self, images, prompts, metadata=None):
                return RewardOutput(torch.zeros(len(prompts)))
    """)
    )
    (broken / "pyproject.toml").write_text(
        textwrap.dedent("""
        [build-system]
        requires = ["setuptools>=70"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "nftkit-broken"
        version = "9.9"
        [project.entry-points."nftkit.rewards"]
        broken = "nftkit_broken:Reward"
        half-done = "nftkit_half_done:HalfDone"
        [tool.setuptools]
        packages = ["nftkit_broken", "nftkit_half_done"]
    """)
    )
    pip_install_target(broken, target)
    return target


def _env(plugin_path: Path, **extra: str) -> dict[str, str]:
    pythonpath = os.pathsep.join([str(plugin_path), str(REPO_ROOT)])
    return {"PYTHONPATH": pythonpath, **extra}


def test_installed_plugin_is_listed_and_broken_one_isolated(plugin_path: Path) -> None:
    result = run_cli("rewards", "list", "--json", env=_env(plugin_path))
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert set(rows["colorfulness"]) == {"name", "distribution", "version", "status", "error"}
    assert rows["colorfulness"]["status"] == "ok"
    assert rows["colorfulness"]["distribution"] == "nftkit-colorfulness"
    assert rows["colorfulness"]["version"] == "0.1.0"
    assert rows["broken"]["status"] == "failed"
    assert "broken on purpose" in rows["broken"]["error"]
    assert rows["jpeg"]["status"] == "ok" and rows["ocr"]["status"] == "ok"


def test_scoring_with_the_installed_plugin(plugin_path: Path, tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    Image.new("RGB", (32, 32), (128, 128, 128)).save(images / "a_grey.png")
    vivid = np.zeros((32, 32, 3), dtype=np.uint8)
    vivid[:, :16] = (255, 0, 0)
    vivid[:, 16:] = (0, 0, 255)
    Image.fromarray(vivid).save(images / "b_vivid.png")
    result = run_cli(
        "score",
        "--rewards",
        "colorfulness,jpeg=0",
        "--images",
        str(images),
        "--json",
        env=_env(plugin_path),
    )
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [Path(r["image"]).name for r in rows] == ["a_grey.png", "b_vivid.png"]
    assert rows[0]["scores"]["colorfulness"] == pytest.approx(0.0, abs=1e-6)
    # rg std = 127.5, yb std = 191.25 -> spread 229.85; means rg 127.5, yb -63.75 -> 142.55 * 0.3
    assert rows[1]["scores"]["colorfulness"] == pytest.approx(229.855 + 0.3 * 142.548, rel=1e-3)
    assert rows[1]["total"] == pytest.approx(rows[1]["scores"]["colorfulness"], rel=1e-6)


def test_using_a_broken_plugin_fails_with_one_line(plugin_path: Path, tmp_path: Path) -> None:
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    result = run_cli(
        "score", "--rewards", "broken", "--images", str(tmp_path), env=_env(plugin_path)
    )
    assert result.returncode == 1
    assert result.stderr.strip().count("\n") == 0
    assert "broken on purpose" in result.stderr


def test_an_invalid_plugin_is_listed_invalid_and_refused_in_one_line(
    plugin_path: Path, tmp_path: Path
) -> None:
    listed = run_cli("rewards", "list", "--json", env=_env(plugin_path))
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows["half-done"]["status"] == "invalid"
    assert "does not implement score_batch" in rows["half-done"]["error"]
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    used = run_cli(
        "score", "--rewards", "half-done", "--images", str(tmp_path), env=_env(plugin_path)
    )
    assert used.returncode == 1
    assert used.stderr.strip().count("\n") == 0
    assert "is invalid" in used.stderr and "score_batch" in used.stderr
    assert "TypeError" not in used.stderr


def test_a_tensor_plugin_scores_a_folder_of_mixed_sizes(plugin_path: Path, tmp_path: Path) -> None:
    """512 and 256 px images interleaved, batch size 2: every image scored, in file order."""
    images = tmp_path / "mixed"
    images.mkdir()
    halves = np.zeros((256, 256, 3), dtype=np.uint8)
    halves[:, :128] = (255, 0, 0)
    halves[:, 128:] = (0, 0, 255)
    Image.new("RGB", (512, 512), (255, 0, 0)).save(images / "a_red_512.png")
    Image.new("RGB", (256, 256), (128, 128, 128)).save(images / "b_grey_256.png")
    Image.new("RGB", (512, 512), (0, 0, 255)).save(images / "c_blue_512.png")
    Image.fromarray(halves).save(images / "d_halves_256.png")
    Image.new("RGB", (512, 512), (255, 255, 0)).save(images / "e_yellow_512.png")
    result = run_cli(
        "score",
        "--rewards",
        "colorfulness",
        "--images",
        str(images),
        "--batch-size",
        "2",
        "--json",
        env=_env(plugin_path),
    )
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [Path(r["image"]).name for r in rows] == sorted(p.name for p in images.iterdir())
    # one colour: no spread, M = 0.3 * sqrt(mean_rg^2 + mean_yb^2)
    red = 0.3 * (255.0**2 + 127.5**2) ** 0.5  # rg = 255, yb = 127.5
    blue = 0.3 * 255.0  # rg = 0, yb = -255
    yellow = 0.3 * 255.0  # rg = 0, yb = 255
    expected = [red, 0.0, blue, 229.855 + 0.3 * 142.548, yellow]
    got = [r["scores"]["colorfulness"] for r in rows]
    assert got == pytest.approx(expected, rel=1e-3, abs=1e-6)


def test_allow_and_deny_lists(plugin_path: Path) -> None:
    allow = run_cli("rewards", "list", "--json", env=_env(plugin_path, NFTKIT_PLUGINS="jpeg,ocr"))
    assert {r["name"] for r in json.loads(allow.stdout)} == {"jpeg", "ocr"}
    deny = run_cli(
        "rewards", "list", "--json", env=_env(plugin_path, NFTKIT_DISABLE_PLUGINS="broken")
    )
    names = {r["name"] for r in json.loads(deny.stdout)}
    assert "broken" not in names and "colorfulness" in names


def test_unknown_name_suggests_closest() -> None:
    with pytest.raises(UnknownPluginError, match="Did you mean: ocr"):
        REWARDS.load("ocrr")


def test_listing_does_not_import(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = Registry("nftkit.rewards", "reward")
    sys.modules.pop("nftkit.rewards.ocr", None)
    assert "ocr" in registry.names()
    assert "nftkit.rewards.ocr" not in sys.modules
    registry.load("ocr")
    assert "nftkit.rewards.ocr" in sys.modules
