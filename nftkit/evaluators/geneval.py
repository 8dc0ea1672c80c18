"""The ``geneval`` suite: GenEval's 553 prompts, 4 images each, judged as evaluate_images.py.

Rows carry the official result fields (tag, correct, reason, details); the summary gives each
task's accuracy, ``overall`` = unweighted mean of the six task accuracies (GenEval's number),
``image_mean`` = mean over images (what Flow-GRPO / DiffusionNFT log), and the means of the
strict and partial training scores. ``--prompts`` takes any GenEval-format JSONL, e.g. one
written by ``nftkit prompts geneval``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from nftkit.errors import InputError
from nftkit.evaluators.base import PromptSpec, SuiteResult
from nftkit.evaluators.prompt_file import PromptFileEvaluator
from nftkit.evaluators.shapes import task_summary
from nftkit.geneval_vocab import GENEVAL_CLASSES, GENEVAL_TASKS
from nftkit.prompt_files import read_jsonl


def geneval_summary(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Task accuracies, overall (mean of tasks), image mean, strict and partial means."""
    metrics = task_summary(rows, GENEVAL_TASKS)
    if rows:
        metrics["strict_mean"] = float(np.mean([r["scores"]["strict"] for r in rows]))
        metrics["partial_mean"] = float(np.mean([r["scores"]["partial"] for r in rows]))
    return metrics


class GenevalEvaluator(PromptFileEvaluator):
    """GenEval (Ghosh et al. 2023): object, count, color and position compositionality."""

    name = "geneval"
    description = "GenEval: 553 compositional prompts x 4 images, Mask2Former + CLIP judge"
    n_samples = 4
    default_steps = 40
    primary_metric = "overall"
    row_info_keys = ("tag", "reason", "details")

    def __init__(self, backend: str = "mask2former", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.backend = backend
        self._reward: Any = None

    def settings(self) -> dict[str, Any]:
        """The detector backend changes verdicts."""
        return {"backend": self.backend}

    def read_prompts(self, path: Path) -> list[PromptSpec]:
        """GenEval metadata lines (tag, include, exclude?, prompt), validated."""
        from nftkit.rewards.geneval import validate_geneval_metadata

        specs = []
        for i, line in enumerate(read_jsonl(path)):
            if not isinstance(line.get("prompt"), str) or line.get("tag") not in GENEVAL_TASKS:
                raise InputError(
                    f"{path}: line {i + 1} is not a GenEval metadata line (needs 'prompt' and a "
                    f"'tag' in {', '.join(GENEVAL_TASKS)}); generate one with `nftkit prompts "
                    "geneval`"
                )
            try:
                validate_geneval_metadata(line)
            except InputError as exc:
                raise InputError(f"{path}: line {i + 1}: {exc}") from None
            specs.append(PromptSpec(f"{i:05d}", line["prompt"], line))
        return specs

    def spec_from_line(self, prompt_id: str, line: dict[str, Any]) -> PromptSpec:
        """GenEval keeps the whole line (tag, include, exclude, prompt) as metadata."""
        from nftkit.rewards.geneval import validate_geneval_metadata

        if line.get("tag") not in GENEVAL_TASKS:
            raise InputError(f"prompt {prompt_id}: not a GenEval metadata line: {line!r}")
        validate_geneval_metadata(line)
        return PromptSpec(prompt_id, line["prompt"], dict(line))

    def _judge(self) -> Any:
        if self._reward is None:
            from nftkit.rewards.geneval import GenevalReward

            self._reward = GenevalReward(
                mode="official",
                backend=self.backend,
                device=self.device,
                batch_size=self.reward_batch_size,
            )
        return self._reward

    def score_samples(
        self, images: Sequence[Image.Image], specs: Sequence[PromptSpec]
    ) -> list[dict[str, Any]]:
        """Judge every image with the official rules (rows: tag, correct, reason, details)."""
        out = self._judge()(list(images), [s.text for s in specs], [s.metadata for s in specs])
        rows = []
        for spec, info in zip(specs, out.details, strict=True):
            rows.append(
                {
                    "prompt_id": spec.id,
                    "tag": spec.metadata["tag"],
                    "correct": bool(info["correct"]),
                    "reason": info["reason"],
                    "details": info["details"],
                    "scores": {
                        "correct": float(info["correct"]),
                        "strict": float(info["strict"]),
                        "partial": float(info["partial"]),
                    },
                }
            )
        return rows

    def summarize(self, rows: Sequence[dict[str, Any]]) -> SuiteResult:
        """GenEval's summary (see the module docstring)."""
        metrics = geneval_summary(rows)
        return SuiteResult(list(rows), metrics, {k: True for k in metrics})

    def result_line(self, row: dict[str, Any], spec: PromptSpec) -> dict[str, Any]:
        """evaluate_images.py's line: filename, tag, prompt, correct, reason, metadata, details.

        As the reference: ``metadata`` is ``json.dumps`` of the prompt's metadata line (key
        order kept), ``details`` is ``json.dumps`` of {class: [[x1, y1, x2, y2, score], ...]}
        with the classes in detector label order.
        """
        return {
            "filename": row.get("image_path"),
            "tag": spec.metadata["tag"],
            "prompt": spec.metadata.get("prompt", spec.text),
            "correct": bool(row["correct"]),
            "reason": row["reason"],
            "metadata": json.dumps(spec.metadata),
            "details": details_json(row.get("details") or {}),
        }


def details_json(details: dict[str, Any]) -> str:
    """The reference's ``details`` string: json.dumps of the kept boxes, classes in label order."""
    rank = {c: i for i, c in enumerate(GENEVAL_CLASSES)}
    ordered = sorted(details, key=lambda c: rank.get(c, len(rank)))
    return json.dumps({c: details[c] for c in ordered})
