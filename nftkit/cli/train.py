"""``nftkit train``: DiffusionNFT (or the FlowGRPO baseline) from a preset or explicit options."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from nftkit.cli.state import STATE
from nftkit.errors import UsageError


def train(
    preset: str = typer.Option(None, "--preset", help="Named preset, e.g. 'shapes'."),
    algo: str = typer.Option(
        None,
        "--algo",
        help="Training algorithm: 'nft' (DiffusionNFT, the default) or 'grpo' (the FlowGRPO "
        "baseline). A preset brings its own (e.g. 'shapes-grpo').",
    ),
    model: str = typer.Option(None, "--model", "-m", help="Base model (overrides the preset)."),
    family: str = typer.Option(None, "--family", help="Model family (overrides model_index.json)."),
    rewards: str = typer.Option(None, "--rewards", "-r", help="Reward spec, e.g. 'ocr,jpeg=0.5'."),
    prompts: str = typer.Option(None, "--prompts", help="Prompt source: suite name or file."),
    output: Path = typer.Option(None, "--output", "-o", help="Training output folder."),
    epochs: int = typer.Option(
        None,
        "--epochs",
        help="Number of epochs (each: sample the epoch's images, then train on them).",
    ),
    steps: int = typer.Option(
        None,
        "--steps",
        hidden=True,
        help="Deprecated alias of --epochs (it counts epochs).",
    ),
    plan: bool = typer.Option(
        False,
        "--plan",
        help="Print the derived layout (processes, per-GPU batches, gradient accumulation, "
        "optimizer steps, total images) and exit without loading a model.",
    ),
    processes: int = typer.Option(
        None,
        "--processes",
        min=1,
        help="Plan for this many GPUs/processes (default: WORLD_SIZE from the launcher, else 1).",
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue from the last checkpoint."),
    seed: int = typer.Option(None, "--seed", help="Random seed."),
    device: str = typer.Option("auto", help="Torch device; auto = cuda if available, else cpu."),
    checkpoint_every: int = typer.Option(None, help="Checkpoint every N epochs."),
    config_file: Path = typer.Option(
        None,
        "--config",
        help="TOML file of training options (a [nft] or [grpo] table, or top-level keys), "
        "optional [policy] "
        "table (dtype, resolution, gradient_checkpointing, autocast_dtype, ...) and "
        "[[stages]] (name, epochs, rewards, prompts).",
    ),
    overrides: list[str] = typer.Option(
        None,
        "--set",
        help="Training option (NFT or GRPO) as key=value, parsed to the option's type, repeatable; "
        "policy.KEY=VALUE sets a policy option (e.g. policy.dtype=bf16).",
    ),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bar."),
    eval_suite: str = typer.Option(
        None,
        "--eval-suite",
        help="Held-out suite evaluated on the "
        "EMA weights (a preset brings its own); always at the end.",
    ),
    eval_every: int = typer.Option(None, "--eval-every", help="Also evaluate every N epochs."),
    eval_limit: int = typer.Option(None, "--eval-limit", help="Only the suite's first K prompts."),
    log_with: str = typer.Option(
        None,
        "--log-with",
        help="Trackers: tensorboard, wandb, mlflow "
        "or all (comma-separated); offline, under the output folder.",
    ),
    monitor: str = typer.Option(
        None,
        "--monitor",
        help="Rewards scored on each epoch's samples "
        "and logged, never trained on, e.g. 'pickscore,aesthetic'.",
    ),
    stop_if: list[str] = typer.Option(
        None,
        "--stop-if",
        help="Stop cleanly when a rule holds: "
        "'pickscore<-1.0' or 'aesthetic drop>20%'; repeatable.",
    ),
) -> None:
    """Train a model against the composed reward with DiffusionNFT (or --algo grpo)."""
    from nftkit.cli.validation import validate_train
    from nftkit.config_values import typed_train_options
    from nftkit.train.algos import check_algo, make_config
    from nftkit.train.layout import plan_layout
    from nftkit.train.presets import PRESETS, get_preset
    from nftkit.train.runner import TrainSpec, run_training

    if algo is not None:
        check_algo(algo)

    if preset is None and (model is None or rewards is None or prompts is None):
        raise UsageError(
            "give --preset NAME, or all of --model, --rewards and --prompts "
            f"(presets: {', '.join(PRESETS)})"
        )
    base = get_preset(preset) if preset else None
    algo = algo or (base.algo if base else "nft")
    if base is not None and base.algo != algo:
        matching = [name for name, p in PRESETS.items() if p.algo == algo]
        raise UsageError(
            f"preset '{preset}' trains with --algo {base.algo}, not {algo}; use a {algo} preset "
            f"({', '.join(matching)}) or --model/--rewards/--prompts"
        )
    options = typed_train_options(algo, _read_config(config_file), config_file, overrides or [])
    stages = options.pop("stages", None)
    policy_options = {
        **(base.policy if base else {}),
        **{k.split(".", 1)[1]: options.pop(k) for k in list(options) if k.startswith("policy.")},
    }
    if isinstance(family, str):  # called as a function (demo), typer leaves an OptionInfo
        policy_options["family"] = family
    if stages is None and base is not None and not (rewards or prompts):
        stages = base.stages
    if epochs is not None and steps is not None and epochs != steps:
        raise UsageError("--steps is an alias of --epochs; give only --epochs")
    if steps is not None and not quiet:
        typer.echo("note: --steps counts epochs; it is deprecated, use --epochs", err=True)
    epochs = epochs if epochs is not None else steps
    if epochs is not None and epochs < 1:
        raise UsageError("--epochs must be >= 1")
    options.update(
        {
            k: v
            for k, v in {
                "epochs": epochs,
                "seed": seed,
                "checkpoint_every": checkpoint_every,
            }.items()
            if v is not None
        }
    )
    config = base.train_config(**options) if base else make_config(algo, options)
    world = processes or int(os.environ.get("WORLD_SIZE", "1") or 1)
    layout = plan_layout(config, world)  # a layout that does not divide fails here, early
    if plan:
        typer.echo(f"plan for {preset or model} ({algo})")
        typer.echo(layout.describe())
        from nftkit.train.memory_plan import plan_memory_line

        typer.echo(
            plan_memory_line(model or (base.model if base else ""), config, policy_options, world)
        )
        return
    if output is None:
        raise UsageError("give --output DIR (the training output folder), or --plan")
    from nftkit.train.watch import WatchOptions, resolve_device

    device = resolve_device(device)
    watch = WatchOptions(
        eval_suite=eval_suite or (base.eval_suite if base and eval_every else None),
        eval_every=eval_every,
        eval_limit=eval_limit,
        eval_settings=dict(base.eval_settings) if base and not eval_suite else {},
        log_with=log_with,
        monitor=monitor,
        stop_if=list(stop_if or []),
    )
    watch.check()  # bad watch options fail before anything loads
    spec = TrainSpec(
        preset=preset,
        model=model or (base.model if base else ""),
        rewards=rewards or (base.rewards if base else ""),
        prompts=prompts or (base.prompts if base else ""),
        config=config,
        output=output,
        device=device,
        policy_options=policy_options,
        stages=stages or [],
        watch=watch,
    )
    validate_train(spec)  # names, model, prompts, output, device: before any bar or load
    console = Console(stderr=True)
    if not quiet and int(os.environ.get("RANK", "0") or 0) == 0:
        typer.echo(
            f"{layout.epochs} epochs x {layout.steps_per_epoch} optimizer steps = "
            f"{layout.optimizer_steps} optimizer steps ({layout.samples_per_step} samples per "
            f"step: {world} process(es) x batch {layout.train_batch_size} x grad accum "
            f"{layout.grad_accum})",
            err=True,
        )
    progress = Progress(
        TextColumn("[bold]train[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("reward {task.fields[reward]}"),
        TimeElapsedColumn(),
        console=console,
        disable=quiet,
    )
    with progress:
        task = progress.add_task("train", total=spec.config.epochs, reward="-")

        def on_epoch(record: dict[str, Any]) -> None:
            progress.update(
                task, completed=record["epoch"] + 1, reward=f"{record['reward_mean']:.3f}"
            )

        start = time.time()
        summary = run_training(
            spec,
            db_url=STATE.db,
            on_epoch=on_epoch,
            resume=resume,
            on_resume=lambda e: progress.update(task, completed=e),
            on_start=lambda d: console.print(f"device: {d}"),
        )
    if summary.get("stopped"):
        console.print(summary["stopped"])
    console.print(
        f"trained {summary['epochs']} epochs in {time.time() - start:.0f}s; outputs in {output}"
    )
    typer.echo(json.dumps(summary))


def _read_config(path: Path | None) -> dict[str, Any]:
    """Training options from a TOML file: the [nft] or [grpo] table, or the top-level keys."""
    if path is None:
        return {}
    import tomllib

    if not path.is_file():
        raise UsageError(f"config file not found: {path}")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{path}: invalid TOML ({exc})") from exc
    table = "nft" if "nft" in data else "grpo"
    options = dict(
        data.get(table, {k: v for k, v in data.items() if k not in ("policy", "stages")})
    )
    for key, value in dict(data.get("policy", {})).items():
        options[f"policy.{key}"] = value
    if "stages" in data:
        options["stages"] = list(data["stages"])
    return options
