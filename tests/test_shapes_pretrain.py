"""The shapes-base pre-training script: its data mixture, task weights and output folder."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest

from nftkit.policies.shapes import ShapesPolicy
from nftkit.policies.shapes_pretrain import parse_task_weights, pretrain, training_pairs
from nftkit.shapes.judge import judge_image
from nftkit.shapes.prompts import ALL_TASKS, all_prompts

POOL = {task: all_prompts(task) for task in ALL_TASKS}
BY_PROMPT = {meta["prompt"]: meta for metas in POOL.values() for meta in metas}


def _as_images(pixels) -> np.ndarray:
    """Training pixels in [-1, 1], [B, 3, H, W] -> uint8 [B, H, W, 3] images for the judge."""
    return ((pixels.permute(0, 2, 3, 1).numpy() + 1.0) * 127.5).round().astype(np.uint8)


def _verdicts(p_correct: float, n: int = 48) -> list[bool]:
    pixels, prompts = training_pairs(np.random.default_rng(0), n, p_correct, POOL)
    images = _as_images(pixels)
    return [
        judge_image(BY_PROMPT[p], image).correct for p, image in zip(prompts, images, strict=True)
    ]


def test_p_correct_decides_whether_images_satisfy_their_prompts() -> None:
    assert all(_verdicts(1.0))
    assert not any(_verdicts(0.0))


def test_task_weights_steer_the_task_mix() -> None:
    rng = np.random.default_rng(1)
    _, only_position = training_pairs(
        rng, 32, 1.0, POOL, {t: 0.0 for t in ALL_TASKS} | {"position": 1.0}
    )
    assert {BY_PROMPT[p]["tag"] for p in only_position} == {"position"}
    _, tilted = training_pairs(rng, 600, 1.0, POOL, {"color_attr": 5.0})
    share = np.mean([BY_PROMPT[p]["tag"] == "color_attr" for p in tilted])
    assert share == pytest.approx(0.5, abs=0.06)  # 5 / (5 + 5 x 1)
    with pytest.raises(ValueError, match="positive sum"):
        training_pairs(rng, 4, 1.0, POOL, {t: 0.0 for t in ALL_TASKS})


def _quadrants_filled(pixels, prompts) -> list[bool]:
    """For each four-object image: does every 16x16 quadrant hold a drawn pixel?"""
    images = _as_images(pixels)
    filled = []
    for prompt, image in zip(prompts, images, strict=True):
        assert judge_image(BY_PROMPT[prompt], image).correct
        if BY_PROMPT[prompt]["include"][0]["count"] == 4:
            drawn = np.any(image != image[0, 0], axis=2)
            filled.append(
                all(drawn[r : r + 16, c : c + 16].any() for r in (0, 16) for c in (0, 16))
            )
    return filled


def test_count_cells_lays_counting_images_out_in_a_grid() -> None:
    only_counting = {t: 0.0 for t in ALL_TASKS} | {"counting": 1.0}
    rng = np.random.default_rng(2)
    free = _quadrants_filled(*training_pairs(rng, 48, 1.0, POOL, only_counting))
    grid = _quadrants_filled(*training_pairs(rng, 48, 1.0, POOL, only_counting, count_cells=True))
    assert grid and all(grid)  # 2x2: one object per quadrant
    assert not all(free)  # free placement often leaves a quadrant empty


def test_parse_task_weights_checks_names_and_numbers() -> None:
    assert parse_task_weights("position=2, color_attr=1.5") == {"position": 2.0, "color_attr": 1.5}
    with pytest.raises(argparse.ArgumentTypeError, match="did you mean 'position'"):
        parse_task_weights("postion=2")
    with pytest.raises(argparse.ArgumentTypeError, match="not a number"):
        parse_task_weights("position=two")


def test_pretrain_writes_a_loadable_model_and_its_recipe(tmp_path) -> None:
    stats = pretrain(
        tmp_path / "model",
        steps=2,
        batch_size=4,
        log_every=0,
        save_every=0,
        architecture={"channels": (8, 16, 16)},
        task_weights={"position": 3.0},
        count_cells=True,
    )
    policy = ShapesPolicy.from_pretrained(tmp_path / "model", autocast_dtype=None)
    assert policy.model.config.channels == (8, 16, 16)
    recorded = json.loads((tmp_path / "model" / "training.json").read_text())
    assert recorded["task_weights"] == {"position": 3.0} == stats["task_weights"]
    assert recorded["count_cells"] is True
    assert np.isfinite(recorded["final_loss"]) and recorded["final_loss"] > 0


def _wake_text_attention(model) -> None:
    import torch

    torch.nn.init.normal_(model.up_text[-1].to_out.weight, std=0.05)


def _wake_mid_blocks(model) -> None:
    import torch

    torch.nn.init.normal_(model.mid_transformer.attention[0].to_out.weight, std=0.05)


def _wake_coordinates(model) -> None:
    import torch

    torch.nn.init.normal_(model.conv_in.weight[:, 3:], std=0.2)


@pytest.mark.parametrize(
    ("change", "value", "wake"),
    [
        ("text_attention", True, _wake_text_attention),
        ("coordinates", True, _wake_coordinates),
        ("mid_blocks", 2, _wake_mid_blocks),
    ],
)
def test_grow_adds_layers_without_changing_the_output(tmp_path, change, value, wake) -> None:
    import torch

    from nftkit.policies.shapes_model import ShapesFlowModel
    from nftkit.policies.shapes_pretrain import grow
    from tests.shapes_helpers import tiny_shapes_config

    torch.manual_seed(0)
    model = ShapesFlowModel(tiny_shapes_config(16))
    torch.nn.init.normal_(model.conv_out.weight, std=0.05)
    small = ShapesPolicy(model, autocast_dtype=None)
    grown = grow(small, {change: value})
    assert getattr(grown.model.config, change) and not getattr(small.model.config, change)
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([0.3, 0.8])
    cond = small.encode_prompts(["a photo of a red circle", "a photo of a blue square"])
    with torch.no_grad():
        assert torch.allclose(
            grown.velocity(x, t, cond, None), small.velocity(x, t, cond, None), atol=1e-6
        )
        wake(grown.model)  # the new weights, once trained, do change the output
        assert not torch.allclose(
            grown.velocity(x, t, cond, None), small.velocity(x, t, cond, None), atol=1e-4
        )
    grown.save_pretrained(tmp_path / "grown", dtype=torch.float32)
    loaded = ShapesPolicy.from_pretrained(tmp_path / "grown", autocast_dtype=None)
    assert getattr(loaded.model.config, change)
    with torch.no_grad():
        assert torch.allclose(
            loaded.velocity(x, t, cond, None), grown.velocity(x, t, cond, None), atol=1e-6
        )
    with pytest.raises(ValueError, match="text_attention"):
        grow(small, {"channels": (8, 8, 8)})


def test_coordinate_channels_run_left_to_right_and_top_to_bottom() -> None:
    import torch

    from nftkit.policies.shapes_model import coordinate_channels

    grid = coordinate_channels(torch.zeros(2, 3, 4, 5))
    assert grid.shape == (2, 2, 4, 5)
    assert torch.equal(grid[0, 0, 0], torch.linspace(-1, 1, 5))  # x grows to the right
    assert torch.equal(grid[1, 1, :, 0], torch.linspace(-1, 1, 4))  # y grows downwards


def test_grow_position_scale_acts_as_scaled_position_embeddings() -> None:
    import copy

    import torch

    from nftkit.policies.shapes_model import ShapesFlowModel
    from nftkit.policies.shapes_pretrain import grow
    from tests.shapes_helpers import tiny_shapes_config

    torch.manual_seed(0)
    model = ShapesFlowModel(tiny_shapes_config(16))
    torch.nn.init.normal_(model.conv_out.weight, std=0.05)
    small = ShapesPolicy(model, autocast_dtype=None)
    grown = grow(small, {"position_scale": 40.0})
    scaled = ShapesPolicy(copy.deepcopy(model), autocast_dtype=None)
    with torch.no_grad():
        scaled.model.text.positions.mul_(40.0)
    x, t = torch.randn(2, 3, 32, 32), torch.tensor([0.3, 0.8])
    cond = small.encode_prompts(
        ["a photo of a red circle and a blue square", "a photo of a blue circle and a red square"]
    )
    with torch.no_grad():
        assert torch.allclose(
            grown.velocity(x, t, cond, None), scaled.velocity(x, t, cond, None), atol=1e-5
        )
        assert not torch.allclose(
            grown.velocity(x, t, cond, None), small.velocity(x, t, cond, None), atol=1e-4
        )


def test_shipped_base_is_small_and_its_recorded_recipe_builds_its_architecture() -> None:
    from nftkit.policies.shapes import BUILTIN_MODELS
    from nftkit.policies.shapes_model import ShapesModelConfig

    folder = BUILTIN_MODELS["shapes-base"]
    assert (folder / "model.safetensors").stat().st_size < 10_000_000  # the issue's < 10 MB
    config = json.loads((folder / "config.json").read_text())
    stages = json.loads((folder / "training.json").read_text())["stages"]
    commands = " ".join(stage["command"] for stage in stages)
    assert stages[-1]["command"].split("--output ")[1].split()[0] == "nftkit/assets/shapes-base"
    flags = {
        "text_attention": "--text-attention",
        "coordinates": "--coordinates",
        "mid_blocks": f"--mid-blocks {config['mid_blocks']}",
        "position_scale": f"--position-scale {config['position_scale']:g}",
    }
    for field, flag in flags.items():
        changed = config[field] != getattr(ShapesModelConfig(vocab_size=1), field)
        assert (flag in commands) == changed, field
