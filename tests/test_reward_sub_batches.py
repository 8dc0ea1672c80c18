"""Tensor-format rewards get same-size sub-batches; PIL rewards get the images as they come."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from PIL import Image

from nftkit.rewards.base import Reward, RewardOutput


class _Recording(Reward):
    """Score = 1000 * red value in [0, 1] + image height; records every batch it is handed."""

    name = "recording"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.calls: list[tuple[Any, list[str]]] = []

    def score_batch(
        self, images: Any, prompts: list[str], metadata: list[dict[str, Any]]
    ) -> RewardOutput:
        """Red * 1000 + height, details name the prompt."""
        if isinstance(images, torch.Tensor):
            self.calls.append((tuple(images.shape), list(prompts)))
            scores = images[:, 0, 0, 0] * 1000 + images.shape[2]
        else:
            self.calls.append(([im.size for im in images], list(prompts)))
            scores = torch.tensor(
                [im.getpixel((0, 0))[0] / 255 * 1000 + im.size[1] for im in images]
            )
        return RewardOutput(
            scores,
            [{"prompt": p, "tag": m.get("tag")} for p, m in zip(prompts, metadata, strict=True)],
        )


class _TensorRecording(_Recording):
    input_format = "tensor"


SIZES = [8, 4, 8, 8, 4, 16]
REDS = [255, 51, 102, 0, 204, 153]


def _images() -> list[Image.Image]:
    return [Image.new("RGB", (s, s), (r, 0, 0)) for s, r in zip(SIZES, REDS, strict=True)]


def test_tensor_rewards_score_mixed_sizes_in_same_size_batches_in_input_order() -> None:
    reward = _TensorRecording(batch_size=2)
    prompts = [f"p{i}" for i in range(len(SIZES))]
    out = reward(_images(), prompts, [{"tag": i} for i in range(len(SIZES))])
    expected = [r / 255 * 1000 + s for r, s in zip(REDS, SIZES, strict=True)]
    assert out.scores.tolist() == pytest.approx(expected, rel=1e-6)
    assert [d["prompt"] for d in out.details] == prompts
    assert [d["tag"] for d in out.details] == list(range(len(SIZES)))
    # 8 px: p0 p2 p3 (two batches of at most 2), 4 px: p1 p4, 16 px: p5
    assert reward.calls == [
        ((2, 3, 8, 8), ["p0", "p2"]),
        ((1, 3, 8, 8), ["p3"]),
        ((2, 3, 4, 4), ["p1", "p4"]),
        ((1, 3, 16, 16), ["p5"]),
    ]


def test_tensor_rewards_of_one_size_and_tensor_input_keep_plain_batching() -> None:
    reward = _TensorRecording(batch_size=4)
    batch = torch.zeros(5, 3, 6, 6)
    out = reward(batch, ["a"] * 5)
    assert out.scores.tolist() == [6.0] * 5
    assert [c[0] for c in reward.calls] == [(4, 3, 6, 6), (1, 3, 6, 6)]


def test_pil_rewards_get_mixed_sizes_unchanged_in_order() -> None:
    reward = _Recording(batch_size=4)
    prompts = [f"p{i}" for i in range(len(SIZES))]
    out = reward(_images(), prompts)
    expected = [r / 255 * 1000 + s for r, s in zip(REDS, SIZES, strict=True)]
    assert out.scores.tolist() == pytest.approx(expected, rel=1e-6)
    assert reward.calls == [
        ([(8, 8), (4, 4), (8, 8), (8, 8)], ["p0", "p1", "p2", "p3"]),
        ([(4, 4), (16, 16)], ["p4", "p5"]),
    ]
