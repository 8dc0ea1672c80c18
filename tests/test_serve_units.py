"""Unit tests of the reward server's parts: wire format, batching, start-up checks."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import math
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from nftkit.errors import InputError, UsageError
from nftkit.rewards.base import Reward, RewardOutput
from nftkit.rewards.jpeg import JpegCompressibility
from nftkit.serve.batching import RewardBatcher
from nftkit.serve.protocol import (
    Limits,
    RequestError,
    decode_image,
    encode_image,
    jsonable,
    parse_score_request,
    scores_from_json,
    scores_to_json,
)
from nftkit.serve.server import ServeOptions, is_loopback_host, parse_reward_names


def noise_image(seed: int, size: tuple[int, int] = (24, 20)) -> Image.Image:
    """A random RGB image; different seeds give different JPEG sizes."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    arr[:, : int(rng.integers(0, size[0]))] = 255  # vary how much of it is noise
    return Image.fromarray(arr)


def body(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


# ------------------------------------------------------------------------------ protocol
def test_png_round_trip_is_lossless_and_jpeg_is_accepted() -> None:
    image = noise_image(0)
    decoded = decode_image(encode_image(image), 0)
    assert np.array_equal(np.asarray(decoded), np.asarray(image))
    jpeg = decode_image(encode_image(image, "JPEG"), 0)
    assert jpeg.size == image.size and jpeg.mode == "RGB"


def test_decode_rejects_other_formats_and_huge_images() -> None:
    buffer = io.BytesIO()
    noise_image(1).save(buffer, format="GIF")
    with pytest.raises(RequestError, match="not a PNG or JPEG") as info:
        decode_image(base64.b64encode(buffer.getvalue()).decode(), 3)
    assert info.value.status == 400 and "images[3]" in info.value.message
    with pytest.raises(RequestError, match="at most 100 pixels") as info:
        decode_image(encode_image(noise_image(2)), 0, max_pixels=100)
    assert info.value.status == 413
    with pytest.raises(RequestError, match="not valid base64"):
        decode_image("@@@", 0)
    with pytest.raises(RequestError, match="must be a base64 string"):
        decode_image(12, 0)


def test_parse_score_request_checks() -> None:
    limits = Limits(max_batch=2)
    image = encode_image(noise_image(3))
    ok = parse_score_request(body(reward="jpeg", prompts=["a"], images=[image]), {"jpeg"}, limits)
    assert ok.rewards == ["jpeg"] and ok.prompts == ["a"] and ok.metadata is None
    cases = [
        (b"{not json", 400, "not valid JSON"),
        (body(reward="jpeg", rewards=["jpeg"], prompts=["a"], images=[image]), 400, "exactly one"),
        (body(reward="ocr", prompts=["a"], images=[image]), 404, "not served here"),
        (body(reward="jpeg", prompts=["a", "b"], images=[image]), 400, "1 images but 2 prompts"),
        (body(reward="jpeg", prompts=["a"] * 3, images=[image] * 3), 413, "at most 2"),
        (body(reward="jpeg", prompt=["a"], images=[image]), 400, "unknown key"),
        (body(reward="jpeg", prompts=["a"], images=[image], metadata=[{}, {}]), 400, "metadata"),
        (body(reward="jpeg", prompts=[1], images=[image]), 400, "list of strings"),
    ]
    for raw, status, text in cases:
        with pytest.raises(RequestError, match=text) as info:
            parse_score_request(raw, {"jpeg"}, limits)
        assert info.value.status == status


def test_json_helpers_handle_tensors_and_non_finite() -> None:
    value = {"t": torch.tensor([1.5, float("nan")]), "n": np.float32(2.0), 3: (1, "x")}
    assert jsonable(value) == {"t": [1.5, None], "n": 2.0, "3": [1, "x"]}
    assert scores_to_json([1.0, math.inf]) == [1.0, None]
    restored = scores_from_json([1.0, None], 2)
    assert restored[0] == 1.0 and math.isnan(restored[1])
    with pytest.raises(ValueError, match="expected 3 scores"):
        scores_from_json([1.0], 3)
    with pytest.raises(ValueError, match="not a number"):
        scores_from_json([True], 1)


# -------------------------------------------------------------------------- start-up
def test_loopback_detection() -> None:
    for host in ("127.0.0.1", "127.8.0.1", "localhost", "::1", "[::1]"):
        assert is_loopback_host(host), host
    for host in ("0.0.0.0", "10.0.0.1", "::", "example.com", "192.0.2.10"):
        assert not is_loopback_host(host), host


def test_serve_options_need_a_token_off_loopback() -> None:
    with pytest.raises(UsageError, match=r"refusing to listen on 0\.0\.0\.0 without a token"):
        ServeOptions(rewards=("jpeg",), host="0.0.0.0").validate()
    ServeOptions(rewards=("jpeg",), host="0.0.0.0", token="t").validate()
    ServeOptions(rewards=("jpeg",)).validate()
    with pytest.raises(UsageError, match="max-batch"):
        ServeOptions(rewards=("jpeg",), max_batch=0).validate()
    assert parse_reward_names(" jpeg, ocr ") == ["jpeg", "ocr"]
    for bad in ("", "jpeg,,ocr", "jpeg,jpeg", "jpeg=2", "jpeg@http://x"):
        with pytest.raises(UsageError):
            parse_reward_names(bad)


# -------------------------------------------------------------------------- batching
class PickyReward(Reward):
    """Scores the image width, and refuses the prompt 'bad' (a test reward)."""

    name = "picky"

    def score_batch(
        self, images: list[Image.Image], prompts: list[str], metadata: list[dict[str, Any]]
    ) -> RewardOutput:
        if "bad" in prompts:
            raise InputError("prompt 'bad' is refused")
        return RewardOutput(torch.tensor([float(im.width) for im in images]))


def test_batcher_groups_concurrent_requests_and_returns_each_its_own() -> None:
    reward = JpegCompressibility(batch_size=64)
    requests = [[noise_image(10 * i + k) for k in range(1 + i % 3)] for i in range(9)]

    async def main() -> tuple[list[RewardOutput], RewardBatcher]:
        batcher = RewardBatcher("jpeg", reward, max_batch=8, max_wait_s=0.2)
        batcher.start()
        try:
            outs = await asyncio.gather(
                *(batcher.submit(images, ["p"] * len(images), None) for images in requests)
            )
        finally:
            await batcher.stop()
        return list(outs), batcher

    outs, batcher = asyncio.run(main())
    for images, out in zip(requests, outs, strict=True):
        assert torch.equal(out.scores, reward(images, ["p"] * len(images)).scores)
    stats = batcher.stats
    total = sum(len(r) for r in requests)
    assert stats.requests == 9 and stats.images == total
    assert stats.max_batch_images <= 8  # a request that would overflow waits for the next batch
    assert stats.batches < 9 and stats.max_batch_requests > 1


def test_batcher_reports_a_failure_to_its_own_request_only() -> None:
    reward = PickyReward()
    prompts = ["ok", "bad", "ok"]

    async def main() -> list[Any]:
        batcher = RewardBatcher("picky", reward, max_batch=16, max_wait_s=0.2)
        batcher.start()
        try:
            return await asyncio.gather(
                *(
                    batcher.submit([noise_image(i, (8 + i, 8))], [p], None)
                    for i, p in enumerate(prompts)
                ),
                return_exceptions=True,
            )
        finally:
            await batcher.stop()

    results = asyncio.run(main())
    assert isinstance(results[1], InputError)
    assert [float(results[0].scores[0]), float(results[2].scores[0])] == [8.0, 10.0]
