"""UnifiedReward (Wang et al. 2025) through an OpenAI-compatible chat server (sglang, vLLM).

The model (default ``UnifiedReward-7b-v1.5``, from ``CodeGoat24/UnifiedReward-7b-v1.5``) runs
in its own server; this reward is a client. Each image is resized to 512x512, sent as a base64
PNG data URL with the reference's alignment + quality instruction, temperature 0, one request
per image (run concurrently). The answer's ``Final Score: X`` (X in 1-5) is parsed and divided
by 5 (the references' training scale, in [0.2, 1]; ``raw_scale=True`` reports 1-5 as Table 1
of the DiffusionNFT paper does). A reply without a score, an HTTP error after the retries or a
timeout scores 0 and says why in the details.
Configure with arguments or NFTKIT_UNIFIEDREWARD_URL (base URL ending in /v1),
NFTKIT_UNIFIEDREWARD_MODEL and NFTKIT_UNIFIEDREWARD_API_KEY.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import torch
from PIL import Image

from nftkit.errors import NftkitError, UsageError
from nftkit.rewards.base import Reward, RewardOutput

URL_ENV, MODEL_ENV, KEY_ENV = (
    "NFTKIT_UNIFIEDREWARD_URL",
    "NFTKIT_UNIFIEDREWARD_MODEL",
    "NFTKIT_UNIFIEDREWARD_API_KEY",
)
DEFAULT_URL = "http://127.0.0.1:17140/v1"
UNREACHABLE = "unreachable: "
DEFAULT_MODEL = "UnifiedReward-7b-v1.5"
IMAGE_SIDE = 512
SCORE_PATTERN = re.compile(r"Final Score:\s*([1-5](\.\d+)?)")
MAX_SCORE = 5.0
INSTRUCTION = (
    "<image>\n"
    "You are given a text caption and a generated image based on that caption. Your task is to "
    "evaluate this image based on two key criteria:\n"
    "1. Alignment with the Caption: Assess how well this image aligns with the provided "
    "caption. Consider the accuracy of depicted objects, their relationships, and attributes "
    "as described in the caption.\n"
    "2. Overall Image Quality: Examine the visual quality of this image, including clarity, "
    "detail preservation, color accuracy, and overall aesthetic appeal.\n"
    "Based on the above criteria, assign a score from 1 to 5 after 'Final Score:'.\n"
    "Your task is provided as follows:\n"
    "Text Caption: [{prompt}]"
)
"""The reference's question (Flow-GRPO / DiffusionNFT unifiedreward scorer)."""
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


def parse_score(text: str) -> float | None:
    """The 1-5 number after the first "Final Score:", or None when there is none."""
    match = SCORE_PATTERN.search(text)
    return float(match.group(1)) if match else None


def image_data_url(image: Image.Image) -> str:
    """The image resized to 512x512 (bicubic), as a ``data:image;base64,`` PNG URL."""
    resized = image.convert("RGB").resize((IMAGE_SIDE, IMAGE_SIDE), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    resized.save(buffer, format="PNG")
    return "data:image;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class UnifiedReward(Reward):
    """UnifiedReward alignment+quality score from an OpenAI-compatible server, /5 in [0, 1]."""

    name = "unifiedreward"
    higher_is_better = True
    score_range = (0.0, 1.0)
    version = "1.5"
    input_format = "pil"

    def __init__(
        self,
        url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        timeout: float = 120.0,
        retries: int = 2,
        backoff: float = 1.0,
        concurrency: int = 16,
        raw_scale: bool = False,
        **kwargs: Any,
    ) -> None:
        """``url``: server base URL (…/v1); ``timeout`` per request in seconds; ``retries``:
        further attempts after a connection error, timeout or 408/429/5xx answer."""
        super().__init__(**kwargs)
        self.url = (url or os.environ.get(URL_ENV) or DEFAULT_URL).rstrip("/")
        if not self.url.startswith(("http://", "https://")):
            raise UsageError(f"unifiedreward URL must start with http:// or https://: {self.url!r}")
        if timeout <= 0 or retries < 0 or backoff < 0 or concurrency < 1:
            raise UsageError("unifiedreward: timeout > 0, retries >= 0, backoff >= 0, concurrency >= 1")
        self.model = model or os.environ.get(MODEL_ENV) or DEFAULT_MODEL
        self.api_key = api_key if api_key is not None else os.environ.get(KEY_ENV, "")
        self.timeout, self.retries, self.backoff = timeout, retries, backoff
        self.concurrency = concurrency
        self.raw_scale = raw_scale

    def request_body(self, image: Image.Image, prompt: str) -> dict[str, Any]:
        """The chat-completions request for one image."""
        content = [
            {"type": "image_url", "image_url": {"url": image_data_url(image)}},
            {"type": "text", "text": INSTRUCTION.format(prompt=prompt)},
        ]
        return {
            "model": self.model,
            "messages": [{"role": "user", "content": content}],
            "temperature": 0,
        }

    def _post(self, body: dict[str, Any]) -> str:
        """POST /chat/completions once; the first choice's message text."""
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(
            f"{self.url}/chat/completions", json.dumps(body).encode(), headers, method="POST"
        )
        with urllib.request.urlopen(request, timeout=self.timeout) as response:
            data = json.loads(response.read())
        return str(data["choices"][0]["message"]["content"])

    def ask(self, image: Image.Image, prompt: str) -> tuple[str | None, str | None]:
        """(answer, None), or (None, error) after the retries are spent."""
        body = self.request_body(image, prompt)
        error = "no attempt"
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                return self._post(body), None
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
        return None, error

    def score_batch(
        self, images: list[Image.Image], prompts: list[str], metadata: list[dict[str, Any]]
    ) -> RewardOutput:
        """Ask the server about each image concurrently; parse each answer."""
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(images))) as pool:
            answers = list(pool.map(self.ask, images, prompts))
        if answers and all(error and error.startswith(UNREACHABLE) for _, error in answers):
            raise NftkitError(
                f"UnifiedReward server {self.url} refused every request ({answers[0][1]}); start "
                f"it (an OpenAI-compatible server, e.g. vLLM) or point {URL_ENV} at it"
            )
        scores, details = [], []
        for answer, error in answers:
            value = parse_score(answer) if answer is not None else None
            if value is None:
                scores.append(0.0)
                details.append({"error": error or "no 'Final Score:' in the answer", "answer": answer})
                continue
            scores.append(value if self.raw_scale else value / MAX_SCORE)
            details.append({"answer": answer, "raw": value})
        return RewardOutput(torch.tensor(scores, dtype=torch.float32), details)
