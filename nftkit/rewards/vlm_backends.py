"""Backends that put one question about one image to a vision-language model.

``OpenAIChatBackend`` talks to any OpenAI-compatible chat-completions server (vLLM, sglang):
the image travels as a base64 PNG data URL before the text, temperature 0, with a per-request
timeout, retries with exponential backoff on connection errors, timeouts and 408/429/5xx
answers, and a concurrency limit (``ask_many``). A request that still fails comes back as a
``VlmAnswer`` with ``error`` set, never as an exception; the caller's failure policy decides.
With ``top_logprobs`` the server's log-probabilities of the first generated token are returned
too (the OpenAI ``logprobs`` / ``top_logprobs`` fields), which the probability templates use.
"""

from __future__ import annotations

import base64
import io
import json
import math
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from nftkit.errors import UsageError

UNREACHABLE = "unreachable: "
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class VlmQuery:
    """One question: the image, the user text, and how much to generate."""

    image: Image.Image
    text: str
    max_tokens: int | None = None
    top_logprobs: int = 0
    candidates: tuple[str, ...] = ()
    """Answer strings whose first-token probability a local backend reports exactly."""


@dataclass
class VlmAnswer:
    """The model's text and first-token probabilities {token text: p}, or the error."""

    text: str | None
    first_token_probs: dict[str, float] = field(default_factory=dict)
    error: str | None = None

    @property
    def unreachable(self) -> bool:
        """True when the server refused the connection (it is not running)."""
        return bool(self.error and self.error.startswith(UNREACHABLE))


def image_data_url(image: Image.Image, side: int | None = None) -> str:
    """``image`` (resized to side x side, bicubic, when given) as a ``data:image;base64,`` PNG."""
    image = image.convert("RGB")
    if side is not None:
        image = image.resize((side, side), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def parse_first_token_probs(choice: dict[str, Any]) -> dict[str, float]:
    """{token: probability} of the first generated token from an OpenAI ``choice``.

    Uses ``logprobs.content[0].top_logprobs`` (and the chosen token itself); a token listed
    twice keeps its largest probability. Empty when the server sent no logprobs.
    """
    logprobs = choice.get("logprobs") or {}
    content = logprobs.get("content") or []
    if not content:
        return {}
    first = content[0]
    probs: dict[str, float] = {}
    entries = [first, *(first.get("top_logprobs") or [])]
    for entry in entries:
        token, value = str(entry["token"]), float(entry["logprob"])
        probs[token] = max(probs.get(token, 0.0), math.exp(value))
    return probs


class OpenAIChatBackend:
    """An OpenAI-compatible chat server (base URL ending in /v1)."""

    kind = "openai"

    def __init__(
        self,
        url: str,
        model: str,
        api_key: str = "",
        timeout: float = 120.0,
        retries: int = 2,
        backoff: float = 1.0,
        concurrency: int = 16,
        image_side: int | None = None,
    ) -> None:
        """``timeout`` per request in seconds; ``retries`` further attempts after a transient
        failure; ``image_side`` resizes images to a square before sending (None: as they are)."""
        self.url = url.rstrip("/")
        if not self.url.startswith(("http://", "https://")):
            raise UsageError(f"VLM server URL must start with http:// or https://: {self.url!r}")
        if timeout <= 0 or retries < 0 or backoff < 0 or concurrency < 1:
            raise UsageError(
                "VLM backend: timeout > 0, retries >= 0, backoff >= 0, concurrency >= 1"
            )
        self.model, self.api_key = model, api_key
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self.concurrency, self.image_side = concurrency, image_side

    def describe(self) -> dict[str, Any]:
        """What produced the answers (for a run's config)."""
        return {"backend": self.kind, "url": self.url, "model": self.model}

    def request_body(self, query: VlmQuery) -> dict[str, Any]:
        """The chat-completions request of one query."""
        content = [
            {
                "type": "image_url",
                "image_url": {"url": image_data_url(query.image, self.image_side)},
            },
            {"type": "text", "text": query.text},
        ]
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": "user", "content": content}],
            "temperature": 0,
        }
        if query.max_tokens is not None:
            body["max_tokens"] = query.max_tokens
        if query.top_logprobs:
            body["logprobs"] = True
            body["top_logprobs"] = query.top_logprobs
        return body

    def _post(self, body: dict[str, Any]) -> VlmAnswer:
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(
            f"{self.url}/chat/completions", json.dumps(body).encode(), headers, method="POST"
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            data = json.loads(response.read())
        choice = data["choices"][0]
        text = choice["message"]["content"]
        return VlmAnswer(str(text) if text is not None else "", parse_first_token_probs(choice))

    def ask(self, query: VlmQuery) -> VlmAnswer:
        """One query with retries; an answer with ``error`` set once the retries are spent."""
        body = self.request_body(query)
        error = "no attempt"
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                return self._post(body)
            except urllib.error.HTTPError as exc:
                error = f"HTTP {exc.code}"
                if exc.code not in RETRY_STATUSES:
                    break
            except (urllib.error.URLError, TimeoutError, OSError) as exc:
                reason = getattr(exc, "reason", exc)
                error = f"{type(reason).__name__}: {reason}"
                if isinstance(reason, ConnectionError):
                    error = f"{UNREACHABLE}{error}"
            except (ValueError, KeyError, IndexError, TypeError) as exc:
                error = f"malformed answer ({type(exc).__name__})"
                break
        return VlmAnswer(None, {}, error)

    def ask_many(self, queries: list[VlmQuery]) -> list[VlmAnswer]:
        """All queries, at most ``concurrency`` in flight, answers in query order."""
        if not queries:
            return []
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(queries))) as pool:
            return list(pool.map(self.ask, queries))


BACKENDS = ("openai", "transformers")


def make_backend(
    kind: str, url: str, model: str, api_key: str = "", device: str = "cpu", **options: Any
) -> Any:
    """An ``openai`` (server at ``url``) or ``transformers`` (local ``model``) backend."""
    if kind == "openai":
        return OpenAIChatBackend(url, model, api_key, **options)
    if kind == "transformers":
        from nftkit.rewards.vlm_local import TransformersVlmBackend

        return TransformersVlmBackend(model, device=device)
    raise UsageError(f"unknown VLM backend {kind!r}; choose one of {', '.join(BACKENDS)}")
