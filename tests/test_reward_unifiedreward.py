"""UnifiedReward against a local HTTP server that speaks the OpenAI chat-completions API."""

from __future__ import annotations

import base64
import io
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from PIL import Image

from nftkit.registry import create_reward
from nftkit.rewards.unifiedreward import parse_score

ANSWERS = {
    "good": "Nice.\nFinal Score: 4.5",
    "vague": "I would say 3/5.",
    "flaky": "Final Score: 3",
    "slow": "Final Score: 5",
}


class ChatServer:
    """Answers by caption: 'good' -> 4.5, 'vague' -> no score, 'broken' -> HTTP 500,
    'flaky' -> 503 once then 3, 'slow' -> sleeps past the client's timeout, 'bad' -> not JSON."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.calls: dict[str, int] = {}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                auth = self.headers.get("Authorization")
                server.requests.append({"path": self.path, "body": body, "auth": auth})
                text = body["messages"][0]["content"][1]["text"]
                caption = text.rsplit("[", 1)[1].rstrip("]")
                server.calls[caption] = server.calls.get(caption, 0) + 1
                if caption == "broken" or (caption == "flaky" and server.calls[caption] == 1):
                    self._send(500 if caption == "broken" else 503, b'{"error": "down"}')
                    return
                if caption == "slow":
                    time.sleep(1.0)
                if caption == "bad":
                    self._send(200, b"<html>")
                    return
                reply = {
                    "choices": [{"message": {"role": "assistant", "content": ANSWERS[caption]}}]
                }
                self._send(200, json.dumps(reply).encode())

            def _send(self, status: int, data: bytes) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"


@pytest.fixture()
def chat_server() -> Iterator[ChatServer]:
    server = ChatServer()
    thread = threading.Thread(target=server.httpd.serve_forever, daemon=True)
    thread.start()
    yield server
    server.httpd.shutdown()
    server.httpd.server_close()


def make(url: str, **kwargs: Any) -> Any:
    options = {"timeout": 0.5, "retries": 1, "backoff": 0.0, **kwargs}
    return create_reward("unifiedreward", url=url, **options)


def test_parse_score_follows_the_reference_pattern() -> None:
    assert parse_score("blah Final Score: 4.25 and more") == 4.25
    assert parse_score("Final Score:3") == 3.0
    assert parse_score("Final Score: 7") is None  # only 1-5
    assert parse_score("score 4") is None


def test_request_parsing_and_scale(chat_server: ChatServer) -> None:
    image = Image.new("RGB", (64, 32), (10, 20, 30))
    reward = make(chat_server.url, model="UR-test", api_key="k")
    out = reward([image, image], ["good", "vague"])
    assert out.scores.tolist() == [pytest.approx(0.9), 0.0]
    assert out.details[0]["raw"] == 4.5 and "Final Score" in out.details[1]["error"]
    request = chat_server.requests[0]
    body = request["body"]
    assert request["path"] == "/v1/chat/completions" and request["auth"] == "Bearer k"
    assert body["model"] == "UR-test" and body["temperature"] == 0
    url = body["messages"][0]["content"][0]["image_url"]["url"]
    assert url.startswith("data:image;base64,")
    png = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert png.format == "PNG" and png.size == (512, 512)
    text = body["messages"][0]["content"][1]["text"]
    assert text.startswith("<image>\nYou are given a text caption") and "Final Score:" in text
    raw = make(chat_server.url, raw_scale=True)([image], ["good"])
    assert raw.scores.tolist() == [4.5]


def test_failures_score_zero_and_retries_recover(chat_server: ChatServer) -> None:
    image = Image.new("RGB", (16, 16))
    out = make(chat_server.url)([image] * 3, ["broken", "flaky", "bad"])
    assert out.scores.tolist() == [0.0, pytest.approx(0.6), 0.0]
    assert out.details[0]["error"] == "HTTP 500" and chat_server.calls["broken"] == 2
    assert chat_server.calls["flaky"] == 2  # 503, retried, then answered
    assert "malformed" in out.details[2]["error"]


def test_timeouts_score_zero(chat_server: ChatServer) -> None:
    start = time.monotonic()
    out = make(chat_server.url, retries=0, timeout=0.2)([Image.new("RGB", (8, 8))], ["slow"])
    assert out.scores.tolist() == [0.0]
    assert "timed out" in out.details[0]["error"].lower()
    assert time.monotonic() - start < 1.0


def test_unreachable_server_is_a_clear_error_not_silent_zeros() -> None:
    from nftkit.errors import NftkitError

    with pytest.raises(NftkitError, match=r"127\.0\.0\.1:9/v1 refused every request"):
        make("http://127.0.0.1:9/v1", retries=0)([Image.new("RGB", (8, 8))] * 2, ["a", "b"])
