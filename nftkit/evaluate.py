"""Generate a suite's images with a policy, score them, and record the run.

Each (prompt, sample) pair gets its own seed, so results do not depend on batch size and a rerun
reproduces them. Sampling is CFG-free with the trainer's own solvers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from PIL import Image

from nftkit.evaluators.base import Evaluator, PromptSpec, SuiteResult
from nftkit.policies.base import Policy
from nftkit.train.sampling import sample


@dataclass
class EvalSettings:
    """How images are generated for an evaluation."""

    steps: int = 20
    solver: str = "dpm2"
    shift: float = 1.0
    seed: int = 0
    batch_size: int = 32
    limit: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict."""
        return dict(self.__dict__)


@dataclass
class EvalReport:
    """The outcome of one evaluation, as ``nftkit eval --json`` prints it."""

    run_id: str | None
    suite: str
    model: str
    n_images: int
    metrics: dict[str, float]
    result: SuiteResult
    seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        """The CLI's JSON object."""
        return {"run_id": self.run_id, "suite": self.suite, "model": self.model,
                "n_images": self.n_images, "metrics": self.metrics}


def sample_seed(seed: int, prompt_index: int, sample_index: int) -> int:
    """The seed of one (prompt, sample) pair."""
    state = np.random.SeedSequence([seed, prompt_index, sample_index]).generate_state(1)
    return int(state[0])


@torch.no_grad()
def generate(
    policy: Policy,
    prompts: list[str],
    seeds: list[int],
    settings: EvalSettings,
    adapter: str | None = "default",
) -> list[Image.Image]:
    """Images for prompts with per-image seeds (batched; result independent of batching)."""
    images: list[Image.Image] = []
    for start in range(0, len(prompts), settings.batch_size):
        chunk = slice(start, start + settings.batch_size)
        noise = torch.stack([
            torch.randn(policy.latent_shape, generator=torch.Generator().manual_seed(s))
            for s in seeds[chunk]
        ]).to(policy.device)
        cond = policy.encode_prompts(prompts[chunk])

        def velocity(x: torch.Tensor, t: torch.Tensor, c: Any = cond) -> torch.Tensor:
            return policy.velocity(x, t, c, adapter=adapter)

        x0 = sample(velocity, noise, settings.steps, settings.solver, settings.shift)
        pixels = policy.decode(x0).cpu()
        arrays = (pixels * 255).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
        images.extend(Image.fromarray(a.numpy()) for a in arrays)
    return images


def evaluation_items(
    evaluator: Evaluator, limit: int | None = None
) -> list[tuple[int, PromptSpec, int]]:
    """(prompt index, spec, sample index) for every image of the suite, in order."""
    specs = evaluator.prompts()
    if limit is not None:
        specs = specs[:limit]
    return [(i, s, k) for i, s in enumerate(specs) for k in range(evaluator.samples_per_prompt)]


def run_evaluation(
    policy: Policy,
    evaluator: Evaluator,
    model_name: str,
    settings: EvalSettings,
    store: Any | None = None,
    adapter: str | None = "default",
    progress: Callable[[int, int], None] | None = None,
) -> EvalReport:
    """Generate and score the suite; record a run with per-sample rows when a store is given."""
    items = evaluation_items(evaluator, settings.limit)
    config = {"suite": evaluator.name, "model": model_name, "n_samples":
              evaluator.samples_per_prompt, **settings.to_dict()}
    run_id = None
    if store is not None:
        run_id = store.start_run("eval", model_name, config, suite=evaluator.name)
    rows: list[dict[str, Any]] = []
    start = time.time()
    try:
        for begin in range(0, len(items), settings.batch_size):
            chunk = items[begin : begin + settings.batch_size]
            seeds = [sample_seed(settings.seed, i, k) for i, _, k in chunk]
            images = generate(policy, [s.text for _, s, _ in chunk], seeds, settings, adapter)
            scored = evaluator.score_samples(images, [s for _, s, _ in chunk])
            for (_, spec, k), seed, row in zip(chunk, seeds, scored, strict=True):
                row.update({"sample_index": k, "seed": seed, "prompt": spec.text})
            rows.extend(scored)
            if progress is not None:
                progress(len(rows), len(items))
        result = evaluator.summarize(rows)
    except BaseException:
        if store is not None and run_id is not None:
            store.finish_run(run_id, status="failed")
        raise
    if store is not None and run_id is not None:
        store.add_samples(run_id, evaluator.name, [
            {"prompt_id": r["prompt_id"], "sample_index": r["sample_index"], "seed": r["seed"],
             "prompt": r["prompt"], "image_path": r.get("image_path"), "scores": r["scores"],
             "correct": r.get("correct")} for r in rows
        ])
        store.log_metrics(run_id, evaluator.name, result.metrics, n=len(rows),
                          higher_is_better=result.higher_is_better)
        store.finish_run(run_id, status="finished")
    return EvalReport(run_id, evaluator.name, model_name, len(rows), result.metrics, result,
                      seconds=time.time() - start)
