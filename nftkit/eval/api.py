"""Generate a suite's images with a policy (or read them), score them, and record the run.

The stages follow the data and each one only calls those before it: ``specs`` (items) ->
``generation`` (images) -> ``scoring`` (rows) -> ``recording`` (the run in the store) ->
``report`` (EvalReport, results.jsonl). This module strings them together. With an output
folder, images are written in GenEval's layout, ``results.jsonl`` gets one line per image, and
a rerun with the same settings resumes: images that are on disk and recorded are neither
generated nor scored again. Under several processes (``accelerate launch``) prompts are
sharded by rank. ``evaluate`` is the one entry point of ``nftkit eval``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nftkit.errors import UsageError
from nftkit.eval import layout
from nftkit.eval.generation import PolicyImages, load_images, policy_shift
from nftkit.eval.recording import EvalSession
from nftkit.eval.report import EvalReport, write_results_file
from nftkit.eval.scoring import Producer, produce_and_score
from nftkit.eval.specs import (
    EvalItem,
    EvalSettings,
    check_batch_size,
    generation_items,
    image_items,
)
from nftkit.evaluators.base import Evaluator, SuiteResult
from nftkit.policies.base import Policy
from nftkit.results.values import config_hash
from nftkit.train.distributed import Distributed
from nftkit.train.faults import fault_point

Progress = Callable[[int, int], None]


def _prepare_output(
    output: Path, evaluator: Evaluator, mine: list[EvalItem], is_main: bool, write_layout: bool
) -> None:
    """Delete a killed run's temporary files (this process's share) and write prompt metadata."""
    folders = [output] if is_main else []
    indices = sorted({it.prompt_index for it in mine}) if write_layout else []
    for index in indices:
        folders += [
            layout.prompt_dir(output, index),
            layout.prompt_dir(output, index) / layout.SAMPLES_DIR,
        ]
    layout.remove_temporaries(folders)
    if write_layout:
        for index, spec in {it.prompt_index: it.spec for it in mine}.items():
            layout.write_prompt_metadata(output, index, evaluator.prompt_line(spec))


def _run(
    evaluator: Evaluator,
    items: list[EvalItem],
    produce: Producer,
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
    if output is not None:
        _prepare_output(output, evaluator, mine, dist.is_main, write_layout)
    done = session.done()
    todo = [
        it
        for it in mine
        if it.key not in done or (it.image_path is not None and not it.image_path.is_file())
    ]
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
                write_results_file(output, evaluator, items, rows)
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
    extra_config: dict[str, Any] | None = None,
) -> EvalReport:
    """Generate and score the suite; record a run with per-sample rows when a store is given.

    ``output_dir`` keeps the images (GenEval layout) and results.jsonl and makes reruns resume.
    ``extra_config`` joins the run's config (e.g. the training run and step it evaluates).
    """
    check_batch_size(settings.batch_size)
    output = Path(output_dir).resolve() if output_dir is not None else None
    items = generation_items(evaluator, settings, output)
    shift = policy_shift(policy) if settings.shift is None else settings.shift
    config = {
        "suite": evaluator.name,
        "model": model_name,
        "n_samples": evaluator.samples_per_prompt,
        "steps": settings.steps,
        "solver": settings.solver,
        "shift": shift,
        "cfg": settings.cfg,
        "seed": settings.seed,
        "limit": settings.limit,
        "adapter": adapter,
        "prompts_sha256": evaluator.fingerprint(),
        "suite_options": evaluator.settings(),
        "output_dir": str(output) if output is not None else None,
        **(extra_config or {}),
    }
    session = EvalSession(
        evaluator, model_name, config, store, str(output) if output is not None else None, dist
    )
    producer = PolicyImages(policy, settings, adapter)
    start = time.time()
    result, counts = _run(
        evaluator, items, producer, session, output, settings.batch_size, progress
    )
    counts.update(producer.counts)
    return EvalReport(
        session.run_id,
        evaluator.name,
        model_name,
        result.n,
        result.metrics,
        result,
        seconds=time.time() - start,
        counts=counts,
        output_dir=str(output) if output is not None else None,
    )


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
    check_batch_size(batch_size)
    path = Path(source).resolve()
    items, lines = image_items(evaluator, path)
    output = Path(output_dir).resolve() if output_dir is not None else None
    model = model_name or str(path)
    config = {
        "suite": evaluator.name,
        "model": model,
        "images": str(path),
        "n_images": len(items),
        "prompts_sha256": config_hash({"suite": evaluator.name, "lines": lines}),
        "suite_options": evaluator.settings(),
        "output_dir": str(output) if output is not None else None,
    }
    session = EvalSession(
        evaluator, model, config, store, str(output) if output is not None else None, dist
    )
    start = time.time()
    result, counts = _run(
        evaluator, items, load_images, session, output, batch_size, progress, write_layout=False
    )
    counts.update({"generated": 0, "reused": len(items) - counts["skipped"]})
    return EvalReport(
        session.run_id,
        evaluator.name,
        model,
        result.n,
        result.metrics,
        result,
        seconds=time.time() - start,
        counts=counts,
        output_dir=str(output) if output is not None else None,
    )


def evaluate(
    evaluator: Evaluator,
    settings: EvalSettings,
    *,
    policy: Policy | None = None,
    images: str | Path | None = None,
    model_name: str | None = None,
    store: Any | None = None,
    progress: Progress | None = None,
    output_dir: str | Path | None = None,
    dist: Distributed | None = None,
    extra_config: dict[str, Any] | None = None,
) -> EvalReport:
    """The entry point of ``nftkit eval``: generate with ``policy`` or score ``images``.

    Exactly one of ``policy`` and ``images`` is given; scoring images uses only
    ``settings.batch_size``. ``extra_config`` joins a generating run's config (e.g. the policy
    options it was loaded with).
    """
    if (policy is None) == (images is None):
        raise UsageError("give a model to generate images, or --images DIR to score them")
    if images is not None:
        return score_images(
            evaluator,
            images,
            model_name,
            store=store,
            batch_size=settings.batch_size,
            progress=progress,
            output_dir=output_dir,
            dist=dist,
        )
    assert policy is not None
    if model_name is None:
        raise UsageError("name the model the images are generated with (--model)")
    return run_evaluation(
        policy,
        evaluator,
        model_name,
        settings,
        store=store,
        progress=progress,
        output_dir=output_dir,
        dist=dist,
        extra_config=extra_config,
    )
