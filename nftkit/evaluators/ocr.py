"""The ``ocr`` suite: the 1,018 Flow-GRPO / DiffusionNFT text-rendering prompts.

Each image is scored with the OCR reward (REFERENCE.md section 4): 1 - capped edit distance
between the recognised text and the quoted target, normalised by the target's length.
``overall`` is the mean score (the number the papers report); ``exact_match`` is the share of
images scoring 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from nftkit.evaluators.base import PromptSpec, SuiteResult
from nftkit.evaluators.prompt_file import PromptFileEvaluator


class OcrEvaluator(PromptFileEvaluator):
    """Text rendering accuracy of the quoted text in each prompt."""

    name = "ocr"
    description = "OCR: 1,018 text-rendering prompts, normalised edit distance (RapidOCR)"
    n_samples = 1
    default_steps = 40
    primary_metric = "overall"
    row_info_keys = ("target", "recognized")

    def __init__(self, engine: str = "rapidocr", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.engine = engine
        self._reward: Any = None

    def settings(self) -> dict[str, Any]:
        """The OCR engine changes scores."""
        return {"engine": self.engine}

    def read_prompts(self, path: Any) -> list[PromptSpec]:
        """Prompt lines; each must quote its target text (checked up front)."""
        from nftkit.rewards.ocr import ocr_target

        specs = super().read_prompts(path)
        for spec in specs:
            ocr_target(spec.text)
        return specs

    def score_samples(
        self, images: Sequence[Image.Image], specs: Sequence[PromptSpec]
    ) -> list[dict[str, Any]]:
        """OCR score per image, with the target and the recognised text."""
        if self._reward is None:
            from nftkit.rewards.ocr import OcrReward

            self._reward = OcrReward(
                engine=self.engine, device=self.device, batch_size=self.reward_batch_size
            )
        out = self._reward(list(images), [s.text for s in specs])
        rows = []
        for spec, score, info in zip(specs, out.scores.tolist(), out.details, strict=True):
            rows.append(
                {
                    "prompt_id": spec.id,
                    "correct": score == 1.0,
                    "target": info["target"],
                    "recognized": info["recognized"],
                    "scores": {"ocr": float(score)},
                }
            )
        return rows

    def summarize(self, rows: Sequence[dict[str, Any]]) -> SuiteResult:
        """Mean OCR score (overall) and exact-match rate."""
        metrics: dict[str, float] = {}
        if rows:
            scores = np.array([r["scores"]["ocr"] for r in rows], dtype=np.float64)
            metrics = {"overall": float(scores.mean()), "exact_match": float(np.mean(scores == 1))}
        return SuiteResult(list(rows), metrics, {k: True for k in metrics})
