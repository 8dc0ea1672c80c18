"""``vlm-judge``: a vision-language model served behind an OpenAI-compatible API as a reward.

One request per image (``concurrency`` in flight, ``timeout`` seconds each, ``retries`` on
transient failures), rendered from a named template (``nftkit.rewards.vlm_templates``). The
failure policy ``on_failure`` says what an image without a score gets: ``"zero"`` (default)
scores it 0, says why in its details (``error``, ``answer``) and logs how many of the batch
failed (also kept in ``last_failures``); ``"fail"`` raises NftkitError on the first one. A
server that refuses every connection is always an error (it is not running). Scores are in
[0, 1]; ``raw_scale=True`` reports the template's own scale (e.g. UnifiedReward's 1-5).
Configure with arguments or NFTKIT_VLM_URL (base URL ending in /v1), NFTKIT_VLM_MODEL and
NFTKIT_VLM_API_KEY. Each image is scored on its own, so scores do not depend on batching.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Any, ClassVar

import torch
from PIL import Image

from nftkit.errors import NftkitError, UsageError
from nftkit.rewards.base import Reward, RewardOutput
from nftkit.rewards.vlm_backends import VlmAnswer, VlmQuery, make_backend
from nftkit.rewards.vlm_templates import Template, get_template

LOG = logging.getLogger("nftkit.rewards.vlm_judge")
FAILURE_POLICIES = ("zero", "fail")
DEFAULT_URL = "http://127.0.0.1:17140/v1"


class VlmJudge(Reward):
    """A VLM judge over an OpenAI-compatible chat server, one named template, score in [0, 1]."""

    name = "vlm-judge"
    higher_is_better = True
    score_range = (0.0, 1.0)
    version = "1"
    input_format = "pil"
    env_prefix: ClassVar[str] = "NFTKIT_VLM"
    default_model: ClassVar[str] = "UnifiedReward-2.0-qwen-7b"
    default_template: ClassVar[str] = "unifiedreward-2"
    server_label: ClassVar[str] = "VLM judge server"

    def __init__(
        self,
        template: str | None = None,
        url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        timeout: float = 120.0,
        retries: int = 2,
        backoff: float = 1.0,
        concurrency: int = 16,
        image_side: int | None = None,
        on_failure: str = "zero",
        raw_scale: bool = False,
        backend: str | None = None,
        **kwargs: Any,
    ) -> None:
        """``template``: a name in vlm_templates.TEMPLATES; ``image_side``: resize images to a
        square before sending (None: as given); ``on_failure``: "zero" or "fail";
        ``backend``: "openai" (default, NFTKIT_VLM_BACKEND) or "transformers" (``model`` is
        then a local checkpoint folder or hub id, run on ``device``)."""
        super().__init__(**kwargs)
        if on_failure not in FAILURE_POLICIES:
            raise UsageError(
                f"{self.name}: on_failure must be one of {', '.join(FAILURE_POLICIES)}"
            )
        self.template: Template = get_template(template or self.default_template)
        url = (url or os.environ.get(f"{self.env_prefix}_URL") or DEFAULT_URL).rstrip("/")
        kind = backend or os.environ.get(f"{self.env_prefix}_BACKEND") or "openai"
        self.backend = make_backend(
            kind,
            url,
            model or os.environ.get(f"{self.env_prefix}_MODEL") or self.default_model,
            api_key if api_key is not None else os.environ.get(f"{self.env_prefix}_API_KEY", ""),
            device=str(self.device),
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            concurrency=concurrency,
            image_side=image_side,
        )
        self.on_failure, self.raw_scale = on_failure, raw_scale
        self.last_failures = 0

    @property
    def url(self) -> str:
        """The server's base URL (``transformers:<model>`` for the local backend)."""
        return self.backend.url

    @property
    def model(self) -> str:
        """The model name sent with each request (or loaded locally)."""
        return self.backend.describe()["model"]

    def query(self, image: Image.Image, prompt: str) -> VlmQuery:
        """The request of one image."""
        t = self.template
        image = image.convert("RGB")  # decoded here, not in the worker threads
        return VlmQuery(
            image,
            t.render(prompt),
            max_tokens=t.max_tokens,
            top_logprobs=t.top_logprobs,
            candidates=t.candidates,
        )

    def _detail(self, answer: VlmAnswer) -> tuple[float | None, dict[str, Any]]:
        if answer.text is None:
            return None, {"error": answer.error, "answer": None}
        parsed = self.template.parse(answer)
        if parsed is None or not math.isfinite(parsed.score):
            return None, {"error": self.template.missing, "answer": answer.text}
        value = parsed.raw if self.raw_scale else parsed.score
        return value, {"answer": answer.text, "raw": parsed.raw}

    def score_batch(
        self, images: list[Image.Image], prompts: list[str], metadata: list[dict[str, Any]]
    ) -> RewardOutput:
        """Ask about each image concurrently; parse each answer; apply the failure policy."""
        answers = self.backend.ask_many(
            [self.query(i, p) for i, p in zip(images, prompts, strict=True)]
        )
        if answers and all(a.unreachable for a in answers):
            raise NftkitError(
                f"{self.server_label} {self.url} refused every request ({answers[0].error}); "
                f"start it (an OpenAI-compatible server, e.g. vLLM) or point "
                f"{self.env_prefix}_URL at it"
            )
        scores, details = [], []
        for answer in answers:
            value, info = self._detail(answer)
            if value is None and self.on_failure == "fail":
                raise NftkitError(
                    f"{self.name}: {info['error']} (on_failure='fail'; use 'zero' "
                    "to score such images 0)"
                )
            scores.append(0.0 if value is None else value)
            details.append(info)
        self.last_failures = sum(1 for d in details if "error" in d)
        if self.last_failures:
            LOG.warning(
                "%s: %d of %d images scored 0 (no score): first error: %s",
                self.name,
                self.last_failures,
                len(details),
                next(d["error"] for d in details if "error" in d),
            )
        return RewardOutput(torch.tensor(scores, dtype=torch.float32), details)
