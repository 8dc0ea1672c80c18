"""The reward server under fuzzed bad requests (benchmarks/serve_fuzz.py, loopback only).

Every bad request gets its 4xx status with a one-line JSON error, a valid request is scored
after each case, slow uploads are cut off with 408, and a second full round of bad requests
does not grow the server's memory.
"""

from __future__ import annotations

import base64
import json
import random
import subprocess
from pathlib import Path

import pytest

from nftkit.serve import protocol
from nftkit.serve.protocol import Limits, RequestError, parse_score_request
from tests.script_loading import load_benchmark

fuzz = load_benchmark("serve_fuzz")


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="RSS is read from /proc")
def test_fuzzed_bad_requests_get_4xx_json_errors_and_memory_stays_flat() -> None:
    port = fuzz.free_port()
    process = fuzz.start_server(port)
    try:
        result = fuzz.run_fuzz(port, process.pid, per_case=2, seed=11, deadline_s=240)
        assert process.poll() is None  # still serving
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
    failures = {k: c["failures"] for k, c in result["cases"].items() if c["failures"]}
    assert not failures, json.dumps(failures)[:3000]
    assert set(result["cases"]) == set(fuzz.CASES)
    for name, case in result["cases"].items():
        assert case["requests"] == 4, name
        codes = {int(k) for k in case["statuses"] if k != "None"}
        if name == "aborted-upload":
            assert codes == set(), case
        else:
            assert codes and all(400 <= c < 500 for c in codes), (name, case)
    assert result["cases"]["slow-upload"]["statuses"] == {"408": 4}
    assert result["cases"]["decompression-bomb"]["statuses"] == {"413": 4}
    assert result["valid_before"] == result["valid_after"] == 20
    assert result["rss_round_2_growth_mib"] < 16, result["rss_mib"]
    assert result["rss_delta_mib"] < 64, result["rss_mib"]


def _body(images: list[str]) -> bytes:
    return json.dumps({"reward": "jpeg", "prompts": ["p"] * len(images), "images": images}).encode()


def test_nested_json_is_a_400_not_a_crash() -> None:
    with pytest.raises(RequestError, match="nested too deeply") as info:
        parse_score_request(b"[" * 100_000, {"jpeg"}, Limits())
    assert info.value.status == 400


def test_pixel_caps_are_checked_from_headers_before_anything_is_decoded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def no_decode(*args: object) -> None:
        raise AssertionError("decoded although over a pixel cap")

    monkeypatch.setattr(protocol, "_decode_raw", no_decode)
    image = base64.b64encode(fuzz.bilevel_png(100, 100)).decode()
    limits = Limits(max_request_pixels=25_000)  # 3 x 10 000 pixels is over it
    with pytest.raises(RequestError, match="at most 25000 pixels per request") as info:
        parse_score_request(_body([image] * 3), {"jpeg"}, limits)
    assert info.value.status == 413
    huge = base64.b64encode(fuzz.png_header_only(100_000, 100_000)).decode()
    with pytest.raises(RequestError) as info:
        parse_score_request(_body([huge]), {"jpeg"}, Limits())
    assert info.value.status == 413


def test_under_the_caps_images_decode_to_rgb() -> None:
    image = base64.b64encode(fuzz.bilevel_png(100, 100)).decode()
    parsed = parse_score_request(_body([image] * 2), {"jpeg"}, Limits(max_request_pixels=20_000))
    assert [im.size for im in parsed.images] == [(100, 100)] * 2
    assert {im.mode for im in parsed.images} == {"RGB"}


def test_every_fuzz_case_builds_a_request_that_the_parser_refuses() -> None:
    rng = random.Random(3)
    served = {"jpeg"}
    limits = Limits(max_batch=fuzz.MAX_BATCH, max_body_bytes=fuzz.MAX_BODY_MB * 1024 * 1024)
    for name in (
        "malformed-json",
        "not-an-object",
        "wrong-types",
        "missing-fields",
        "unknown-keys",
        "counts-past-limits",
        "truncated-image",
        "not-png-or-jpeg",
        "decompression-bomb",
    ):
        for _ in range(6):
            probe = fuzz.CASES[name](rng)
            with pytest.raises(RequestError) as info:
                parse_score_request(probe.body, served, limits)
            assert info.value.status in probe.expect, (name, info.value.message)
