"""``nftkit serve``: put registered rewards behind a batched HTTP endpoint."""

from __future__ import annotations

import typer

from nftkit.cli.validation import check_device, check_reward_names
from nftkit.serve.server import ServeOptions, parse_reward_names, run_server


def serve(
    rewards: str = typer.Argument(..., help="Rewards to serve, comma separated, e.g. 'jpeg,ocr'."),
    host: str = typer.Option("127.0.0.1", help="Address to listen on; non-loopback needs --token."),
    port: int = typer.Option(8000, help="TCP port."),
    token: str = typer.Option(
        None,
        envvar="NFTKIT_SERVE_TOKEN",
        help="Bearer token clients must send (env NFTKIT_SERVE_TOKEN).",
    ),
    max_batch: int = typer.Option(
        64, help="Most images scored in one batch and sent in one request."
    ),
    max_wait_ms: float = typer.Option(20.0, help="How long a batch waits for more requests (ms)."),
    max_body_mb: float = typer.Option(64.0, help="Largest request body accepted (MiB)."),
    device: str = typer.Option("cpu", help="Torch device for the reward models."),
    body_timeout_s: float = typer.Option(
        30.0, help="Seconds a request body may take to arrive (slower uploads get 408)."
    ),
) -> None:
    """Serve rewards over HTTP: GET /health, GET /rewards, POST /score (JSON, base64 images)."""
    options = ServeOptions(
        rewards=tuple(parse_reward_names(rewards)),
        host=host,
        port=port,
        token=token or None,
        max_batch=max_batch,
        max_wait_ms=max_wait_ms,
        max_body_mb=max_body_mb,
        device=device,
        body_timeout_s=body_timeout_s,
    )
    options.validate()
    check_reward_names(options.rewards)  # before any reward model loads
    check_device(device)
    run_server(options)
