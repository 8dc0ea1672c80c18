"""The training report in a real headless Chromium: loads cleanly, images render (issue 21).

Chromium is Debian's package (``.ci/run`` installs it when missing); without it the test is
skipped with the reason. Console messages come out on stderr as ``CONSOLE`` lines with
``--enable-logging=stderr``; a control page that logs an error proves the check can fail.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image

from nftkit.report.training import render_training_report

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install chromium; .ci/run does it)"
)


def _shoot(page: Path, shot: Path) -> str:
    """Screenshot ``page``; return Chromium's console lines."""
    assert CHROMIUM is not None
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1200,1600",
            "--enable-logging=stderr",
            "--v=0",
            f"--screenshot={shot}",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=shot.parent,
    )
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    return "\n".join(line for line in done.stderr.splitlines() if ":CONSOLE" in line)


def _training_folder(root: Path) -> Path:
    """A training folder as the trainer writes it: history, run.json, one eval point."""
    import json

    folder = root / "run"
    rows = [
        {
            "epoch": i,
            "step": i + 1,
            "reward_mean": 0.1 * i,
            "reward/jpeg": 0.1 * i,
            "monitor/aesthetic": 5 - 0.2 * i,
            "seconds": 2.0,
        }
        for i in range(4)
    ]
    folder.mkdir()
    (folder / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "run.json").write_text(
        json.dumps(
            {
                "run_id": "abc",
                "algo": "nft",
                "model": "m",
                "rewards": "jpeg",
                "nft": {
                    "prompts_per_epoch": 2,
                    "group_size": 4,
                    "train_batch_size": 4,
                    "grad_accum": 1,
                },
            }
        )
    )
    ev = folder / "evals" / "shapes-epoch0000002"
    (ev / "00000" / "samples").mkdir(parents=True)
    for k in range(4):  # distinct solid colours: visible in the screenshot
        Image.new("RGB", (32, 32), (60 * k, 255 - 60 * k, 128)).save(
            ev / "00000" / "samples" / f"{k:04d}.png"
        )
    (ev / "done.json").write_text(
        json.dumps(
            {
                "suite": "shapes",
                "epoch": 2,
                "step": 2,
                "metrics": {"overall": 0.5},
                "images": [f"00000/samples/{k:04d}.png" for k in range(4)],
            }
        )
    )
    return folder


def test_report_page_renders_in_chromium(tmp_path: Path) -> None:
    page = tmp_path / "report.html"
    page.write_text(render_training_report(_training_folder(tmp_path)))
    console = _shoot(page, tmp_path / "shot.png")
    assert console == ""  # no console messages at all (errors included)
    with Image.open(tmp_path / "shot.png") as shot:
        rgb = shot.convert("RGB")
        low, high = rgb.convert("L").getextrema()
        assert high - low > 100  # not blank
        colours = {
            rgb.getpixel((x, y)) for x in range(0, rgb.width, 4) for y in range(0, rgb.height, 4)
        }
    # the eval thumbnails' solid colours were painted (the charts' lines are other colours)
    for k in range(4):
        assert (60 * k, 255 - 60 * k, 128) in colours, k
    control = tmp_path / "control.html"
    control.write_text('<html><body><script>console.error("boom")</script></body></html>')
    assert "boom" in _shoot(control, tmp_path / "control.png")
