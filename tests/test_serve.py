"""End-to-end tests of ``nftkit serve`` and RemoteReward against a real server process."""

from __future__ import annotations

import base64
import http.client
import http.server
import io
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFont

from nftkit.compose import RewardComposer
from nftkit.errors import NftkitError, UsageError
from nftkit.registry import create_reward
from nftkit.serve import TOKEN_ENV
from nftkit.serve.client import RemoteReward
from nftkit.serve.protocol import encode_image

TOKEN = "test-token-123"
MAX_BATCH = 16


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def noise_image(seed: int, size: tuple[int, int] = (32, 24)) -> Image.Image:
    """A random image; part of it is flat white so JPEG sizes differ between seeds."""
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
    arr[:, : int(rng.integers(0, size[0]))] = 255
    return Image.fromarray(arr)


def text_image(text: str) -> Image.Image:
    """Black text on a white 512x256 image, as the OCR reward expects to read it."""
    image = Image.new("RGB", (512, 256), "white")
    ImageDraw.Draw(image).text((24, 100), text, fill="black", font=ImageFont.load_default(size=44))
    return image


@dataclass
class Server:
    """A running ``nftkit serve`` subprocess."""

    url: str
    port: int
    process: subprocess.Popen[bytes]


def call(
    port: int,
    method: str,
    path: str,
    payload: Any = None,
    raw: bytes | None = None,
    token: str | None = TOKEN,
) -> tuple[int, Any]:
    """One HTTP request to the server on 127.0.0.1:port; returns (status, decoded JSON)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = (
        raw if raw is not None else (json.dumps(payload).encode() if payload is not None else None)
    )
    try:
        connection.request(method, path, body=data, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def wait_for_health(server: Server, log: Path, deadline_s: float = 90.0) -> None:
    start = time.monotonic()
    while time.monotonic() - start < deadline_s:
        if server.process.poll() is not None:
            raise RuntimeError(f"server exited with {server.process.returncode}: {log.read_text()}")
        try:
            status, _ = call(server.port, "GET", "/health", token=None)
            if status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"server did not answer /health in {deadline_s} s: {log.read_text()}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``nftkit serve jpeg,ocr`` on a free loopback port, with a token and a 1 MiB body limit."""
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "server.log"
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    command = [
        sys.executable,
        "-m",
        "nftkit",
        "serve",
        "jpeg,ocr",
        "--port",
        str(port),
        "--token",
        TOKEN,
        "--max-batch",
        str(MAX_BATCH),
        "--max-wait-ms",
        "20",
        "--max-body-mb",
        "1",
    ]
    with log.open("wb") as sink:
        process = subprocess.Popen(command, stdout=sink, stderr=subprocess.STDOUT, env=env)
    running = Server(url=f"http://127.0.0.1:{port}", port=port, process=process)
    try:
        wait_for_health(running, log)
        yield running
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def good_request(server: Server) -> None:
    """A valid /score request; the server must still answer it correctly."""
    image = noise_image(999)
    status, answer = call(
        server.port,
        "POST",
        "/score",
        {"reward": "jpeg", "prompts": ["p"], "images": [encode_image(image)]},
    )
    assert status == 200, answer
    expected = create_reward("jpeg")([image], ["p"]).scores
    assert answer["results"]["jpeg"]["scores"] == pytest.approx(expected.tolist(), abs=0)


# ----------------------------------------------------------------------------- tests
def test_health_and_reward_metadata(server: Server) -> None:
    status, health = call(server.port, "GET", "/health", token=None)
    assert status == 200 and health["status"] == "ok" and health["rewards"] == ["jpeg", "ocr"]
    status, info = call(server.port, "GET", "/rewards")
    assert status == 200 and info["max_batch"] == MAX_BATCH
    assert info["max_body_bytes"] == 1024 * 1024
    by_name = {entry["name"]: entry for entry in info["rewards"]}
    assert by_name["jpeg"]["range"] == [None, 0.0] and by_name["jpeg"]["higher_is_better"]
    assert by_name["ocr"]["range"] == [0.0, 1.0] and by_name["ocr"]["version"] == "1"


def test_jpeg_scores_through_server_equal_local(server: Server) -> None:
    images = [noise_image(i, (20 + 7 * i, 30)) for i in range(5)]
    prompts = [f"p{i}" for i in range(5)]
    remote = RemoteReward("jpeg", server.url, token=TOKEN, batch_size=2)  # 3 requests
    out = remote(images, prompts)
    local = create_reward("jpeg")(images, prompts)
    assert torch.equal(out.scores, local.scores)
    assert [d["jpeg_kb"] for d in out.details] == [d["jpeg_kb"] for d in local.details]
    assert remote.score_range == (float("-inf"), 0.0) and remote.higher_is_better
    # a JPEG-encoded upload is decoded and scored like the same pixels given locally
    jpeg_b64 = encode_image(images[0], "JPEG")
    status, answer = call(
        server.port, "POST", "/score", {"rewards": ["jpeg"], "prompts": ["x"], "images": [jpeg_b64]}
    )
    decoded = Image.open(io.BytesIO(base64.b64decode(jpeg_b64))).convert("RGB")
    assert status == 200 and answer["n"] == 1
    assert answer["results"]["jpeg"]["scores"][0] == pytest.approx(
        float(create_reward("jpeg")([decoded], ["x"]).scores[0]), abs=0
    )


def test_ocr_scores_through_server_equal_local(server: Server) -> None:
    images = [text_image("hello world"), text_image("nftkit serve"), text_image("hello world")]
    prompts = [
        'a sign that says "hello world"',
        'a poster with "nftkit serve"',
        'a sign "hello wrld"',
    ]
    out = RemoteReward("ocr", server.url, token=TOKEN)(images, prompts)
    local = create_reward("ocr")(images, prompts)
    assert torch.equal(out.scores, local.scores)
    assert out.details == local.details
    assert float(out.scores[0]) == 1.0 and 0.0 < float(out.scores[2]) < 1.0


def test_concurrent_clients_get_their_own_answers_in_shared_batches(server: Server) -> None:
    clients, per_client = 8, 50
    jpeg = create_reward("jpeg")
    work: list[list[tuple[list[Image.Image], torch.Tensor]]] = []
    for c in range(clients):
        items = []
        for r in range(per_client):
            images = [noise_image(100_000 * c + 10 * r + k) for k in range(1 + r % 3)]
            items.append((images, jpeg(images, ["p"] * len(images)).scores))
        work.append(items)
    _, before = call(server.port, "GET", "/health", token=None)
    failures: list[str] = []
    answered = [0] * clients

    def client(index: int) -> None:
        remote = RemoteReward("jpeg", server.url, token=TOKEN, timeout=30, retries=0)
        for r, (images, expected) in enumerate(work[index]):
            try:
                got = remote(images, [f"c{index} r{r}"] * len(images)).scores
            except Exception as exc:
                failures.append(f"client {index} request {r}: {exc}")
                continue
            if not torch.equal(got, expected):
                failures.append(
                    f"client {index} request {r}: {got.tolist()} != {expected.tolist()}"
                )
            answered[index] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert failures == []
    assert answered == [per_client] * clients
    _, after = call(server.port, "GET", "/health", token=None)
    new_requests = after["batches"]["jpeg"]["requests"] - before["batches"]["jpeg"]["requests"]
    new_batches = after["batches"]["jpeg"]["batches"] - before["batches"]["jpeg"]["batches"]
    assert new_requests == clients * per_client
    assert new_batches < new_requests  # requests from different clients shared batches
    assert after["batches"]["jpeg"]["max_batch_requests"] > 1
    assert after["batches"]["jpeg"]["max_batch_images"] <= MAX_BATCH


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _gif() -> str:
    buffer = io.BytesIO()
    noise_image(5).save(buffer, format="GIF")
    return _b64(buffer.getvalue())


IMAGE = encode_image(noise_image(7))
BAD_REQUESTS = {
    "wrong token": (dict(token="nope"), 401, "wrong bearer token"),
    "no token": (dict(token=None), 401, "needs a bearer token"),
    "oversized body": (
        dict(raw=b'{"images": ["' + b"A" * (1536 * 1024) + b'"]}'),
        413,
        "byte limit",
    ),
    "not json": (dict(raw=b"{oops"), 400, "not valid JSON"),
    "corrupt base64": (dict(images=["###"]), 400, "not valid base64"),
    "non-image bytes": (dict(images=[_b64(b"just some text, no image")]), 400, "not a PNG or JPEG"),
    "truncated png": (dict(images=[IMAGE[: len(IMAGE) // 2 // 4 * 4]]), 400, "corrupt image"),
    "gif image": (dict(images=[_gif()]), 400, "not a PNG or JPEG"),
    "count mismatch": (dict(prompts=["a", "b"]), 400, "1 images but 2 prompts"),
    "unknown reward": (dict(reward="pickscore"), 404, "'pickscore' is not served here"),
    "too many images": (dict(images=[IMAGE] * 17, prompts=["p"] * 17), 413, "at most 16"),
    "ocr prompt without quotes": (dict(reward="ocr"), 400, "no quoted target text"),
}


@pytest.mark.parametrize("case", list(BAD_REQUESTS), ids=list(BAD_REQUESTS))
def test_bad_request_gets_a_clear_4xx_and_server_keeps_serving(server: Server, case: str) -> None:
    overrides, expected_status, expected_text = BAD_REQUESTS[case]
    overrides = dict(overrides)
    token = overrides.pop("token", TOKEN)
    raw = overrides.pop("raw", None)
    payload = {"reward": "jpeg", "prompts": ["p"], "images": [IMAGE], **overrides}
    status, answer = call(server.port, "POST", "/score", payload, raw=raw, token=token)
    assert status == expected_status, answer
    assert set(answer) == {"error"} and expected_text in answer["error"]
    assert "\n" not in answer["error"]
    good_request(server)


def test_remote_reward_raises_server_message_on_4xx_without_retrying(server: Server) -> None:
    start = time.monotonic()
    with pytest.raises(NftkitError, match=r"HTTP 401.*wrong bearer token") as info:
        RemoteReward("jpeg", server.url, token="nope", retries=3, backoff=2.0)(
            [noise_image(1)], ["p"]
        )
    assert server.url in str(info.value)
    assert time.monotonic() - start < 2.0  # a 4xx is final: no backoff sleeps
    with pytest.raises(UsageError, match="does not serve 'pickscore'; it serves: jpeg, ocr"):
        RemoteReward("pickscore", server.url, token=TOKEN)([noise_image(1)], ["p"])


def test_composer_spec_with_remote_reward(server: Server, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, TOKEN)  # build_reward passes no token: it comes from the env
    images = [noise_image(i) for i in range(4)]
    prompts = ["p"] * 4
    local = create_reward("jpeg")(images, prompts).scores
    composed = RewardComposer(f"jpeg@{server.url}=2")(images, prompts)
    assert torch.allclose(composed.total, 2 * local)
    mixed = RewardComposer(f"jpeg,jpeg@{server.url}=2")(images, prompts)
    assert set(mixed.components) == {"jpeg", f"jpeg@{server.url}"}
    assert torch.allclose(mixed.total, 3 * local)


def test_unreachable_server_fails_fast_naming_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    remote = RemoteReward("jpeg", url, timeout=1.0, retries=2, backoff=0.05)
    start = time.monotonic()
    with pytest.raises(NftkitError, match="cannot reach reward server") as info:
        remote([noise_image(1)], ["p"])
    assert url in str(info.value) and "3 attempt(s)" in str(info.value)
    assert time.monotonic() - start < 5.0


class _ScriptedHandler(http.server.BaseHTTPRequestHandler):
    """Answers with the next (status, body) of the server's script, counting requests."""

    def do_GET(self) -> None:
        self._answer()

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._answer()

    def _answer(self) -> None:
        server: Any = self.server
        server.seen += 1
        status, answer = server.script.pop(0) if server.script else (500, {"error": "boom"})
        data = json.dumps(answer).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def scripted() -> Iterator[Any]:
    """A tiny HTTP server on loopback that plays back scripted answers (to drive retries)."""
    httpd: Any = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ScriptedHandler)
    httpd.script, httpd.seen = [], 0
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


REWARDS_ANSWER = {
    "rewards": [{"name": "dist", "higher_is_better": False, "range": [0, None], "version": "3"}],
    "max_batch": 2,
}


def test_client_retries_5xx_then_succeeds_and_takes_direction(scripted: Any) -> None:
    url = f"http://127.0.0.1:{scripted.server_address[1]}"
    scripted.script = [
        (503, {"error": "busy"}),
        (200, REWARDS_ANSWER),
        (500, {"error": "hiccup"}),
        (200, {"n": 2, "results": {"dist": {"scores": [0.5, None], "details": [{}, {"a": 1}]}}}),
    ]
    remote = RemoteReward("dist", url, retries=1, backoff=0.01)
    out = remote([noise_image(1), noise_image(2)], ["a", "b"])
    assert scripted.seen == 4
    assert remote.higher_is_better is False and remote.score_range == (0.0, float("inf"))
    assert remote.batch_size == 2 and remote.version == "3"
    assert out.scores[0] == 0.5 and torch.isnan(out.scores[1]) and out.details[1] == {"a": 1}


def test_client_gives_up_after_retries_naming_server_and_error(scripted: Any) -> None:
    url = f"http://127.0.0.1:{scripted.server_address[1]}"
    scripted.script = [(200, REWARDS_ANSWER)]  # then 500 "boom" forever
    remote = RemoteReward("dist", url, retries=2, backoff=0.01)
    with pytest.raises(
        NftkitError, match=r"reward server failed: .* 3 attempt\(s\): HTTP 500: boom"
    ):
        remote([noise_image(1)], ["a"])
    assert scripted.seen == 1 + 3


def test_non_loopback_host_without_token_refuses_to_start() -> None:
    # 192.0.2.0/24 is reserved for documentation: even a broken check could not listen there
    env = {k: v for k, v in os.environ.items() if k != TOKEN_ENV}
    result = subprocess.run(
        [sys.executable, "-m", "nftkit", "serve", "jpeg", "--host", "192.0.2.10", "--port", "8000"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: refusing to listen on 192.0.2.10")
    assert "--token" in lines[0]
