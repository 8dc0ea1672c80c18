"""``nftkit eval``: generate a suite's images with a model (or read them) and score them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from nftkit.cli.state import STATE
from nftkit.errors import UsageError


def _evaluator(
    suite: str, n_samples: int | None, prompts: Path | None, device: str, options: dict[str, Any]
) -> Any:
    """The suite's evaluator with the options it understands (others must be unset)."""
    from nftkit.registry import evaluator_class

    cls = evaluator_class(suite)
    if not getattr(cls, "accepts_prompt_file", False):
        given = [f"--{k.replace('_', '-')}" for k, v in options.items() if v is not None]
        if prompts is not None:
            given.insert(0, "--prompts")
        if given:
            raise UsageError(f"suite '{suite}' has its own prompts and scorer; drop {given[0]}")
        return cls(n_samples=n_samples)
    from nftkit.evaluators.reward_set import RewardSetEvaluator

    kwargs: dict[str, Any] = {"n_samples": n_samples, "prompts_path": prompts, "device": device}
    vlm_opts = {k: v for k, v in options.items() if k in ("vlm_url", "vlm_model") and v is not None}
    if vlm_opts:
        import inspect

        if "vlm_url" not in inspect.signature(cls.__init__).parameters:
            raise UsageError(
                f"--vlm-url / --vlm-model apply to VQA-judged suites (geneval2, dpg), not {suite}"
            )
        kwargs.update(vlm_opts)
    reward_opts = {
        k: v for k, v in options.items() if k in ("rewards", "unifiedreward_url", "clip_preprocess")
    }
    if issubclass(cls, RewardSetEvaluator):
        kwargs.update({k: v for k, v in reward_opts.items() if v is not None})
    elif any(v is not None for v in reward_opts.values()):
        raise UsageError(
            f"--rewards / --unifiedreward-url / --clip-preprocess apply to drawbench "
            f"and pickscore, not {suite}"
        )
    return cls(**kwargs)


def evaluate(
    suite: str = typer.Option(
        ...,
        "--suite",
        "-s",
        help="Evaluator: geneval, ocr, drawbench, pickscore, shapes, or a plugin.",
    ),
    model: str = typer.Option(
        None,
        "--model",
        "-m",
        help="Hub id, diffusers folder, training "
        "output folder, LoRA folder (with --base) or shapes model.",
    ),
    base: str = typer.Option(None, "--base", help="Base model of a LoRA folder given as --model."),
    family: str = typer.Option(None, "--family", help="Model family (overrides model_index.json)."),
    images: Path = typer.Option(
        None,
        "--images",
        help="Score existing images instead: a GenEval "
        "layout folder or a JSONL manifest (image, prompt, metadata).",
    ),
    prompts: Path = typer.Option(
        None,
        "--prompts",
        "-p",
        help="Prompt file instead of the suite's public set (GenEval: a metadata JSONL).",
    ),
    n_samples: int = typer.Option(None, "--n-samples", help="Images per prompt (suite default)."),
    steps: int = typer.Option(None, "--steps", help="Sampling steps (suite default if unset)."),
    solver: str = typer.Option(None, "--solver", help="euler, dpm2 or sde (suite default)."),
    cfg: float = typer.Option(1.0, "--cfg", help="Guidance scale (1.0 = CFG-free)."),
    seed: int = typer.Option(0, "--seed", help="Base seed; each (prompt, sample) derives one."),
    batch_size: int = typer.Option(32, "--batch-size", help="Images per generation batch."),
    limit: int = typer.Option(None, "--limit", help="Only the first N prompts."),
    output: Path = typer.Option(
        None,
        "--output",
        "-o",
        help="Keep images (GenEval layout) and "
        "results.jsonl here; a rerun with the same folder resumes.",
    ),
    rewards: str = typer.Option(
        None,
        "--rewards",
        help="drawbench/pickscore reward set, e.g. "
        "'pickscore,hpsv2' (default: imagereward, pickscore, aesthetic, "
        "clipscore, hpsv2).",
    ),
    unifiedreward_url: str = typer.Option(
        None,
        "--unifiedreward-url",
        help="OpenAI-compatible UnifiedReward server; adds 'unifiedreward'.",
    ),
    clip_preprocess: str = typer.Option(
        None,
        "--clip-preprocess",
        help="drawbench/pickscore "
        "CLIPScore: diffusionnft (default, DiffusionNFT's "
        "ClipScorer) or processor (transformers' CLIP processor).",
    ),
    vlm_url: str = typer.Option(
        None,
        "--vlm-url",
        help="geneval2/dpg: OpenAI-compatible VQA server (default $NFTKIT_VLM_URL).",
    ),
    vlm_model: str = typer.Option(
        None,
        "--vlm-model",
        help="geneval2/dpg: model name on that "
        "server, or a local folder with NFTKIT_VLM_BACKEND=transformers "
        "(default $NFTKIT_VLM_MODEL).",
    ),
    overrides: list[str] = typer.Option(
        None,
        "--set",
        help="Policy option as policy.KEY=VALUE (e.g. policy.resolution=512, policy.dtype=bf16), "
        "parsed as in `nftkit train --set`; repeatable. A training output folder brings the "
        "options it was trained with; these override them.",
    ),
    device: str = typer.Option("cpu", help="Torch device."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Evaluate a model on a benchmark suite (or score existing images) and record the run."""
    from nftkit.cli.validation import validate_eval
    from nftkit.config_values import policy_set_items
    from nftkit.eval import EvalSettings
    from nftkit.eval import evaluate as evaluate_suite
    from nftkit.results.store import ResultsStore, database_url
    from nftkit.train.distributed import Distributed

    if model is None and images is None:
        raise UsageError("give --model MODEL to generate images, or --images DIR to score them")
    if batch_size < 1 or (limit is not None and limit < 1) or (steps is not None and steps < 1):
        raise UsageError("--batch-size, --limit and --steps must be >= 1")
    if cfg <= 0:
        raise UsageError(f"--cfg must be > 0 (1.0 = no guidance), got {cfg}")
    policy_options = policy_set_items(overrides or [])
    validate_eval(
        suite, model, base, images, prompts, output, device, family, policy_options
    )  # before downloads/loads
    evaluator = _evaluator(
        suite,
        n_samples,
        prompts,
        device,
        {
            "rewards": rewards,
            "unifiedreward_url": unifiedreward_url,
            "clip_preprocess": clip_preprocess,
            "vlm_url": vlm_url,
            "vlm_model": vlm_model,
        },
    )
    if images is None:
        evaluator.prompts()  # resolve (and check) the prompt set before loading the model
    dist = Distributed.from_env(device)
    store = ResultsStore(database_url(STATE.db))
    progress = Progress(
        TextColumn(f"[bold]eval {suite}[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        disable=as_json or not dist.is_main,
    )
    with progress:
        task = progress.add_task("eval", total=None)

        def update(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        policy = None
        if images is None:
            from nftkit.policies.loading import load_policy, policy_kwargs

            policy = load_policy(
                model,
                device=dist.device(device),
                base=base,
                family=family,
                **policy_kwargs(policy_options),
            )
        settings = EvalSettings(
            steps=steps or evaluator.default_steps,
            solver=solver or evaluator.default_solver,
            cfg=cfg,
            seed=seed,
            batch_size=batch_size,
            limit=limit,
        )
        report = evaluate_suite(
            evaluator,
            settings,
            policy=policy,
            images=images,
            model_name=model,
            store=store,
            progress=update,
            output_dir=output,
            dist=dist,
            extra_config={"policy": policy_options} if policy_options else None,
        )
    if not dist.is_main:
        return
    if as_json:
        typer.echo(json.dumps(report.as_json()))
        return
    _print_report(report)


def _print_report(report: Any) -> None:
    counts = report.counts
    title = (
        f"{report.suite} - {report.model} ({report.n_images} images, "
        f"{report.seconds:.0f}s, run {str(report.run_id)[:8]})"
    )
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in report.metrics.items():
        table.add_row(key, f"{value:.4f}")
    console = Console()
    console.print(table)
    if counts.get("skipped"):
        console.print(f"resumed: {counts['skipped']} images were already done")
    if report.output_dir:
        console.print(f"images and results.jsonl in {report.output_dir}")
