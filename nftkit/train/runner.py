"""One training job end to end: build everything, train with checkpoints, plot, record.

Nothing is lost on a crash or Ctrl-C: the trainer checkpoints atomically every N epochs and once
more on the way out, the run is marked "interrupted" or "failed" in the results database, and
``--resume`` continues from the last complete checkpoint.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from nftkit.compose import RewardComposer
from nftkit.errors import UsageError
from nftkit.policies.loading import describe_model, load_policy, policy_kwargs
from nftkit.train.algos import TITLES, TrainConfig, algo_of, trainer_class
from nftkit.train.checkpoint import latest_checkpoint, write_json_atomic
from nftkit.train.distributed import Distributed
from nftkit.train.presets import resolve_training_prompts
from nftkit.train.run_lock import RunLock
from nftkit.train.stages import Stage, parse_stages, stage_at
from nftkit.train.trainer_base import AdapterTrainer, write_history
from nftkit.train.watch import Watch, WatchOptions

RUN_FILE = "run.json"
GRID_SEED = 1234


@dataclass
class TrainSpec:
    """What to train: base model, rewards, prompts, algorithm settings and where to write.

    ``config`` is an NFTConfig (DiffusionNFT) or a GRPOConfig (the FlowGRPO baseline); its type
    picks the trainer.
    """

    model: str
    rewards: str
    prompts: str
    config: TrainConfig
    output: Path
    device: str = "cpu"
    preset: str | None = None
    policy_options: dict[str, Any] | None = None
    stages: list[dict[str, Any]] = field(default_factory=list)
    watch: WatchOptions = field(default_factory=WatchOptions)

    @property
    def algo(self) -> str:
        """The algorithm, "nft" or "grpo", from the config's type."""
        return algo_of(self.config)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly description (stored with the run)."""
        return {
            "model": self.model,
            "rewards": self.rewards,
            "prompts": self.prompts,
            "preset": self.preset,
            "device": self.device,
            "algo": self.algo,
            self.algo: self.config.to_dict(),
            "policy": self.policy_options or {},
            "stages": self.stages,
            "watch": self.watch.to_dict(),
        }


def run_training(
    spec: TrainSpec,
    db_url: str | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    on_resume: Callable[[int], None] | None = None,
    resume: bool = False,
    on_start: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train ``spec``; returns a summary dict (run id, epochs, last reward, paths).

    Under ``accelerate launch`` / ``torchrun`` every process samples and scores its share and
    trains through DDP; only the main process writes files and records the run.
    """
    dist = Distributed.from_env(spec.device)
    with RunLock(Path(spec.output), enabled=dist.is_main) as lock:  # one trainer per folder
        return _run_locked(spec, dist, lock, db_url, on_epoch, on_resume, resume, on_start)


def _run_locked(
    spec: TrainSpec,
    dist: Distributed,
    lock: RunLock,
    db_url: str | None,
    on_epoch: Callable[[dict[str, Any]], None] | None,
    on_resume: Callable[[int], None] | None,
    resume: bool,
    on_start: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    from nftkit.results.store import ResultsStore, database_url

    device = dist.device(spec.device)
    output = Path(spec.output)
    has_checkpoint = latest_checkpoint(output / "checkpoints") is not None
    if has_checkpoint and not resume:
        raise UsageError(
            f"{output} already holds a training run; pass --resume to continue it or choose "
            "another --output"
        )
    torch.manual_seed(spec.config.seed)
    options = dict(spec.policy_options or {})
    info = describe_model(spec.model, family=options.get("family"))
    policy = load_policy(
        spec.model, device=device, family=options.get("family"), **policy_kwargs(options)
    )
    stages = parse_stages(spec.stages)
    first = stage_at(stages, 0) if stages else Stage("main", 1, spec.rewards, spec.prompts)
    composer = RewardComposer(first.rewards, reward_kwargs={"device": device})
    prompts = resolve_training_prompts(first.prompts)
    store = ResultsStore(database_url(db_url)) if dist.is_main else None
    watch = Watch(spec.watch, output, device, spec.to_dict(), db_url)  # checks the options
    output.mkdir(parents=True, exist_ok=True)  # only once every input above is valid
    lock.acquire()
    trainer = trainer_class(spec.algo)(
        policy,
        composer,
        prompts,
        spec.config,
        output,
        model_info=_model_info(info, spec),
        dist=dist,
    )
    if on_start is not None:
        on_start(str(device))  # every input is valid: say where training runs
    run_file = output / RUN_FILE
    if resume and has_checkpoint and trainer.resume():
        run_id = json.loads(run_file.read_text())["run_id"] if run_file.is_file() else None
        if on_resume is not None:
            on_resume(trainer.epoch)
    else:
        run_id = None
    if store is not None:
        if run_id is None:
            run_id = store.start_run("train", spec.model, spec.to_dict(), output_dir=str(output))
            write_json_atomic(run_file, {"run_id": run_id, **spec.to_dict()})
        else:
            store.set_status(run_id, "running")
    grid_prompts = prompts[:: max(len(prompts) // 8, 1)][:8]
    # under FSDP every process runs every forward; only the main process writes the figures
    draws = dist.is_main or trainer.collective_forwards
    grid_base = (
        _grid_images(policy, grid_prompts, adapter=None)
        if draws and trainer.has_base_model()
        else []
    )
    status = "failed"
    try:
        watch.start(trainer, store, run_id)
        current = first
        while trainer.epoch < spec.config.epochs:
            if stages and stage_at(stages, trainer.epoch) != current:
                current = stage_at(stages, trainer.epoch)
                trainer.composer = RewardComposer(current.rewards, reward_kwargs={"device": device})
                trainer.prompts = resolve_training_prompts(current.prompts)
            watch.before_epoch()
            record = trainer.run_epoch()
            stop = watch.after_epoch(record)
            if stages:
                record["stage"] = current.name
            if store is not None:
                metrics = {k: v for k, v in record.items() if isinstance(v, float)}
                store.log_metrics(run_id, "train", metrics, step=record["step"], n=None)
                write_history(output / "history.jsonl", trainer.history)
            if trainer.epoch % spec.config.checkpoint_every == 0:
                trainer.save_checkpoint()
            if on_epoch is not None:
                on_epoch(record)
            if stop is not None:
                break
        watch.final_eval()  # the last checkpoint is always evaluated (a crash here resumes)
        status = "finished"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        if trainer.history:
            trainer.save_checkpoint()
            if draws:
                _write_figures(trainer, policy, grid_prompts, grid_base, output, dist.is_main)
        watch.close()
        if store is not None:
            store.finish_run(run_id, status=status)
    last = trainer.history[-1] if trainer.history else {}
    return {
        "run_id": run_id,
        "epochs": trainer.epoch,
        "optimizer_steps": trainer.global_step,
        "reward_first": trainer.history[0]["reward_mean"] if trainer.history else None,
        "reward_last": last.get("reward_mean"),
        "output": str(output),
        "stopped": watch.stopped,
        "evals": [{k: p[k] for k in ("suite", "epoch", "step", "metrics")} for p in watch.points],
    }


def _model_info(info: dict[str, Any], spec: TrainSpec) -> dict[str, Any]:
    """What nftkit_model.json records beside the LoRA: the family, the base model and the
    policy options trained with (``load_policy`` uses them as the defaults for eval)."""
    model_info: dict[str, Any] = {
        "family": info.get("family", "shapes"),
        "base": info.get("base", spec.model),
    }
    options = {k: v for k, v in (spec.policy_options or {}).items() if k != "family"}
    if options:
        model_info["policy"] = options
    return model_info


def _grid_images(policy: Any, prompts: list[Any], adapter: str | None) -> list[Any]:
    from nftkit.eval import EvalSettings, generate

    settings = EvalSettings(steps=20, batch_size=len(prompts) or 1)
    seeds = [GRID_SEED + i for i in range(len(prompts))]
    return generate(policy, [p.text for p in prompts], seeds, settings, adapter=adapter)


def _write_figures(
    trainer: AdapterTrainer,
    policy: Any,
    prompts: list[Any],
    base: list[Any],
    output: Path,
    write: bool = True,
) -> None:
    """reward_curve.png and samples_base_vs_tuned.png (EMA weights, same seeds as base).

    ``write`` False: only the forwards (the other processes under FSDP). Without a base model
    (full training with ref_weight 0) the grid has the tuned row only.
    """
    from nftkit.plots import reward_curve, sample_grid

    if write:
        reward_curve(
            trainer.history,
            output / "reward_curve.png",
            title=f"{TITLES.get(trainer.algo, trainer.algo)} training",
        )
    with trainer.ema.swapped_in(trainer.trainable):
        tuned = _grid_images(policy, prompts, adapter="default")
    if not write:
        return
    rows = [("base", base), ("tuned", tuned)] if base else [("tuned", tuned)]
    sample_grid(rows, [p.text for p in prompts], output / "samples_base_vs_tuned.png")
