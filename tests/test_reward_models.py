"""Every model reward loads its tiny checkpoint through the real loading code and scores."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nftkit.errors import MissingWeightsError
from nftkit.registry import create_reward
from tests.conftest import SHARED_DATA, run_cli

MODEL_REWARDS = ("pickscore", "clipscore", "hpsv2", "aesthetic", "imagereward", "geneval")
GENEVAL_LINES = [
    {"tag": "single_object", "include": [{"class": "bench", "count": 1}], "prompt": "a photo of a bench"},
    {"tag": "counting", "include": [{"class": "clock", "count": 2}],
     "exclude": [{"class": "clock", "count": 3}], "prompt": "a photo of two clocks"},
    {"tag": "color_attr", "include": [{"class": "wine glass", "count": 1, "color": "purple"},
     {"class": "apple", "count": 1, "color": "black"}],
     "prompt": "a photo of a purple wine glass and a black apple"},
    {"tag": "position", "include": [{"class": "teddy bear", "count": 1},
     {"class": "dog", "count": 1, "position": ["right of", 0]}],
     "prompt": "a photo of a dog right of a teddy bear"},
]  # fmt: skip


def sample_images(n: int = 4) -> list[Image.Image]:
    """Random RGB images of mixed sizes (landscape and portrait)."""
    rng = np.random.default_rng(0)
    sizes = [(96, 128), (128, 80), (64, 64), (100, 140)]
    return [
        Image.fromarray(rng.integers(0, 256, (*sizes[i % 4], 3), dtype=np.uint8)) for i in range(n)
    ]


def prompts_and_metadata() -> tuple[list[str], list[dict]]:
    return [m["prompt"] for m in GENEVAL_LINES], [dict(m) for m in GENEVAL_LINES]


@pytest.mark.parametrize("name", MODEL_REWARDS)
def test_tiny_checkpoint_scores_are_finite_and_deterministic(name: str, tiny_weights: Path) -> None:
    images = sample_images()
    prompts, metadata = prompts_and_metadata()
    batched = create_reward(name, weights_dir=tiny_weights, batch_size=4)
    first = batched(images, prompts, metadata)
    second = batched(images, prompts, metadata)
    single = create_reward(name, weights_dir=tiny_weights, batch_size=1)(images, prompts, metadata)
    assert first.scores.dtype == torch.float32 and first.scores.shape == (4,)
    assert torch.isfinite(first.scores).all()
    assert torch.equal(first.scores, second.scores)
    # Batched matmuls may round differently from single-image ones: equal to float32 precision.
    torch.testing.assert_close(first.scores, single.scores, rtol=1e-5, atol=1e-5)
    assert len(first.details) == 4


def test_tensor_and_pil_inputs_agree(tiny_weights: Path) -> None:
    tensor = torch.rand(2, 3, 64, 96, generator=torch.Generator().manual_seed(0))
    reward = create_reward("clipscore", weights_dir=tiny_weights)
    from nftkit.images import to_pil

    torch.testing.assert_close(
        reward(tensor, ["a", "b"]).scores, reward(to_pil(tensor), ["a", "b"]).scores
    )


def test_options_rescale_the_same_model(tiny_weights: Path) -> None:
    images, prompts = sample_images(2), ["a red cat", "a dog"]
    raw = create_reward("pickscore", weights_dir=tiny_weights)(images, prompts).scores
    scaled = create_reward("pickscore", weights_dir=tiny_weights, training_scale=True)(
        images, prompts
    )
    torch.testing.assert_close(scaled.scores, raw / 26.0)
    cos = create_reward("clipscore", weights_dir=tiny_weights)(images, prompts).scores
    hessel = create_reward("clipscore", weights_dir=tiny_weights, hessel=True)(images, prompts)
    torch.testing.assert_close(hessel.scores, 2.5 * cos.clamp(min=0))
    v20 = create_reward("hpsv2", weights_dir=tiny_weights, hps_version="v2.0")(images, prompts)
    v21 = create_reward("hpsv2", weights_dir=tiny_weights)(images, prompts)
    assert not torch.equal(v20.scores, v21.scores)  # different checkpoint files


def test_missing_reward_folder_says_where_and_how(tmp_path: Path) -> None:
    reward = create_reward("hpsv2", weights_dir=tmp_path)
    with pytest.raises(MissingWeightsError) as info:
        reward([Image.new("RGB", (8, 8))], ["x"])
    message = str(info.value)
    assert str(tmp_path / "hpsv2") in message
    assert "nftkit rewards download hpsv2" in message
    assert "\n" not in message


def test_incomplete_folder_names_the_missing_file(tiny_weights: Path, tmp_path: Path) -> None:
    shutil.copytree(tiny_weights / "aesthetic", tmp_path / "aesthetic")
    (tmp_path / "aesthetic" / "sac+logos+ava1-l14-linearMSE.pth").unlink()
    reward = create_reward("aesthetic", weights_dir=tmp_path)
    with pytest.raises(MissingWeightsError, match=r"sac\+logos\+ava1-l14-linearMSE\.pth"):
        reward([Image.new("RGB", (8, 8))], ["x"])


def test_offline_hub_without_cache_is_one_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NFTKIT_WEIGHTS_DIR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    reward = create_reward("imagereward")
    with pytest.raises(MissingWeightsError) as info:
        reward([Image.new("RGB", (8, 8))], ["x"])
    message = str(info.value)
    assert "THUDM/ImageReward" in message and "HF_HUB_OFFLINE" in message
    assert "--weights-dir" in message


def test_cli_scores_offline_with_tiny_weights(tiny_weights: Path, tmp_path: Path) -> None:
    images = sample_images(2)
    lines = []
    for i, (image, meta) in enumerate(zip(images, GENEVAL_LINES, strict=False)):
        image.save(tmp_path / f"{i}.png")
        lines.append(json.dumps({"image": f"{i}.png", "prompt": meta["prompt"], "metadata": meta}))
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("\n".join(lines) + "\n")
    spec = ",".join(MODEL_REWARDS)
    result = run_cli(
        "--weights-dir", str(tiny_weights), "score", "--rewards", spec, "--images", str(tmp_path),
        "--prompts", str(manifest), "--json", env={"HF_HUB_OFFLINE": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 2 and set(rows[0]["scores"]) == set(MODEL_REWARDS)
    assert all(np.isfinite(list(r["scores"].values())).all() for r in rows)


def test_make_tiny_weights_cli_and_download_offline(tmp_path: Path) -> None:
    result = run_cli("debug", "make-tiny-weights", str(tmp_path), "--only", "aesthetic,hpsv2")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "aesthetic" / "sac+logos+ava1-l14-linearMSE.pth").is_file()
    assert (tmp_path / "hpsv2" / "HPS_v2.1_compressed.pt").is_file()
    state = torch.load(tmp_path / "hpsv2" / "HPS_v2.1_compressed.pt", weights_only=True)
    assert "visual.conv1.weight" in state["state_dict"]
    result = run_cli("rewards", "download", "pickscore", env={"HF_HUB_OFFLINE": "1"})
    assert result.returncode == 1
    assert "HF_HUB_OFFLINE" in result.stderr and result.stderr.count("error:") == 1


@pytest.mark.skipif(not (SHARED_DATA / "geneval").is_dir(), reason="shared GenEval data absent")
def test_geneval_class_list_matches_the_official_object_names() -> None:
    from nftkit.rewards.geneval import GENEVAL_CLASSES

    names = (SHARED_DATA / "geneval" / "object_names.txt").read_text().split("\n")
    assert list(GENEVAL_CLASSES) == [n for n in names if n]
