"""``RemoteReward``: a reward scored by an ``nftkit serve`` server, usable wherever a name is.

In a reward spec, ``geneval@http://host:8000=0.5`` builds ``RemoteReward("geneval",
"http://host:8000")``. The client asks ``GET /rewards`` once, lazily, for the served reward's
direction, range and the server's batch limit, then sends images as base64 PNG in chunks of
``batch_size``. A 4xx answer raises NftkitError with the server's message at once; connection
errors, timeouts and 5xx/429 answers are retried with exponential backoff, then raise an
NftkitError that names the server. Only JSON is read from the server.
"""

from __future__ import annotations

import http.client
import json
import math
import os
import ssl
import time
import urllib.parse
from typing import Any

from PIL import Image

from nftkit.errors import InputError, NftkitError, UsageError
from nftkit.rewards.base import Reward, RewardOutput
from nftkit.serve import TOKEN_ENV
from nftkit.serve.protocol import encode_image, scores_from_json

RETRY_STATUSES = frozenset({408, 429})
MAX_BACKOFF_S = 30.0


def _message_of(data: bytes, status: int) -> str:
    """The server's ``{"error": ...}`` message, or the start of a non-JSON body."""
    try:
        parsed = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        text = data.decode("utf-8", "replace").strip()
        return " ".join(text.split())[:200] or f"HTTP {status} with an empty body"
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), str):
        return parsed["error"]
    return f"HTTP {status}"


class RemoteReward(Reward):
    """A reward served over HTTP by ``nftkit serve``; direction and range come from the server.

    ``retries`` is the number of further attempts after the first one, waiting
    ``backoff * 2**k`` seconds before attempt ``k + 1``. The token defaults to the environment
    variable ``NFTKIT_SERVE_TOKEN``.
    """

    name = "remote"
    input_format = "pil"

    def __init__(
        self,
        name: str,
        url: str,
        token: str | None = None,
        timeout: float = 60.0,
        retries: int = 3,
        backoff: float = 0.5,
        **reward_kwargs: Any,
    ) -> None:
        super().__init__(**reward_kwargs)
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(f"remote reward URL must look like http://host:port, got {url!r}")
        if parts.query or parts.fragment:
            raise UsageError(f"remote reward URL must not have a query or fragment: {url!r}")
        if timeout <= 0:
            raise UsageError(f"timeout must be > 0 seconds, got {timeout}")
        if retries < 0 or backoff < 0:
            raise UsageError(f"retries and backoff must be >= 0, got {retries} and {backoff}")
        self.name = name
        self.url = url.rstrip("/")
        self.token = token if token is not None else (os.environ.get(TOKEN_ENV) or None)
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.server_info: dict[str, Any] | None = None
        self._parts = parts
        self._prefix = parts.path.rstrip("/")

    def __repr__(self) -> str:
        return f"RemoteReward({self.name!r}, {self.url!r})"

    # --------------------------------------------------------------------------- HTTP
    def _send(self, method: str, path: str, body: bytes | None) -> tuple[int, bytes]:
        parts = self._parts
        connection: http.client.HTTPConnection
        if parts.scheme == "https":
            connection = http.client.HTTPSConnection(
                parts.hostname or "",
                parts.port,
                timeout=self.timeout,
                context=ssl.create_default_context(),
            )
        else:
            connection = http.client.HTTPConnection(
                parts.hostname or "", parts.port, timeout=self.timeout
            )
        headers = {"Accept": "application/json", "Connection": "close"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            connection.request(method, self._prefix + path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def request(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        """Send one JSON request with retries; returns the decoded JSON answer."""
        body = None
        if payload is not None:
            try:
                body = json.dumps(payload, allow_nan=False).encode("utf-8")
            except (TypeError, ValueError) as exc:
                raise InputError(f"cannot send to reward server {self.url}: {exc}") from exc
        attempts = self.retries + 1
        unreachable = False
        last = ""
        for attempt in range(attempts):
            if attempt:
                time.sleep(min(self.backoff * 2 ** (attempt - 1), MAX_BACKOFF_S))
            try:
                status, data = self._send(method, path, body)
            except (OSError, http.client.HTTPException) as exc:
                unreachable, last = True, f"{type(exc).__name__}: {exc}"
                continue
            if 200 <= status < 300:
                try:
                    return json.loads(data)
                except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                    raise NftkitError(f"reward server {self.url} sent invalid JSON: {exc}") from exc
            message = _message_of(data, status)
            if status < 500 and status not in RETRY_STATUSES:
                raise NftkitError(
                    f"reward server {self.url} refused {method} {path} (HTTP {status}): {message}"
                )
            unreachable, last = False, f"HTTP {status}: {message}"
        what = "cannot reach reward server" if unreachable else "reward server failed:"
        raise NftkitError(f"{what} {self.url} after {attempts} attempt(s): {last}")

    # ------------------------------------------------------------------- Reward hooks
    def load(self) -> None:
        """Ask the server for the reward's metadata and the server's batch limit."""
        answer = self.request("GET", "/rewards")
        try:
            served = {entry["name"]: entry for entry in answer["rewards"]}
            max_batch = int(answer["max_batch"])
        except (KeyError, TypeError, ValueError) as exc:
            raise NftkitError(f"reward server {self.url} sent a malformed /rewards answer") from exc
        if self.name not in served:
            raise UsageError(
                f"reward server {self.url} does not serve '{self.name}'; it serves: "
                f"{', '.join(sorted(served)) or 'nothing'}"
            )
        entry = served[self.name]
        low, high = (entry.get("range") or [None, None])[:2]
        self.higher_is_better = bool(entry.get("higher_is_better", True))
        self.score_range = (
            -math.inf if low is None else float(low),
            math.inf if high is None else float(high),
        )
        self.version = str(entry.get("version", ""))
        self.description = str(entry.get("description", ""))
        self.needs_metadata = bool(entry.get("needs_metadata", False))
        self.batch_size = max(1, min(self.batch_size, max_batch))
        self.server_info = entry

    def info(self) -> dict[str, Any]:
        """The served reward's metadata (asks the server on first use) plus its URL."""
        self.ensure_loaded()
        return {**(self.server_info or {}), "name": self.name, "url": self.url}

    def score_batch(
        self, images: list[Image.Image], prompts: list[str], metadata: list[dict[str, Any]]
    ) -> RewardOutput:
        """Send one chunk as base64 PNG and return the server's scores and details."""
        payload = {
            "rewards": [self.name],
            "prompts": prompts,
            "images": [encode_image(im, "PNG") for im in images],
            "metadata": metadata,
        }
        answer = self.request("POST", "/score", payload)
        try:
            result = answer["results"][self.name]
            scores = scores_from_json(result["scores"], len(images))
            details = result.get("details") or [{} for _ in images]
            if len(details) != len(images) or not all(isinstance(d, dict) for d in details):
                raise ValueError(f"expected {len(images)} detail objects")
        except (KeyError, TypeError, ValueError) as exc:
            raise NftkitError(
                f"reward server {self.url} sent a malformed /score answer: {exc}"
            ) from exc
        return RewardOutput(scores, details)
