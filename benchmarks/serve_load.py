"""Load benchmark of ``nftkit serve``: requests/s and p50/p99 latency at several concurrencies.

Starts ``nftkit serve REWARD`` on a free loopback port (or uses ``--url``), then for each
concurrency level sends exactly ``--requests`` POST /score requests from that many client
threads, each with ``--images`` text images, through RemoteReward's HTTP path (payloads are
encoded before timing). Prints a table and writes JSON to ``--output``. Bounded: it stops by
itself after ``levels x requests`` requests, or at ``--deadline-s``.

    .venv/bin/python benchmarks/serve_load.py --requests 40 --levels 1,4,16
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from nftkit.serve.client import RemoteReward
from nftkit.serve.protocol import encode_image

WORDS = ["hello world", "nftkit serve", "reward model", "batched http", "diffusion nft"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def text_image(text: str) -> Image.Image:
    """Black text on a white 512x256 image."""
    image = Image.new("RGB", (512, 256), "white")
    ImageDraw.Draw(image).text((24, 100), text, fill="black", font=ImageFont.load_default(size=44))
    return image


def start_server(args: argparse.Namespace) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``nftkit serve`` on loopback and wait until /health answers."""
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "nftkit",
        "serve",
        args.reward,
        "--port",
        str(port),
        "--max-batch",
        str(args.max_batch),
        "--max-wait-ms",
        str(args.max_wait_ms),
    ]
    env = {k: v for k, v in os.environ.items() if k != "NFTKIT_SERVE_TOKEN"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    probe = RemoteReward(args.reward, url, timeout=2.0, retries=0)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with code {process.returncode}")
        try:
            probe.request("GET", "/health")
            return process, url
        except Exception:
            time.sleep(0.25)
    process.terminate()
    raise SystemExit("server did not start within 120 s")


def run_level(
    url: str, args: argparse.Namespace, payloads: list[dict[str, Any]], clients: int
) -> dict[str, Any]:
    """Send ``args.requests`` requests from ``clients`` threads; latency and throughput."""
    remaining = list(range(args.requests))
    lock = threading.Lock()
    latencies: list[float] = []
    scores: list[float] = []
    errors: list[str] = []
    stop_at = time.monotonic() + args.deadline_s

    def client() -> None:
        remote = RemoteReward(args.reward, url, timeout=120.0, retries=0)
        while time.monotonic() < stop_at:
            with lock:
                if not remaining:
                    return
                index = remaining.pop()
            payload = payloads[index % len(payloads)]
            start = time.perf_counter()
            try:
                answer = remote.request("POST", "/score", payload)
            except Exception as exc:
                with lock:
                    errors.append(str(exc))
                continue
            elapsed = time.perf_counter() - start
            with lock:
                latencies.append(elapsed)
                scores.extend(answer["results"][args.reward]["scores"])

    before = RemoteReward(args.reward, url).request("GET", "/health")["batches"][args.reward]
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        for _ in range(clients):
            pool.submit(client)
    wall = time.perf_counter() - start
    after = RemoteReward(args.reward, url).request("GET", "/health")["batches"][args.reward]
    batches = after["batches"] - before["batches"]
    lat = np.asarray(latencies) * 1000.0
    return {
        "clients": clients,
        "requests": len(latencies),
        "errors": len(errors),
        "first_error": errors[0] if errors else None,
        "wall_s": round(wall, 3),
        "requests_per_s": round(len(latencies) / wall, 2) if wall > 0 else None,
        "images_per_s": round(len(latencies) * args.images / wall, 2) if wall > 0 else None,
        "p50_ms": round(float(np.percentile(lat, 50)), 1) if lat.size else None,
        "p99_ms": round(float(np.percentile(lat, 99)), 1) if lat.size else None,
        "server_batches": batches,
        "mean_batch_requests": round((after["requests"] - before["requests"]) / batches, 2)
        if batches
        else None,
        "mean_score": round(float(np.mean(scores)), 4) if scores else None,
    }


def main() -> None:
    """Run the benchmark and write its JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reward", default="ocr")
    parser.add_argument("--url", default=None, help="Use this server instead of starting one.")
    parser.add_argument("--levels", default="1,4,16", help="Concurrent clients per level.")
    parser.add_argument("--requests", type=int, default=40, help="Requests per level.")
    parser.add_argument("--images", type=int, default=1, help="Images per request.")
    parser.add_argument("--max-batch", type=int, default=64)
    parser.add_argument("--max-wait-ms", type=float, default=20.0)
    parser.add_argument("--deadline-s", type=float, default=300.0, help="Per-level time limit.")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/serve_load.json"))
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    if args.requests < 1 or args.images < 1 or any(level < 1 for level in levels):
        raise SystemExit("--requests, --images and every level must be >= 1")

    payloads = []
    for i in range(len(WORDS)):
        images = [text_image(WORDS[(i + k) % len(WORDS)]) for k in range(args.images)]
        prompts = [f'a sign that says "{WORDS[(i + k) % len(WORDS)]}"' for k in range(args.images)]
        payloads.append(
            {
                "rewards": [args.reward],
                "prompts": prompts,
                "images": [encode_image(im) for im in images],
            }
        )

    process = None
    url = args.url
    if url is None:
        process, url = start_server(args)
    try:
        run_level(url, argparse.Namespace(**{**vars(args), "requests": 2}), payloads, 1)  # warm-up
        rows = [run_level(url, args, payloads, clients) for clients in levels]
    finally:
        if process is not None:
            process.terminate()
            process.wait(timeout=30)

    header = f"{'clients':>7} {'req/s':>8} {'img/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'batch':>6} {'errors':>6}"
    print(
        f"nftkit serve load: reward={args.reward}, {args.requests} requests/level, "
        f"{args.images} image(s)/request, max wait {args.max_wait_ms:g} ms"
    )
    print(header)
    for row in rows:
        print(
            f"{row['clients']:>7} {row['requests_per_s']:>8} {row['images_per_s']:>8} "
            f"{row['p50_ms']:>8} {row['p99_ms']:>8} {row['mean_batch_requests']!s:>6} {row['errors']:>6}"
        )
    result = {
        "benchmark": "serve_load",
        "reward": args.reward,
        "requests_per_level": args.requests,
        "images_per_request": args.images,
        "max_batch": args.max_batch,
        "max_wait_ms": args.max_wait_ms,
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
        },
        "levels": rows,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
