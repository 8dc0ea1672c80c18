"""How an epoch's samples map onto processes, micro-batches and optimizer steps.

The experiment is fixed by the samples of an epoch (prompts x images per prompt) and by how
many of them go into one optimizer step (``samples_per_step``, or ``steps_per_epoch``); the
gradient accumulation is derived: ``grad_accum = samples_per_step / (processes x per-GPU train
batch)``. The same preset therefore runs the same experiment on 1, 2, 4 or 8 processes, as the
DiffusionNFT reference config does (48 x 24 = 1,152 samples, per-GPU batch 9, 8 GPUs,
accumulation 16: one optimizer step per epoch). A config that states neither keeps the given
``grad_accum`` (default 1), the behaviour before layouts existed. Numbers that do not divide give
one UsageError naming the nearest valid per-GPU batch sizes, group sizes or step sizes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from nftkit.errors import UsageError


@dataclass(frozen=True)
class TrainLayout:
    """The derived layout of one training run on ``processes`` processes."""

    processes: int
    prompts_per_epoch: int
    group_size: int
    sample_batch_size: int
    train_batch_size: int
    grad_accum: int
    samples_per_step: int
    steps_per_epoch: int
    epochs: int
    trained_timesteps: int

    @property
    def samples_per_epoch(self) -> int:
        """Images sampled (and trained on) per epoch, over all processes."""
        return self.prompts_per_epoch * self.group_size

    @property
    def samples_per_process(self) -> int:
        """Each process's share of an epoch's samples."""
        return self.samples_per_epoch // self.processes

    @property
    def optimizer_steps(self) -> int:
        """Optimizer steps of the whole run."""
        return self.steps_per_epoch * self.epochs

    @property
    def total_images(self) -> int:
        """Images sampled over the whole run."""
        return self.samples_per_epoch * self.epochs

    def rows(self) -> list[tuple[str, str]]:
        """(label, value) pairs for ``nftkit train --plan``."""
        return [
            ("processes", str(self.processes)),
            ("per-GPU sample batch", str(self.sample_batch_size)),
            ("per-GPU train batch", str(self.train_batch_size)),
            ("gradient accumulation", str(self.grad_accum)),
            (
                "samples per epoch",
                f"{self.samples_per_epoch} ({self.prompts_per_epoch} prompts x {self.group_size})",
            ),
            ("samples per process", str(self.samples_per_process)),
            ("samples per optimizer step", str(self.samples_per_step)),
            ("optimizer steps per epoch", str(self.steps_per_epoch)),
            ("trained timesteps per sample", str(self.trained_timesteps)),
            ("epochs", str(self.epochs)),
            ("optimizer steps", str(self.optimizer_steps)),
            ("total images", str(self.total_images)),
        ]

    def describe(self) -> str:
        """The layout as aligned lines."""
        rows = self.rows()
        width = max(len(label) for label, _ in rows)
        return "\n".join(f"{label:<{width}}  {value}" for label, value in rows)


def trained_timesteps(config: Any) -> int:
    """Timesteps trained per sample (each one a backward pass of the accumulated step)."""
    window = getattr(config, "sde_window", None)
    if window is not None:
        return int(window)
    steps = getattr(config, "high_noise_steps", None) or config.num_steps
    k = int(config.timestep_fraction * steps)
    cap = getattr(config, "max_train_timesteps", None)
    return min(k, cap) if cap is not None else k


def _nearest(candidates: list[int], target: int) -> list[int]:
    """The closest candidate below ``target`` and the closest above it (those that exist)."""
    below = [c for c in candidates if c < target]
    above = [c for c in candidates if c > target]
    if target in candidates:
        return [target]
    return ([max(below)] if below else []) + ([min(above)] if above else [])


def _either(values: list[int]) -> str:
    return " or ".join(str(v) for v in values)


def plan_layout(config: Any, processes: int = 1) -> TrainLayout:
    """Derive the layout of ``config`` (an NFTConfig or GRPOConfig) on ``processes`` processes."""
    if processes < 1:
        raise UsageError(f"the number of processes must be >= 1, got {processes}")
    prompts, group = int(config.prompts_per_epoch), int(config.group_size)
    batch = int(config.train_batch_size)
    n = prompts * group
    per_step = getattr(config, "samples_per_step", None)
    per_epoch = getattr(config, "steps_per_epoch", None)
    accum_given = getattr(config, "grad_accum", None)
    for key, value in (
        ("prompts_per_epoch", prompts),
        ("group_size", group),
        ("train_batch_size", batch),
        ("sample_batch_size", config.sample_batch_size),
        ("samples_per_step", per_step),
        ("steps_per_epoch", per_epoch),
        ("grad_accum", accum_given),
    ):
        if value is not None and int(value) < 1:
            raise UsageError(f"{key} must be >= 1, got {value}")
    if per_step is not None and per_epoch is not None and per_step * per_epoch != n:
        raise UsageError(
            f"samples_per_step={per_step} x steps_per_epoch={per_epoch} != {n} samples per "
            "epoch; set only one of them"
        )
    if per_step is None and per_epoch is not None:
        if n % per_epoch:
            valid = [s for s in range(1, n + 1) if n % s == 0]
            raise UsageError(
                f"{n} samples per epoch do not split into steps_per_epoch={per_epoch} optimizer "
                f"steps; use steps_per_epoch {_either(_nearest(valid, per_epoch))}"
            )
        per_step = n // per_epoch
    common = dict(
        processes=processes,
        prompts_per_epoch=prompts,
        group_size=group,
        sample_batch_size=int(config.sample_batch_size),
        train_batch_size=batch,
        epochs=int(config.epochs),
        trained_timesteps=trained_timesteps(config),
    )
    if per_step is None:  # no stated layout: the given grad_accum (the behaviour before layouts)
        if n % processes:
            valid = [p for p in range(1, n + 1) if n % p == 0]
            raise UsageError(
                f"{prompts} prompts x {group} images = {n} samples per epoch do not split over "
                f"{processes} processes; use {_either(_nearest(valid, processes))} processes or "
                "change prompts_per_epoch/group_size"
            )
        accum = int(accum_given or 1)
        micro = math.ceil(n // processes / batch)
        return TrainLayout(
            grad_accum=accum,
            samples_per_step=processes * batch * accum,
            steps_per_epoch=math.ceil(micro / accum),
            **common,
        )
    if n % per_step:
        valid = [s for s in range(processes * batch, n + 1, processes * batch) if n % s == 0]
        hint = (
            f"use samples_per_step {_either(_nearest(valid, per_step))}"
            if valid
            else "change group_size or train_batch_size"
        )
        raise UsageError(
            f"samples_per_step={per_step} does not divide the {n} samples of an epoch; {hint}"
        )
    if per_step % (processes * batch):
        raise UsageError(
            _split_error(
                per_step, processes, batch, prompts, group, stated_steps=per_epoch is not None
            )
        )
    accum = per_step // (processes * batch)
    if accum_given is not None and int(accum_given) != accum:
        raise UsageError(
            f"grad_accum={accum_given} contradicts the stated layout ({per_step} samples per step "
            f"on {processes} processes x batch {batch} needs {accum}); drop grad_accum"
        )
    return TrainLayout(
        grad_accum=accum, samples_per_step=per_step, steps_per_epoch=n // per_step, **common
    )


def _split_error(
    per_step: int, processes: int, batch: int, prompts: int, group: int, stated_steps: bool
) -> str:
    """One line: why samples_per_step does not split, and the nearest valid alternatives."""
    head = (
        f"{per_step} samples per optimizer step do not split into {processes} processes x "
        f"per-GPU train batch {batch}"
    )
    hints = []
    if per_step % processes == 0:
        batches = [
            b for b in range(1, per_step // processes + 1) if (per_step // processes) % b == 0
        ]
        hints.append(
            f"valid train_batch_size on {processes} processes: {_either(_nearest(batches, batch))}"
        )
    else:
        hints.append(
            f"no per-GPU train batch works on {processes} processes ({per_step} is not "
            f"a multiple of {processes})"
        )
    steps = prompts * group // per_step
    if stated_steps:
        groups = [
            g for g in range(1, 4 * group + 1) if (prompts * g) % (steps * processes * batch) == 0
        ]
        if groups:
            hints.append(
                f"{'or' if per_step % processes == 0 else 'use'} group_size {_either(_nearest(groups, group))} ({prompts} prompts, "
                f"{steps} optimizer step(s) per epoch, batch {batch})"
            )
    else:
        n = prompts * group
        valid = [s for s in range(processes * batch, n + 1, processes * batch) if n % s == 0]
        if valid:
            hints.append(
                f"{'or' if per_step % processes == 0 else 'use'} samples_per_step {_either(_nearest(valid, per_step))}"
            )
    return f"{head}; {'; '.join(hints)}"
