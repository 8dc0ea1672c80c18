"""UnifiedReward (Wang et al. 2025) through an OpenAI-compatible chat server (sglang, vLLM).

Now the ``vlm-judge`` reward with the ``unifiedreward`` template, with the same scores as
before: each image is resized to 512x512, sent as a base64 PNG data URL with the reference's
alignment + quality instruction, temperature 0, one request per image (run concurrently). The
answer's ``Final Score: X`` (X in 1-5) is parsed and divided by 5 (the references' training
scale, in [0.2, 1]; ``raw_scale=True`` reports 1-5 as Table 1 of the DiffusionNFT paper does).
A reply without a score, an HTTP error after the retries or a timeout scores 0 and says why in
the details. Configure with arguments or NFTKIT_UNIFIEDREWARD_URL (base URL ending in /v1),
NFTKIT_UNIFIEDREWARD_MODEL and NFTKIT_UNIFIEDREWARD_API_KEY.
"""

from __future__ import annotations

from typing import Any

from PIL import Image

from nftkit.rewards.vlm_backends import UNREACHABLE
from nftkit.rewards.vlm_backends import image_data_url as _data_url
from nftkit.rewards.vlm_judge import VlmJudge
from nftkit.rewards.vlm_templates import FINAL_SCORE, UNIFIEDREWARD_INSTRUCTION, parse_final_score

URL_ENV, MODEL_ENV, KEY_ENV = (
    "NFTKIT_UNIFIEDREWARD_URL",
    "NFTKIT_UNIFIEDREWARD_MODEL",
    "NFTKIT_UNIFIEDREWARD_API_KEY",
)
DEFAULT_URL = "http://127.0.0.1:17140/v1"
DEFAULT_MODEL = "UnifiedReward-7b-v1.5"
IMAGE_SIDE = 512
SCORE_PATTERN = FINAL_SCORE
MAX_SCORE = 5.0
INSTRUCTION = UNIFIEDREWARD_INSTRUCTION
__all__ = ["INSTRUCTION", "UNREACHABLE", "UnifiedReward", "image_data_url", "parse_score"]


def parse_score(text: str) -> float | None:
    """The 1-5 number after the first "Final Score:", or None when there is none."""
    return parse_final_score(text)


def image_data_url(image: Image.Image) -> str:
    """The image resized to 512x512 (bicubic), as a ``data:image;base64,`` PNG URL."""
    return _data_url(image, IMAGE_SIDE)


class UnifiedReward(VlmJudge):
    """UnifiedReward alignment+quality score from an OpenAI-compatible server, /5 in [0, 1]."""

    name = "unifiedreward"
    version = "1.5"
    env_prefix = "NFTKIT_UNIFIEDREWARD"
    default_model = DEFAULT_MODEL
    default_template = "unifiedreward"
    server_label = "UnifiedReward server"

    def __init__(
        self,
        url: str | None = None,
        model: str | None = None,
        api_key: str | None = None,
        **kwargs: Any,
    ) -> None:
        """As ``VlmJudge`` with the ``unifiedreward`` template and 512x512 images."""
        kwargs.setdefault("template", "unifiedreward")
        kwargs.setdefault("image_side", IMAGE_SIDE)
        super().__init__(url=url, model=model, api_key=api_key, **kwargs)
