"""Generate a suite's images with a policy, score them, and record the run.

Each (prompt, sample) pair gets its own seed, so results depend neither on the batch size nor
on the number of processes, and a rerun reproduces them. With an output folder, images are
written in GenEval's layout, ``results.jsonl`` gets one line per image, and a rerun with the
same settings resumes: images that are on disk and recorded are neither generated nor scored
again. Under several processes (``accelerate launch``) prompts are sharded by rank.
``score_images`` scores images generated elsewhere through the same machinery.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from nftkit.errors import UsageError
from nftkit.eval_pipeline import EvalItem, produce_and_score
from nftkit.eval_session import EvalSession
from nftkit.evaluators import layout
from nftkit.evaluators.base import Evaluator, PromptSpec, SuiteResult
from nftkit.policies.base import Policy, cat_conds, policy_time_grid, sampling_velocity_kwargs
from nftkit.train.distributed import Distributed
from nftkit.train.faults import fault_point
from nftkit.train.sampling import sample

Progress = Callable[[int, int], None]


@dataclass
class EvalSettings:
    """How images are generated for an evaluation (``shift`` None: the policy's default)."""

    steps: int = 20
    solver: str = "dpm2"
    shift: float | None = None
    cfg: float = 1.0
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
    counts: dict[str, int] = field(default_factory=dict)
    output_dir: str | None = None

    def as_json(self) -> dict[str, Any]:
        """The CLI's JSON object."""
        return {"run_id": self.run_id, "suite": self.suite, "model": self.model,
                "n_images": self.n_images, "metrics": self.metrics}


def sample_seed(seed: int, prompt_index: int, sample_index: int) -> int:
    """The seed of one (prompt, sample) pair."""
    state = np.random.SeedSequence([seed, prompt_index, sample_index]).generate_state(1)
    return int(state[0])


def policy_shift(policy: Policy) -> float:
    """The timestep shift a policy samples with by default (its scheduler's, else 1.0)."""
    pipeline = getattr(policy, "pipeline", None)
    if pipeline is not None:
        return float(pipeline.scheduler.config.get("shift", 1.0))
    return 1.0


@torch.no_grad()
def generate(
    policy: Policy,
    prompts: list[str],
    seeds: list[int],
    settings: EvalSettings,
    adapter: str | None = "default",
) -> list[Image.Image]:
    """Images for prompts with per-image seeds (batched; result independent of batching).

    ``settings.cfg`` != 1 applies classifier-free guidance against the empty prompt.
    """
    grid = policy_time_grid(policy, settings.steps, settings.shift)  # the scheduler's sigmas
    extra = sampling_velocity_kwargs(policy)  # integer timesteps, as the official pipeline
    images: list[Image.Image] = []
    for start in range(0, len(prompts), settings.batch_size):
        chunk = slice(start, start + settings.batch_size)
        noise = torch.stack([
            torch.randn(policy.latent_shape, generator=torch.Generator().manual_seed(s))
            for s in seeds[chunk]
        ]).to(policy.device)
        texts = prompts[chunk]
        cond = policy.encode_prompts(texts)
        if settings.cfg != 1.0:
            cond = cat_conds([policy.encode_prompts([""] * len(texts)), cond])

        def velocity(x: torch.Tensor, t: torch.Tensor, c: Any = cond) -> torch.Tensor:
            if settings.cfg == 1.0:
                return policy.velocity(x, t, c, adapter=adapter, **extra)
            both = torch.cat([t, t]) if t.dim() and t.shape[0] == x.shape[0] else t
            v_uncond, v_cond = policy.velocity(torch.cat([x, x]), both, c, adapter=adapter,
                                               **extra).chunk(2)
            return v_uncond + settings.cfg * (v_cond - v_uncond)

        x0 = sample(velocity, noise, settings.steps, settings.solver, grid=grid)
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


class _PolicyImages:
    """Produces a batch's images: loads those already on disk, generates and saves the rest."""

    def __init__(self, policy: Policy, settings: EvalSettings, adapter: str | None) -> None:
        self.policy, self.settings, self.adapter = policy, settings, adapter
        self.counts = {"generated": 0, "reused": 0}
        self._batches = 0  # generated batches and saved images, for the crash-test hooks
        self._saved = 0

    def _before_rename(self) -> None:
        self._saved += 1
        fault_point("eval-mid-png", self._saved)  # crash tests only (faults.py)

    def __call__(self, items: Sequence[EvalItem]) -> list[Image.Image]:
        images: list[Image.Image | None] = [
            layout.load_png(it.image_path) if it.image_path and it.image_path.is_file() else None
            for it in items
        ]
        missing = [i for i, image in enumerate(images) if image is None]
        self.counts["reused"] += len(items) - len(missing)
        if missing:
            made = generate(self.policy, [items[i].spec.text for i in missing],
                            [int(items[i].seed or 0) for i in missing], self.settings, self.adapter)
            for i, image in zip(missing, made, strict=True):
                path = items[i].image_path
                if path is not None:
                    layout.save_png(image, path, before_rename=self._before_rename)
                images[i] = image
            self.counts["generated"] += len(missing)
            self._batches += 1
            fault_point("eval-after-png", self._batches)  # crash tests only (faults.py)
        return [image for image in images if image is not None]


def _load_images(items: Sequence[EvalItem]) -> list[Image.Image]:
    images = []
    for item in items:
        assert item.image_path is not None
        image = layout.load_png(item.image_path)
        if image is None:
            raise UsageError(f"cannot read image {item.image_path}: give PNG/JPEG files")
        images.append(image)
    return images


def _run(
    evaluator: Evaluator,
    items: list[EvalItem],
    produce: Callable[[Sequence[EvalItem]], list[Image.Image]],
    session: EvalSession,
    output: Path | None,
    batch_size: int,
    progress: Progress | None,
    write_layout: bool = True,
) -> tuple[SuiteResult, dict[str, int]]:
    """Open the run, do this process's share of the items not done yet, then summarize."""
    dist = session.dist
    session.open()
    mine = [it for it in items if it.prompt_index % dist.world_size == dist.rank]
    if output is not None:  # temporary files of a killed run (this process's share only)
        folders = [output] if dist.is_main else []
        if write_layout:
            for index in sorted({it.prompt_index for it in mine}):
                folders += [layout.prompt_dir(output, index),
                            layout.prompt_dir(output, index) / layout.SAMPLES_DIR]
        layout.remove_temporaries(folders)
    done = session.done()
    todo = [it for it in mine if it.key not in done
            or (it.image_path is not None and not it.image_path.is_file())]
    if output is not None and write_layout:
        for index, spec in {it.prompt_index: it.spec for it in mine}.items():
            layout.write_prompt_metadata(output, index, evaluator.prompt_line(spec))
    counts = {"total": len(items), "skipped": len(mine) - len(todo)}
    finished = [counts["skipped"]]

    def on_scored(n: int) -> None:
        finished[0] += n
        if progress is not None:
            progress(finished[0], len(mine))

    if progress is not None:
        progress(finished[0], len(mine))
    try:
        produce_and_score(todo, produce, evaluator, session.record, batch_size, on_scored)
        dist.barrier()
        rows = session.rows_for(it.key for it in items)
        result = evaluator.summarize(rows)
        if dist.is_main:
            if output is not None:
                specs = {it.key: it.spec for it in items}
                lines = [evaluator.result_line(r, specs[(r["prompt_id"], r["sample_index"])])
                         for r in rows]
                layout.write_results(output / layout.RESULTS_FILE, lines)
            fault_point("eval-before-finish", len(rows))  # crash tests only (faults.py)
            session.finish(result.metrics, result.higher_is_better, n=len(rows))
        dist.barrier()
    except KeyboardInterrupt:
        session.fail(interrupted=True)
        raise
    except BaseException:
        session.fail()
        raise
    return result, counts


def _check_batch(batch_size: int) -> None:
    if batch_size < 1:
        raise UsageError(f"batch size must be >= 1, got {batch_size}")


def run_evaluation(
    policy: Policy,
    evaluator: Evaluator,
    model_name: str,
    settings: EvalSettings,
    store: Any | None = None,
    adapter: str | None = "default",
    progress: Progress | None = None,
    output_dir: str | Path | None = None,
    dist: Distributed | None = None,
) -> EvalReport:
    """Generate and score the suite; record a run with per-sample rows when a store is given.

    ``output_dir`` keeps the images (GenEval layout) and results.jsonl and makes reruns resume.
    """
    _check_batch(settings.batch_size)
    output = Path(output_dir).resolve() if output_dir is not None else None
    items = [
        EvalItem(i, spec, k, sample_seed(settings.seed, i, k),
                 layout.image_path(output, i, k) if output is not None else None)
        for i, spec, k in evaluation_items(evaluator, settings.limit)
    ]
    shift = policy_shift(policy) if settings.shift is None else settings.shift
    config = {
        "suite": evaluator.name, "model": model_name, "n_samples": evaluator.samples_per_prompt,
        "steps": settings.steps, "solver": settings.solver, "shift": shift, "cfg": settings.cfg,
        "seed": settings.seed, "limit": settings.limit, "adapter": adapter,
        "prompts_sha256": evaluator.fingerprint(), "suite_options": evaluator.settings(),
        "output_dir": str(output) if output is not None else None,
    }
    session = EvalSession(evaluator, model_name, config, store,
                          str(output) if output is not None else None, dist)
    producer = _PolicyImages(policy, settings, adapter)
    start = time.time()
    result, counts = _run(evaluator, items, producer, session, output, settings.batch_size,
                          progress)
    counts.update(producer.counts)
    return EvalReport(session.run_id, evaluator.name, model_name, result.n, result.metrics, result,
                      seconds=time.time() - start, counts=counts,
                      output_dir=str(output) if output is not None else None)


def score_images(
    evaluator: Evaluator,
    source: str | Path,
    model_name: str | None = None,
    store: Any | None = None,
    batch_size: int = 32,
    progress: Progress | None = None,
    output_dir: str | Path | None = None,
    dist: Distributed | None = None,
) -> EvalReport:
    """Score images made elsewhere (GenEval layout folder or JSONL manifest) and record a run."""
    _check_batch(batch_size)
    path = Path(source).resolve()
    groups = layout.read_image_source(path)
    items: list[EvalItem] = []
    for index, group in enumerate(groups):
        spec = evaluator.spec_from_line(group.prompt_id, group.line)
        items.extend(EvalItem(index, spec, k, None, file) for k, file in sorted(group.images))
    if not items:
        raise UsageError(f"--images {path}: no images to score")
    output = Path(output_dir).resolve() if output_dir is not None else None
    model = model_name or str(path)
    config = {
        "suite": evaluator.name, "model": model, "images": str(path), "n_images": len(items),
        "prompts_sha256": _specs_digest(evaluator, [g.line for g in groups]),
        "suite_options": evaluator.settings(),
        "output_dir": str(output) if output is not None else None,
    }
    session = EvalSession(evaluator, model, config, store,
                          str(output) if output is not None else None, dist)
    start = time.time()
    result, counts = _run(evaluator, items, _load_images, session, output, batch_size, progress,
                           write_layout=False)
    counts.update({"generated": 0, "reused": len(items) - counts["skipped"]})
    return EvalReport(session.run_id, evaluator.name, model, result.n, result.metrics, result,
                      seconds=time.time() - start, counts=counts,
                      output_dir=str(output) if output is not None else None)


def _specs_digest(evaluator: Evaluator, lines: list[dict[str, Any]]) -> str:
    from nftkit.results.store import config_hash

    return config_hash({"suite": evaluator.name, "lines": lines})
