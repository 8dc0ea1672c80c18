"""The Starlette application behind ``nftkit serve``.

Endpoints (every error is ``{"error": "<one line>"}``):

- ``GET /health``: ``{"status": "ok", "rewards": [names], "uptime_s": s, "batches": {name:
  {requests, images, batches, max_batch_images, max_batch_requests, failed_requests}}}``;
  open without a token, so that probes work.
- ``GET /rewards``: ``{"rewards": [{name, higher_is_better, range, version, description,
  needs_metadata}], "max_batch": n, "max_body_bytes": n, "max_image_pixels": n,
  "max_request_pixels": n}``.
- ``POST /score``: see :mod:`nftkit.serve.protocol`.

When the server has a token, ``/rewards`` and ``/score`` need ``Authorization: Bearer TOKEN``.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from nftkit.errors import UsageError
from nftkit.rewards.base import Reward
from nftkit.serve.batching import QueueFullError, RewardBatcher
from nftkit.serve.protocol import (
    Limits,
    RequestError,
    ScoreRequest,
    jsonable,
    parse_score_request,
    scores_to_json,
)

logger = logging.getLogger(__name__)


def error_response(status: int, message: str, headers: Mapping[str, str] | None = None) -> Response:
    """The JSON error answer ``{"error": message}``."""
    return JSONResponse({"error": message}, status_code=status, headers=dict(headers or {}))


async def _drain(request: Request, cap: int) -> None:
    """Read and drop what is left of the body (up to ``cap`` bytes), so the error reaches the
    client instead of a connection reset."""
    seen = 0
    try:
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > cap:
                return
    except Exception:  # the client went away, or the body was consumed already
        return


def _limit_text(limit: int) -> str:
    return f"this server's {limit} byte limit; send fewer or smaller images per request"


async def read_body(request: Request, limit: int, timeout_s: float | None = None) -> bytes:
    """The request body, or RequestError: 413 as soon as it grows past ``limit`` bytes, 408
    when it has not fully arrived within ``timeout_s``, 400 when the client went away."""
    try:
        return await asyncio.wait_for(_read_body(request, limit), timeout_s)
    except TimeoutError:
        raise RequestError(
            408, f"request body did not arrive within {timeout_s:g} s; send it in one go"
        ) from None
    except ClientDisconnect:
        raise RequestError(400, "client disconnected before the body was complete") from None


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            too_big = int(declared) > limit
        except ValueError as exc:
            raise RequestError(400, f"bad Content-Length header {declared!r}") from exc
        if too_big:
            await _drain(request, 4 * limit)
            raise RequestError(413, f"body of {declared} bytes is larger than {_limit_text(limit)}")
    chunks: list[bytes] = []
    total = 0
    async for chunk in request.stream():
        total += len(chunk)
        if total > limit:
            await _drain(request, 4 * limit)
            raise RequestError(413, f"body is larger than {_limit_text(limit)}")
        chunks.append(chunk)
    return b"".join(chunks)


class RewardServer:
    """Served rewards, their batchers, the limits and the optional bearer token."""

    def __init__(
        self,
        rewards: Mapping[str, Reward],
        limits: Limits | None = None,
        token: str | None = None,
        max_wait_s: float = 0.02,
    ) -> None:
        if not rewards:
            raise UsageError("give at least one reward to serve")
        self.rewards = dict(rewards)
        self.limits = limits or Limits()
        self.token = token or None
        self.started = time.monotonic()
        self.batchers = {
            name: RewardBatcher(name, reward, self.limits.max_batch, max_wait_s)
            for name, reward in self.rewards.items()
        }

    # ------------------------------------------------------------------------- plumbing
    def authorized(self, request: Request) -> bool:
        """True when no token is set or the request carries ``Authorization: Bearer TOKEN``."""
        if self.token is None:
            return True
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return False
        return hmac.compare_digest(given.strip().encode(), self.token.encode())

    def _unauthorized(self, request: Request) -> Response:
        has_header = "authorization" in request.headers
        message = "wrong bearer token" if has_header else "this server needs a bearer token"
        return error_response(401, message, {"WWW-Authenticate": "Bearer"})

    def reward_infos(self) -> list[dict[str, Any]]:
        """Metadata of each served reward, named as it is served."""
        infos = []
        for name, reward in self.rewards.items():
            info = reward.info()
            info["name"] = name
            info["needs_metadata"] = bool(getattr(reward, "needs_metadata", False))
            infos.append(info)
        return infos

    @asynccontextmanager
    async def lifespan(self, app: Starlette) -> AsyncIterator[None]:
        """Start a batching worker per reward; stop them at shutdown."""
        for batcher in self.batchers.values():
            batcher.start()
        try:
            yield
        finally:
            for batcher in self.batchers.values():
                await batcher.stop()

    # ------------------------------------------------------------------------ endpoints
    async def health(self, request: Request) -> Response:
        """Liveness plus batching statistics."""
        return JSONResponse(
            {
                "status": "ok",
                "rewards": list(self.rewards),
                "uptime_s": round(time.monotonic() - self.started, 3),
                "batches": {n: b.stats.as_dict() for n, b in self.batchers.items()},
            }
        )

    async def list_rewards(self, request: Request) -> Response:
        """Each served reward's name, direction, range and version, and the request limits."""
        if not self.authorized(request):
            return self._unauthorized(request)
        return JSONResponse(
            {
                "rewards": self.reward_infos(),
                "max_batch": self.limits.max_batch,
                "max_body_bytes": self.limits.max_body_bytes,
                "max_image_pixels": self.limits.max_image_pixels,
                "max_request_pixels": self.limits.max_request_pixels,
            }
        )

    async def score(self, request: Request) -> Response:
        """Validate, queue for batching, and answer with each reward's scores and details."""
        if not self.authorized(request):
            await _drain(request, self.limits.max_body_bytes)
            return self._unauthorized(request)
        try:
            body = await read_body(request, self.limits.max_body_bytes, self.limits.body_timeout_s)
            parsed: ScoreRequest = await asyncio.to_thread(
                parse_score_request, body, self.rewards.keys(), self.limits
            )
        except RequestError as exc:
            return error_response(exc.status, exc.message)
        outputs = await asyncio.gather(
            *(
                self.batchers[name].submit(parsed.images, parsed.prompts, parsed.metadata)
                for name in parsed.rewards
            ),
            return_exceptions=True,
        )
        results: dict[str, Any] = {}
        for name, out in zip(parsed.rewards, outputs, strict=True):
            if isinstance(out, BaseException):
                return self._reward_failure(name, out)
            results[name] = {
                "scores": scores_to_json(out.scores.tolist()),
                "details": jsonable(out.details),
            }
        return JSONResponse({"n": len(parsed.images), "results": results})

    def _reward_failure(self, name: str, exc: BaseException) -> Response:
        message = " ".join(str(exc).split())
        if isinstance(exc, QueueFullError):
            return error_response(503, message)
        if isinstance(exc, UsageError):  # bad input for this reward, e.g. no quoted OCR text
            return error_response(400, f"reward '{name}': {message}")
        if isinstance(exc, RuntimeError) and "shutting down" in message:
            return error_response(503, message)
        logger.warning("reward '%s' failed: %s: %s", name, type(exc).__name__, message)
        return error_response(500, f"reward '{name}' failed: {type(exc).__name__}: {message}")

    def app(self) -> Starlette:
        """The ASGI application."""

        async def http_error(request: Request, exc: Exception) -> Response:
            assert isinstance(exc, HTTPException)
            return error_response(exc.status_code, str(exc.detail), exc.headers)

        async def internal_error(request: Request, exc: Exception) -> Response:
            return error_response(500, f"internal error: {type(exc).__name__}")

        return Starlette(
            routes=[
                Route("/health", self.health, methods=["GET"]),
                Route("/rewards", self.list_rewards, methods=["GET"]),
                Route("/score", self.score, methods=["POST"]),
            ],
            exception_handlers={HTTPException: http_error, Exception: internal_error},
            lifespan=self.lifespan,
        )


def create_app(
    rewards: Mapping[str, Reward],
    limits: Limits | None = None,
    token: str | None = None,
    max_wait_s: float = 0.02,
) -> Starlette:
    """The ASGI app serving ``rewards`` (name -> loaded Reward instance)."""
    return RewardServer(rewards, limits, token, max_wait_s).app()
