"""The ``shapes`` suite: held-out shapes-world prompts judged by the GenEval rules.

Overall = unweighted mean of the six task accuracies (as GenEval); the image mean, strict and
partial means are reported too, labelled as such.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from PIL import Image

from nftkit.evaluators.base import Evaluator, PromptSpec, SuiteResult
from nftkit.shapes.judge import judge_image
from nftkit.shapes.prompts import ALL_TASKS, split_prompts


def task_summary(rows: Sequence[dict[str, Any]], tasks: Sequence[str]) -> dict[str, float]:
    """GenEval summary: per-task accuracy, overall = mean of tasks present, image mean."""
    metrics: dict[str, float] = {}
    for task in tasks:
        verdicts = [bool(r["correct"]) for r in rows if r["tag"] == task]
        if verdicts:
            metrics[task] = float(np.mean(verdicts))
    if metrics:
        metrics["overall"] = float(np.mean([metrics[t] for t in tasks if t in metrics]))
    if rows:
        metrics["image_mean"] = float(np.mean([bool(r["correct"]) for r in rows]))
    return metrics


class ShapesEvaluator(Evaluator):
    """Held-out shapes prompts, ``per_task`` entries per task, 4 images each.

    The grammar holds out very few prompts of the small tasks (one single-object prompt, two
    two-object prompts), so a task with fewer held-out prompts than ``per_task`` lists them
    cyclically: every task is judged on the same number of images (48 by default) with distinct
    seeds, rather than single_object's accuracy resting on 4 images.
    """

    name = "shapes"
    description = "GenEval rules on the CPU shapes world (held-out prompts)"
    n_samples = 4
    default_steps = 20
    primary_metric = "overall"
    row_info_keys = ("tag", "reason")

    def __init__(self, per_task: int = 12, split_seed: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.per_task = per_task
        self.split_seed = split_seed

    def prompts(self) -> list[PromptSpec]:
        """``per_task`` held-out entries per task: a fixed, seeded subset, cycled if short."""
        _, held_out = split_prompts(seed=self.split_seed)
        specs: list[PromptSpec] = []
        for k, task in enumerate(ALL_TASKS):
            pool = [m for m in held_out if m["tag"] == task]
            order = np.random.default_rng([self.split_seed, 7, k]).permutation(len(pool))
            chosen = sorted(order[: self.per_task].tolist())
            for j in range(self.per_task if chosen else 0):
                meta = pool[chosen[j % len(chosen)]]
                specs.append(PromptSpec(f"{len(specs):05d}", meta["prompt"], meta))
        return specs

    def score_samples(
        self, images: Sequence[Image.Image], specs: Sequence[PromptSpec]
    ) -> list[dict[str, Any]]:
        """Judge each image; rows carry tag, correct, strict, partial and the reason."""
        rows = []
        for image, spec in zip(images, specs, strict=True):
            verdict = judge_image(spec.metadata, np.asarray(image.convert("RGB")))
            rows.append(
                {
                    "prompt_id": spec.id,
                    "tag": spec.metadata["tag"],
                    "correct": verdict.correct,
                    "reason": verdict.reason,
                    "scores": {
                        "correct": float(verdict.correct),
                        "strict": verdict.strict,
                        "partial": verdict.partial,
                    },
                }
            )
        return rows

    def summarize(self, rows: Sequence[dict[str, Any]]) -> SuiteResult:
        """Task accuracies, overall (mean of tasks), image mean, strict and partial means."""
        metrics = task_summary(rows, ALL_TASKS)
        if rows:
            metrics["strict_mean"] = float(np.mean([r["scores"]["strict"] for r in rows]))
            metrics["partial_mean"] = float(np.mean([r["scores"]["partial"] for r in rows]))
        return SuiteResult(list(rows), metrics, {k: True for k in metrics})
