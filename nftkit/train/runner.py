"""One training job end to end: build everything, train with checkpoints, plot, record.

Nothing is lost on a crash or Ctrl-C: the trainer checkpoints atomically every N epochs and once
more on the way out, the run is marked "interrupted" or "failed" in the results database, and
``--resume`` continues from the last complete checkpoint.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from nftkit.compose import RewardComposer
from nftkit.errors import UsageError
from nftkit.policies.loading import describe_model, load_policy
from nftkit.train.checkpoint import latest_checkpoint, write_json_atomic
from nftkit.train.nft import NFTConfig, NFTTrainer, write_history
from nftkit.train.presets import resolve_training_prompts

RUN_FILE = "run.json"
GRID_SEED = 1234


@dataclass
class TrainSpec:
    """What to train: base model, rewards, prompts, NFT settings and where to write."""

    model: str
    rewards: str
    prompts: str
    config: NFTConfig
    output: Path
    device: str = "cpu"
    preset: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly description (stored with the run)."""
        return {"model": self.model, "rewards": self.rewards, "prompts": self.prompts,
                "preset": self.preset, "device": self.device, "nft": self.config.to_dict()}


def run_training(
    spec: TrainSpec,
    db_url: str | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
    on_resume: Callable[[int], None] | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Train ``spec``; returns a summary dict (run id, epochs, last reward, paths)."""
    from nftkit.results.store import ResultsStore, database_url

    output = Path(spec.output)
    has_checkpoint = latest_checkpoint(output / "checkpoints") is not None
    if has_checkpoint and not resume:
        raise UsageError(
            f"{output} already holds a training run; pass --resume to continue it or choose "
            "another --output"
        )
    output.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(spec.config.seed)
    info = describe_model(spec.model)
    policy = load_policy(spec.model, device=spec.device)
    composer = RewardComposer(spec.rewards, reward_kwargs={"device": spec.device})
    prompts = resolve_training_prompts(spec.prompts)
    store = ResultsStore(database_url(db_url))
    trainer = NFTTrainer(
        policy, composer, prompts, spec.config, output,
        model_info={"family": info.get("family", "shapes"), "base": info.get("base", spec.model)},
    )
    run_file = output / RUN_FILE
    if resume and has_checkpoint and trainer.resume():
        run_id = json.loads(run_file.read_text())["run_id"] if run_file.is_file() else None
        if on_resume is not None:
            on_resume(trainer.epoch)
    else:
        run_id = None
    if run_id is None:
        run_id = store.start_run("train", spec.model, spec.to_dict(), output_dir=str(output))
        write_json_atomic(run_file, {"run_id": run_id, **spec.to_dict()})
    else:
        store.set_status(run_id, "running")
    grid_prompts = prompts[:: max(len(prompts) // 8, 1)][:8]
    grid_base = _grid_images(policy, grid_prompts, adapter=None)
    status = "failed"
    try:
        while trainer.epoch < spec.config.epochs:
            record = trainer.run_epoch()
            metrics = {k: v for k, v in record.items() if isinstance(v, float)}
            store.log_metrics(run_id, "train", metrics, step=record["step"], n=None)
            write_history(output / "history.jsonl", trainer.history)
            if trainer.epoch % spec.config.checkpoint_every == 0:
                trainer.save_checkpoint()
            if on_epoch is not None:
                on_epoch(record)
        status = "finished"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    finally:
        if trainer.history:
            trainer.save_checkpoint()
            _write_figures(trainer, policy, grid_prompts, grid_base, output)
        store.finish_run(run_id, status=status)
    last = trainer.history[-1] if trainer.history else {}
    return {
        "run_id": run_id,
        "epochs": trainer.epoch,
        "optimizer_steps": trainer.global_step,
        "reward_first": trainer.history[0]["reward_mean"] if trainer.history else None,
        "reward_last": last.get("reward_mean"),
        "output": str(output),
    }


def _grid_images(policy: Any, prompts: list[Any], adapter: str | None) -> list[Any]:
    from nftkit.evaluate import EvalSettings, generate

    settings = EvalSettings(steps=20, batch_size=len(prompts) or 1)
    seeds = [GRID_SEED + i for i in range(len(prompts))]
    return generate(policy, [p.text for p in prompts], seeds, settings, adapter=adapter)


def _write_figures(
    trainer: NFTTrainer, policy: Any, prompts: list[Any], base: list[Any], output: Path
) -> None:
    """reward_curve.png and samples_base_vs_tuned.png (EMA weights, same seeds as base)."""
    from nftkit.plots import reward_curve, sample_grid

    reward_curve(trainer.history, output / "reward_curve.png")
    with trainer.ema.swapped_in(trainer.trainable):
        tuned = _grid_images(policy, prompts, adapter="default")
    sample_grid([("base", base), ("tuned", tuned)], [p.text for p in prompts],
                output / "samples_base_vs_tuned.png")
