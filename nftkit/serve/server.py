"""Start-up of the reward server: option checks, reward loading, and uvicorn."""

from __future__ import annotations

import ipaddress
import sys
from dataclasses import dataclass

from nftkit.errors import UsageError
from nftkit.rewards.base import Reward
from nftkit.serve.app import create_app
from nftkit.serve.protocol import Limits


def is_loopback_host(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1); hostnames are not."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def parse_reward_names(spec: str) -> list[str]:
    """``jpeg,ocr`` -> ``["jpeg", "ocr"]``; empty, repeated or weighted entries are errors."""
    names = [part.strip() for part in spec.split(",")]
    if not spec.strip() or any(not n for n in names):
        raise UsageError(f"bad reward list {spec!r}: give names like 'jpeg,ocr'")
    for name in names:
        if "@" in name or "=" in name:
            raise UsageError(f"serve takes plain reward names, not specs: {name!r}")
    if len(set(names)) != len(names):
        raise UsageError(f"a reward is listed twice in {spec!r}")
    return names


@dataclass(frozen=True)
class ServeOptions:
    """Everything ``nftkit serve`` needs, checked by :meth:`validate`."""

    rewards: tuple[str, ...]
    host: str = "127.0.0.1"
    port: int = 8000
    token: str | None = None
    max_batch: int = 64
    max_wait_ms: float = 20.0
    max_body_mb: float = 64.0
    device: str = "cpu"
    body_timeout_s: float = 30.0

    def validate(self) -> None:
        """Raise UsageError for a bad option, or a non-loopback host without a token."""
        if not is_loopback_host(self.host) and not self.token:
            raise UsageError(
                f"refusing to listen on {self.host} without a token: pass --token "
                "(or set NFTKIT_SERVE_TOKEN), or use --host 127.0.0.1"
            )
        if not 1 <= self.port <= 65535:
            raise UsageError(f"--port must be in 1..65535, got {self.port}")
        if self.max_batch < 1:
            raise UsageError(f"--max-batch must be >= 1, got {self.max_batch}")
        if self.max_wait_ms < 0:
            raise UsageError(f"--max-wait-ms must be >= 0, got {self.max_wait_ms}")
        if self.max_body_mb <= 0:
            raise UsageError(f"--max-body-mb must be > 0, got {self.max_body_mb}")
        if self.body_timeout_s <= 0:
            raise UsageError(f"--body-timeout-s must be > 0, got {self.body_timeout_s}")

    @property
    def limits(self) -> Limits:
        """Request limits from the options."""
        return Limits(
            max_batch=self.max_batch,
            max_body_bytes=int(self.max_body_mb * 1024 * 1024),
            body_timeout_s=self.body_timeout_s,
        )


def load_rewards(
    names: list[str] | tuple[str, ...], device: str, batch_size: int
) -> dict[str, Reward]:
    """Create each reward through the registry and load its model now, before serving."""
    from nftkit.registry import create_reward

    rewards: dict[str, Reward] = {}
    for name in names:
        reward = create_reward(name, device=device, batch_size=batch_size)
        reward.ensure_loaded()
        rewards[name] = reward
    return rewards


def run_server(options: ServeOptions) -> None:
    """Check the options, load the rewards and serve until interrupted."""
    import uvicorn

    options.validate()
    rewards = load_rewards(options.rewards, options.device, options.max_batch)
    app = create_app(rewards, options.limits, options.token, options.max_wait_ms / 1000.0)
    auth = "bearer token required" if options.token else "no token"
    shown_host = f"[{options.host}]" if ":" in options.host else options.host
    print(
        f"nftkit serve: {', '.join(rewards)} on http://{shown_host}:{options.port} "
        f"(max batch {options.max_batch}, max wait {options.max_wait_ms:g} ms, {auth})",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(
        app,
        host=options.host,
        port=options.port,
        log_level="warning",
        access_log=False,
        timeout_keep_alive=30,
    )
