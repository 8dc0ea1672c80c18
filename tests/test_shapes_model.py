"""The shapes flow U-Net: the pixel-level default and the 2x2-patch variant."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from nftkit.policies.shapes import ShapesPolicy
from nftkit.policies.shapes_model import ShapesFlowModel, ShapesModelConfig
from nftkit.shapes.prompts import VOCAB
from tests.shapes_helpers import tiny_shapes_config


def test_patch_model_maps_pixels_to_pixels_and_round_trips(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = ShapesFlowModel(tiny_shapes_config(32, channels=(16, 16, 32), patch_size=2))
    assert model.conv_in.in_channels == 12 and model.conv_out.out_channels == 12
    torch.nn.init.normal_(model.conv_out.weight, std=0.02)
    policy = ShapesPolicy(model, autocast_dtype=None)
    x = torch.randn(2, 3, 32, 32)
    t = torch.tensor([0.2, 0.9])
    cond = policy.encode_prompts(["a photo of a red circle", "a photo of two squares"])
    with torch.no_grad():
        v = policy.velocity(x, t, cond, adapter=None)
    assert v.shape == x.shape and v.is_contiguous()
    policy.save_pretrained(tmp_path, dtype=torch.float32)
    assert json.loads((tmp_path / "config.json").read_text())["patch_size"] == 2
    loaded = ShapesPolicy.from_pretrained(tmp_path, autocast_dtype=None)
    with torch.no_grad():
        assert torch.allclose(loaded.velocity(x, t, cond, adapter=None), v, atol=1e-6)


def test_configs_without_patch_size_load_as_pixel_level() -> None:
    data = tiny_shapes_config(32, channels=(16, 16, 32)).to_dict()
    del data["patch_size"]
    assert ShapesModelConfig.from_dict(data).patch_size == 1


def test_patch_model_is_cheaper_per_forward() -> None:
    """FLOPs, not time: the 2x2-patch net at (64, 96, 128) costs less than the pixel default."""
    from torch.utils.flop_counter import FlopCounterMode

    def flops(config: ShapesModelConfig) -> int:
        model = ShapesFlowModel(config).eval()
        x, t = torch.randn(1, 3, 32, 32), torch.rand(1)
        ids, mask = torch.zeros(1, 16, dtype=torch.long), torch.ones(1, 16)
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(x, t, ids, mask)
        return counter.get_total_flops()

    pixel = flops(ShapesModelConfig(vocab_size=len(VOCAB)))
    patch = flops(ShapesModelConfig(vocab_size=len(VOCAB), patch_size=2, channels=(64, 96, 128)))
    assert patch < 0.7 * pixel
