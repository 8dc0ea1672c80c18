"""A loopback HTTP server imitating the OpenAI chat-completions API, for VLM-judge tests.

It binds 127.0.0.1 only. A ``responder(body) -> Reply`` decides each answer (text, first-token
logprobs, HTTP status, delay, or raw bytes for a malformed answer). Run as a script
(``python -m tests.vlm_fake_server --port 0``) it serves ``deterministic_reply``: answers that
depend only on the question text, for end-to-end runs of the suites; it prints its base URL.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    """One answer: status, text, first-token {token: probability}, delay, or raw bytes."""

    text: str = ""
    top: dict[str, float] = field(default_factory=dict)
    status: int = 200
    delay: float = 0.0
    raw: bytes | None = None


def chat_json(text: str, top: dict[str, float]) -> dict[str, Any]:
    """An OpenAI chat-completions response; ``top`` becomes the first token's top_logprobs."""
    choice: dict[str, Any] = {
        "index": 0,
        "message": {"role": "assistant", "content": text},
        "finish_reason": "stop",
    }
    if top:
        best = max(top, key=lambda t: top[t])
        choice["logprobs"] = {
            "content": [
                {
                    "token": best,
                    "logprob": math.log(top[best]),
                    "top_logprobs": [{"token": t, "logprob": math.log(p)} for t, p in top.items()],
                }
            ]
        }
    return {"id": "fake", "object": "chat.completion", "choices": [choice]}


def question_of(body: dict[str, Any]) -> str:
    """The text part of the first user message."""
    parts = body["messages"][0]["content"]
    return next(p["text"] for p in parts if p.get("type") == "text")


class FakeChatServer:
    """The server; ``requests`` records every request body, ``url`` is its base URL (…/v1)."""

    def __init__(self, responder: Callable[[dict[str, Any]], Reply]) -> None:
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append(body)
                reply = responder(body)
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.raw is not None:
                    data = reply.raw
                elif reply.status != 200:
                    data = b'{"error": "fake failure"}'
                else:
                    data = json.dumps(chat_json(reply.text, reply.top)).encode()
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> FakeChatServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _unit(text: str) -> float:
    """A number in (0, 1) fixed by ``text``."""
    return (int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) % 9973 + 1) / 9975


def deterministic_reply(body: dict[str, Any]) -> Reply:
    """Answers fixed by the question: logprob requests get {"Yes", "No", "two", "2"} mass,
    text requests "yes"/"no" (VQA) or a "Final Score:" line."""
    question = question_of(body)
    u = _unit(question)
    if body.get("logprobs"):
        return Reply("Yes", {"Yes": 0.6 * u, "No": 0.6 * (1 - u), "two": 0.2, "2": 0.1})
    if "Final Score" in question:
        return Reply(f"Final Score: {1 + round(4 * u)}")
    return Reply("yes" if u > 0.3 else "no")


def main() -> None:
    """Serve ``deterministic_reply`` on 127.0.0.1 until interrupted."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=600.0, help="stop after this long")
    args = parser.parse_args()
    with FakeChatServer(deterministic_reply) as server:
        print(server.url, flush=True)
        time.sleep(args.seconds)


if __name__ == "__main__":
    main()
