"""Fuzz ``nftkit serve`` with bad requests: every one gets a 4xx JSON error and nothing breaks.

Starts ``nftkit serve jpeg`` on a free loopback port (127.0.0.1 only, with a token, small
limits) and sends, for each case, ``--per-case`` seeded variants of: malformed JSON, JSON that
is not an object, wrong types, missing fields, unknown keys, counts past the limits, oversized
bodies, truncated images, non-PNG/JPEG bytes, decompression bombs (huge headers, per-image and
per-request pixel caps), wrong or missing tokens, wrong methods and paths, slow uploads (cut
off with 408) and aborted uploads (the client hangs up mid-body). After each case a valid
request must still be scored correctly. The server's RSS is read from /proc before the fuzz,
after a first and after a second full round: the second round must not grow it. Bounded: a
fixed number of requests, each with a timeout, and ``--deadline-s`` overall.

    .venv/bin/python benchmarks/serve_fuzz.py --per-case 6 --output benchmarks/results/serve_fuzz.json
"""

from __future__ import annotations

import argparse
import base64
import http.client
import io
import json
import os
import random
import socket
import struct
import subprocess
import sys
import time
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

TOKEN = "fuzz-token-0123"
HOST = "127.0.0.1"
MAX_BATCH = 8
MAX_BODY_MB = 2
BODY_TIMEOUT_S = 1.5
REQUEST_TIMEOUT_S = 20.0


@dataclass
class Probe:
    """One fuzz request: body bytes, token, and how it is sent (normal, slow or aborted)."""

    body: bytes
    token: str | None = TOKEN
    method: str = "POST"
    path: str = "/score"
    mode: str = "normal"  # "normal" | "slow" | "abort"
    expect: tuple[int, ...] = (400,)  # accepted statuses; () for an aborted upload
    headers: dict[str, str] = field(default_factory=dict)


# ----------------------------------------------------------------------------- payloads
def png_b64(seed: int, size: tuple[int, int] = (24, 16)) -> str:
    """A small random RGB PNG, base64."""
    arr = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return _b64(_save(Image.fromarray(arr), "PNG"))


def _save(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height but whose data is a few bytes."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _chunk(b"IEND", b"")
    )


def bilevel_png(width: int, height: int) -> bytes:
    """A real, fully decodable 1-bit PNG of width x height (compresses to almost nothing)."""
    return _save(Image.new("1", (width, height)), "PNG")


def valid_body(rng: random.Random, n: int = 1) -> dict[str, Any]:
    """A request that the server accepts."""
    return {
        "reward": "jpeg",
        "prompts": [f"p{i}" for i in range(n)],
        "images": [png_b64(rng.randrange(10**6)) for _ in range(n)],
    }


def _dump(body: Any) -> bytes:
    return json.dumps(body).encode()


# ----------------------------------------------------------------------------- cases
def malformed_json(rng: random.Random) -> Probe:
    good = _dump(valid_body(rng))
    variants = [
        good[: rng.randrange(1, len(good) - 1)],  # truncated
        b"{" + good[1:].replace(b":", b"=", 1),
        good + b"}" + bytes([rng.randrange(33, 127)]),  # trailing garbage
        good.replace(b'"p0"', b'"\xff\xfe"'),  # not UTF-8
        b"[" * rng.randrange(50_000, 200_000),  # deeper than any parser recursion
        b"",
        bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))),
    ]
    return Probe(rng.choice(variants))


def not_an_object(rng: random.Random) -> Probe:
    return Probe(rng.choice([b"[]", b"null", b"42", b'"jpeg"', b"[{}]", b"true"]))


WRONG_VALUES: dict[str, list[Any]] = {
    "reward": [5, None, ["jpeg"], {"name": "jpeg"}, True, ""],
    "prompts": ["p", [1], None, {"0": "p"}, [None], [["p"]]],
    "images": ["abc", [1], [None], {}, [["x"]], [True], []],
    "metadata": ["x", [1], {}, [[]], ["m"], 3],
}


def wrong_types(rng: random.Random) -> Probe:
    body = valid_body(rng)
    key = rng.choice(list(WRONG_VALUES))
    body[key] = rng.choice(WRONG_VALUES[key])
    return Probe(_dump(body), expect=(400, 404))  # reward "" / unknown name: 404


def missing_fields(rng: random.Random) -> Probe:
    body = valid_body(rng)
    for key in rng.sample(["reward", "prompts", "images"], rng.randrange(1, 4)):
        body.pop(key)
    return Probe(_dump(body))


def unknown_keys(rng: random.Random) -> Probe:
    body = valid_body(rng)
    body[rng.choice(["prompt", "image", "__class__", "pickle", "x" * 200])] = [1]
    return Probe(_dump(body))


def counts_past_limits(rng: random.Random) -> Probe:
    n = MAX_BATCH + rng.randrange(1, 4)
    choice = rng.randrange(4)
    if choice == 0:
        return Probe(_dump(valid_body(rng, n)), expect=(413,))
    body = valid_body(rng, 2)
    if choice == 1:
        body["prompts"] = body["prompts"] * rng.randrange(2, 5)
    elif choice == 2:
        body["metadata"] = [{}] * rng.randrange(3, 6)
    else:
        body["rewards"] = ["jpeg", "jpeg"]
        body.pop("reward")
    return Probe(_dump(body))


def oversized_body(rng: random.Random) -> Probe:
    size = MAX_BODY_MB * 1024 * 1024 + rng.randrange(1, 4096)
    return Probe(b'{"images": ["' + b"A" * size + b'"]}', expect=(413,))


def truncated_image(rng: random.Random) -> Probe:
    body = valid_body(rng)
    raw = base64.b64decode(body["images"][0])
    cut = raw[: rng.randrange(8, len(raw) - 1)]
    body["images"] = [_b64(cut)]
    return Probe(_dump(body))


def not_png_or_jpeg(rng: random.Random) -> Probe:
    image = Image.new("RGB", (8, 8), (rng.randrange(256), 0, 0))
    payloads = [
        _save(image, "GIF"),
        _save(image, "BMP"),
        _save(image, "TIFF"),
        b"just some text",
        b"\x80\x04\x95pickle",
        bytes(rng.randrange(256) for _ in range(64)),
    ]
    body = valid_body(rng)
    body["images"] = [_b64(rng.choice(payloads))] if rng.random() < 0.8 else ["@@not base64@@"]
    return Probe(_dump(body))


def decompression_bomb(rng: random.Random) -> Probe:
    body = valid_body(rng)
    choice = rng.randrange(3)
    if choice == 0:  # a header claiming 10^10 pixels: Pillow's bomb check or ours
        body["images"] = [_b64(png_header_only(100_000, 100_000))]
    elif choice == 1:  # 25 Mpx, more than one image may have, 1-bit so only bytes on the wire
        body["images"] = [_b64(bilevel_png(5000, 5000))]
    else:  # each under the per-image cap, together over the per-request cap
        image = _b64(bilevel_png(4096, 4000))
        body["images"] = [image] * 5
        body["prompts"] = ["p"] * 5
    return Probe(_dump(body), expect=(413,))


def wrong_token(rng: random.Random) -> Probe:
    body = _dump(valid_body(rng))
    choice = rng.randrange(4)
    if choice == 0:
        return Probe(body, token=None, expect=(401,))
    if choice == 1:
        return Probe(body, token=TOKEN[:-1] + "X", expect=(401,))
    if choice == 2:
        return Probe(body, token=None, headers={"Authorization": f"Basic {TOKEN}"}, expect=(401,))
    return Probe(
        b"",
        token="".join(rng.choice("abc123") for _ in range(40)),
        method="GET",
        path="/rewards",
        expect=(401,),
    )


def wrong_route(rng: random.Random) -> Probe:
    if rng.random() < 0.5:
        return Probe(b"", method=rng.choice(["GET", "PUT", "DELETE"]), path="/score", expect=(405,))
    return Probe(
        _dump(valid_body(rng)), path=rng.choice(["/scores", "/score/x", "/admin"]), expect=(404,)
    )


def slow_upload(rng: random.Random) -> Probe:
    return Probe(_dump(valid_body(rng)), mode="slow", expect=(408,))


def aborted_upload(rng: random.Random) -> Probe:
    return Probe(_dump(valid_body(rng, 2)), mode="abort", expect=())


CASES: dict[str, Callable[[random.Random], Probe]] = {
    "malformed-json": malformed_json,
    "not-an-object": not_an_object,
    "wrong-types": wrong_types,
    "missing-fields": missing_fields,
    "unknown-keys": unknown_keys,
    "counts-past-limits": counts_past_limits,
    "oversized-body": oversized_body,
    "truncated-image": truncated_image,
    "not-png-or-jpeg": not_png_or_jpeg,
    "decompression-bomb": decompression_bomb,
    "wrong-token": wrong_token,
    "wrong-route": wrong_route,
    "slow-upload": slow_upload,
    "aborted-upload": aborted_upload,
}


# ----------------------------------------------------------------------------- sending
def _headers(probe: Probe) -> dict[str, str]:
    headers = {"Content-Type": "application/json", **probe.headers}
    if probe.token is not None:
        headers["Authorization"] = f"Bearer {probe.token}"
    return headers


def send(port: int, probe: Probe) -> tuple[int | None, Any]:
    """Send one probe; (status, decoded JSON or the raw text), or (None, None) when aborted."""
    if probe.mode == "normal":
        connection = http.client.HTTPConnection(HOST, port, timeout=REQUEST_TIMEOUT_S)
        try:
            body = probe.body if probe.body or probe.method == "POST" else None
            connection.request(probe.method, probe.path, body=body, headers=_headers(probe))
            response = connection.getresponse()
            raw = response.read()
        finally:
            connection.close()
        try:
            return response.status, json.loads(raw)
        except ValueError:
            return response.status, raw.decode("utf-8", "replace")
    head = "".join(
        [
            f"{probe.method} {probe.path} HTTP/1.1\r\nHost: {HOST}\r\n",
            *(f"{k}: {v}\r\n" for k, v in _headers(probe).items()),
            f"Content-Length: {len(probe.body)}\r\n\r\n",
        ]
    ).encode()
    sock = socket.create_connection((HOST, port), timeout=REQUEST_TIMEOUT_S)
    try:
        sock.sendall(head + probe.body[: len(probe.body) // 3])
        if probe.mode == "abort":
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return None, None  # closed (reset) mid-body
        deadline = time.monotonic() + 2 * BODY_TIMEOUT_S + 1
        for byte in probe.body[len(probe.body) // 3 : len(probe.body) // 3 + 10]:
            if time.monotonic() > deadline:
                break
            try:
                sock.sendall(bytes([byte]))  # a trickle, far slower than the timeout allows
            except OSError:
                break
            time.sleep(BODY_TIMEOUT_S / 4)
        return _read_response(sock)
    finally:
        sock.close()


def _read_response(sock: socket.socket) -> tuple[int | None, Any]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return None, None
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = next(
        (
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        ),
        0,
    )
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    try:
        return status, json.loads(rest[:length])
    except ValueError:
        return status, rest[:length].decode("utf-8", "replace")


def valid_request_ok(port: int, rng: random.Random) -> bool:
    """A valid request is answered 200 with one finite score per image."""
    n = rng.randrange(1, 4)
    status, answer = send(port, Probe(_dump(valid_body(rng, n)), expect=(200,)))
    if status != 200 or not isinstance(answer, dict):
        return False
    scores = answer.get("results", {}).get("jpeg", {}).get("scores")
    return (
        isinstance(scores, list) and len(scores) == n and all(isinstance(s, float) for s in scores)
    )


def rss_mib(pid: int) -> float:
    """Resident memory of process ``pid`` in MiB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def is_one_line_error(answer: Any) -> bool:
    """The body is exactly {"error": "<one line>"}."""
    return (
        isinstance(answer, dict)
        and set(answer) == {"error"}
        and isinstance(answer["error"], str)
        and bool(answer["error"])
        and "\n" not in answer["error"]
    )


def fuzz_round(port: int, per_case: int, seed: int, deadline: float) -> dict[str, Any]:
    """Send every case ``per_case`` times; returns per-case status counts and failures."""
    rng = random.Random(seed)
    report: dict[str, Any] = {}
    for name, make in CASES.items():
        statuses: Counter[str] = Counter()
        failures: list[str] = []
        for i in range(per_case):
            if time.monotonic() > deadline:
                failures.append("deadline reached")
                break
            probe = make(rng)
            try:
                status, answer = send(port, probe)
            except OSError as exc:
                status, answer = -1, f"{type(exc).__name__}: {exc}"
            statuses[str(status)] += 1
            if probe.mode == "abort":
                pass
            elif status not in probe.expect:
                failures.append(f"#{i}: got {status}, expected {probe.expect}: {str(answer)[:160]}")
            elif not is_one_line_error(answer):
                failures.append(
                    f"#{i}: {status} without a one-line JSON error: {str(answer)[:160]}"
                )
        if not valid_request_ok(port, rng):
            failures.append("a valid request failed after this case")
        report[name] = {
            "requests": sum(statuses.values()),
            "statuses": dict(statuses),
            "failures": failures,
        }
    return report


# ----------------------------------------------------------------------------- server
def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def start_server(port: int) -> subprocess.Popen[bytes]:
    """``nftkit serve jpeg`` on 127.0.0.1:port with the fuzz limits; waits for /health."""
    command = [
        sys.executable,
        "-m",
        "nftkit",
        "serve",
        "jpeg",
        "--host",
        HOST,
        "--port",
        str(port),
        "--token",
        TOKEN,
        "--max-batch",
        str(MAX_BATCH),
        "--max-body-mb",
        str(MAX_BODY_MB),
        "--body-timeout-s",
        str(BODY_TIMEOUT_S),
    ]
    env = {k: v for k, v in os.environ.items() if k != "NFTKIT_SERVE_TOKEN"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    start = time.monotonic()
    while time.monotonic() - start < 90:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {process.stderr.read().decode()[-2000:]}")
        try:
            status, _ = send(port, Probe(b"", token=None, method="GET", path="/health"))
            if status == 200:
                return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise RuntimeError("server did not answer /health within 90 s")


def run_fuzz(port: int, pid: int, per_case: int, seed: int, deadline_s: float) -> dict[str, Any]:
    """Warm up, measure RSS, fuzz two rounds, measure again; the full figures as a dict."""
    deadline = time.monotonic() + deadline_s
    rng = random.Random(seed)
    warm = sum(valid_request_ok(port, rng) for _ in range(20))
    rss_before = rss_mib(pid)
    started = time.monotonic()
    first = fuzz_round(port, per_case, seed, deadline)
    rss_first = rss_mib(pid)
    second = fuzz_round(port, per_case, seed + 1, deadline)
    rss_second = rss_mib(pid)
    after = sum(valid_request_ok(port, rng) for _ in range(20))
    cases = {
        name: {
            "requests": first[name]["requests"] + second[name]["requests"],
            "statuses": dict(Counter(first[name]["statuses"]) + Counter(second[name]["statuses"])),
            "failures": first[name]["failures"] + second[name]["failures"],
        }
        for name in CASES
    }
    return {
        "per_case": per_case,
        "seed": seed,
        "cases": cases,
        "requests": sum(c["requests"] for c in cases.values()),
        "failures": sum(len(c["failures"]) for c in cases.values()),
        "valid_before": warm,
        "valid_after": after,
        "rss_mib": {
            "before": round(rss_before, 1),
            "after_round_1": round(rss_first, 1),
            "after_round_2": round(rss_second, 1),
        },
        "rss_delta_mib": round(rss_second - rss_before, 1),
        "rss_round_2_growth_mib": round(rss_second - rss_first, 1),
        "seconds": round(time.monotonic() - started, 1),
        "server_alive": True,
    }


def print_table(result: dict[str, Any]) -> None:
    """Requests and status codes per case, then the memory figures."""
    print(f"{'case':<20} {'requests':>8}  statuses{'':<18} failures")
    for name, case in result["cases"].items():
        codes = ", ".join(f"{k}x{v}" for k, v in sorted(case["statuses"].items()))
        print(f"{name:<20} {case['requests']:>8}  {codes:<26} {len(case['failures'])}")
        for failure in case["failures"][:3]:
            print(f"    {failure}")
    rss = result["rss_mib"]
    print(
        f"{result['requests']} requests in {result['seconds']} s, {result['failures']} failures; "
        f"valid requests before/after: {result['valid_before']}/20, {result['valid_after']}/20"
    )
    print(
        f"server RSS: {rss['before']} MiB before, {rss['after_round_1']} after round 1, "
        f"{rss['after_round_2']} after round 2 (delta {result['rss_delta_mib']:+} MiB, "
        f"round 2 {result['rss_round_2_growth_mib']:+} MiB)"
    )


def main() -> int:
    """Start a server, fuzz it, print the figures and write them as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--per-case", type=int, default=6, help="Requests per case and round.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--deadline-s", type=float, default=600.0)
    parser.add_argument("--output", type=Path, default=None, help="Write the figures here.")
    args = parser.parse_args()
    port = free_port()
    process = start_server(port)
    try:
        result = run_fuzz(port, process.pid, args.per_case, args.seed, args.deadline_s)
        result["server_alive"] = process.poll() is None
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
    print_table(result)
    if args.output is not None:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["failures"] == 0 and result["server_alive"] else 1


if __name__ == "__main__":
    sys.exit(main())
