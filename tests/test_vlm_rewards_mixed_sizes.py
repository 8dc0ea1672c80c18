"""Every new VLM reward scores a folder of mixed-size images, independently of batch size."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from nftkit.registry import create_reward
from tests.vlm_fake_server import FakeChatServer, deterministic_reply

SIZES = [(64, 64), (96, 48), (33, 70), (128, 80), (20, 20)]


def folder(tmp_path: Path) -> list[Image.Image]:
    for i, (w, h) in enumerate(SIZES):
        Image.new("RGBA" if i % 2 else "RGB", (w, h), (40 * i, 200 - 30 * i, 90, 180)).save(
            tmp_path / f"{i}.png"
        )
    return [Image.open(tmp_path / f"{i}.png") for i in range(len(SIZES))]


@pytest.mark.parametrize(
    ("name", "options"),
    [
        ("vlm-judge", {"template": "unifiedreward-think"}),
        ("vlm-judge", {"template": "yes-prob"}),
        ("vlm-judge", {"template": "likert"}),
        ("unifiedreward", {}),
        ("geneval2", {}),
    ],
)
def test_mixed_size_folder(tmp_path: Path, shared_data: Path, name: str, options: dict) -> None:
    images = folder(tmp_path)
    records = [
        json.loads(x)
        for x in (shared_data / "geneval2" / "geneval2_data.jsonl")
        .read_text()
        .splitlines()[: len(images)]
    ]
    prompts = [r["prompt"] for r in records]
    meta = [{k: v for k, v in r.items() if k != "prompt"} for r in records]
    with FakeChatServer(deterministic_reply) as server:
        outs = [
            create_reward(name, url=server.url, timeout=5.0, batch_size=b, **options)(
                images, prompts, meta
            )
            for b in (1, 4)
        ]
        sizes = {len(b["messages"][0]["content"][0]["image_url"]["url"]) for b in server.requests}
    assert outs[0].scores.tolist() == outs[1].scores.tolist()
    assert outs[0].scores.shape == (len(images),)
    assert all(0.0 <= s <= 1.0 for s in outs[0].scores.tolist())
    assert len(sizes) > 1 or name == "unifiedreward"  # images sent as given (UR resizes to 512)
    if name != "vlm-judge" or options["template"] == "yes-prob":
        assert len(set(outs[0].scores.tolist())) > 1  # answers differ by prompt
