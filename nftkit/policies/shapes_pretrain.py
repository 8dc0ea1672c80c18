"""Pre-train the shapes-world base model (``shapes-base``) from synthetic scenes.

The data are made so that the base model is imperfect without guidance, as Stable Diffusion 3.5
Medium is on GenEval (0.24 CFG-free): for every prompt, only a fraction ``p_correct`` of the
training images satisfy it; the rest show a plausible mistake (wrong count, color, relation or
object, from ``perturb_metadata``). Flow matching learns that mixture, so sampling without
guidance is right only part of the time, and RL has a mode to select.

    python -m nftkit.policies.shapes_pretrain --output STAGE1 --steps 1000 --schedule-steps 2000
    python -m nftkit.policies.shapes_pretrain --init STAGE1 --output STAGE2 --steps 800 --lr 3e-4
    W=two_object=1.5,counting=1.5,position=2,color_attr=2
    python -m nftkit.policies.shapes_pretrain --init STAGE2 --output STAGE3 --steps 2000 \
        --schedule-steps 4000 --lr 5e-4 --p-correct 0.4 --task-weights $W
    python -m nftkit.policies.shapes_pretrain --init STAGE3 --text-attention --output STAGE4 \
        --steps 1500 --lr 5e-4 --p-correct 0.4 --task-weights $W
    B=two_object=1.5,colors=1.5,position=3,color_attr=3
    python -m nftkit.policies.shapes_pretrain --init STAGE4 --coordinates --position-scale 40 \
        --mid-blocks 2 --reading-order --output STAGE5 --steps 2000 --schedule-steps 20000 \
        --lr 7e-4 --p-correct 1.0 --task-weights $B --seed 2
    python -m nftkit.policies.shapes_pretrain --init STAGE5 --reading-order --output STAGE6 \
        --steps 3000 --schedule-steps 4000 --lr 5e-4 --p-correct 1.0 --task-weights $B --seed 3
    python -m nftkit.policies.shapes_pretrain --init STAGE6 --reading-order --output STAGE7 \
        --steps 400 --lr 3e-4 --p-correct 0.5 --task-weights $B --seed 4
    C=two_object=1.5,colors=1.5,counting=3,position=3,color_attr=3
    python -m nftkit.policies.shapes_pretrain --init STAGE7 --reading-order --output STAGE8 \
        --steps 2000 --lr 5e-4 --p-correct 1.0 --task-weights $C --seed 5
    python -m nftkit.policies.shapes_pretrain --init STAGE8 --reading-order --output STAGE9 \
        --steps 400 --lr 3e-4 --p-correct 0.5 --task-weights $C --seed 6
    D=two_object=1.5,colors=1.5,counting=4,position=3,color_attr=3
    python -m nftkit.policies.shapes_pretrain --init STAGE9 --reading-order --count-cells \
        --output STAGE10 --steps 2000 --lr 5e-4 --p-correct 1.0 --task-weights $D --seed 7
    python -m nftkit.policies.shapes_pretrain --init STAGE10 --reading-order --count-cells \
        --output nftkit/assets/shapes-base --steps 400 --lr 3e-4 --p-correct 0.5 \
        --task-weights $D --seed 8

reproduces the shipped weights (batch 64). Stages 1-2 (p_correct 0.5, tasks uniform) draw crisp
shapes but bind colors to the wrong object and swap classes in two-object scenes; stage 3 draws
the multi-object tasks more often; stage 4 adds a zero-initialised text cross-attention after
every U-Net block (``grow``: the grown model starts out computing exactly what the old one did).
That model (the base of earlier releases, 0.27) could not bind: trained on clean data it stayed
at ~0.58, and so did NFT. Stage 5 grows the binding options (x/y input channels, text position
embeddings x40, two position-aware attention blocks at 8x8) and, like stage 6, trains on clean
data (p_correct 1.0) whose two-clause scenes are laid out in reading order: it learns to draw
what it is asked (0.86 over all tasks, color attributes 0.79). Stage 7 made it imperfect again
(the base of the previous release, 0.46; NFT stopped at ~0.87). Stage 8 goes back to clean data
with counting weighted too (0.89: position 0.96, color attributes 0.85, counting 0.58 the weak
task), and stage 9 makes it imperfect with half the images wrong (0.43, the base of the
2026-12-04 release; NFT reached 0.88-0.91, counting 0.63-0.70, mostly one object short).
Stage 10 gives every object of a counting scene a cell of its own (``--count-cells``: two or
three side by side, four in a 2x2 grid), so that a count is a layout the model can learn as it
learned reading order, and draws counting 4x as often, on clean data again (held-out suite
0.94, counting 0.76, position 0.98, color attributes 0.90); stage 11 makes it imperfect again.
About 20 + 16 + 25 + 25 + 35 + 50 + 6 + 26 + 5 + 36 + 7 minutes on 2 CPU cores;
``nftkit/assets/shapes-base/training.json`` records every stage.
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from nftkit.policies.shapes import ShapesPolicy
from nftkit.policies.shapes_model import ShapesFlowModel, ShapesModelConfig
from nftkit.shapes.perturb import perturb_metadata
from nftkit.shapes.prompts import ALL_TASKS, VOCAB, all_prompts
from nftkit.shapes.scene import render, sample_scene


def training_pairs(
    rng: np.random.Generator,
    batch_size: int,
    p_correct: float,
    pool: dict[str, list[dict]],
    task_weights: dict[str, float] | None = None,
    reading_order: bool = False,
    count_cells: bool = False,
) -> tuple[torch.Tensor, list[str]]:
    """A batch of (image in [-1, 1], prompt): tasks drawn by ``task_weights`` (default uniform),
    prompts uniform within a task; ``reading_order`` lays two-clause scenes out left to right in
    prompt order and ``count_cells`` gives each counted object a cell (see ``sample_scene``)."""
    images, prompts = [], []
    tasks = sorted(pool)
    drawn = None  # without weights, one uniform draw per image (the shipped stages 1-2 did so)
    if task_weights is not None:
        weights = np.array([task_weights.get(task, 1.0) for task in tasks], dtype=float)
        if np.any(weights < 0) or weights.sum() <= 0:
            raise ValueError(f"task weights must be >= 0 with a positive sum, got {task_weights}")
        drawn = rng.choice(tasks, size=batch_size, p=weights / weights.sum())
    for k in range(batch_size):
        task = tasks[rng.integers(len(tasks))] if drawn is None else drawn[k]
        meta = pool[task][rng.integers(len(pool[task]))]
        shown = meta if rng.random() < p_correct else perturb_metadata(meta, rng)
        scene = sample_scene(shown, rng, reading_order=reading_order, count_cells=count_cells)
        images.append(render(scene))
        prompts.append(meta["prompt"])
    pixels = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    return pixels, prompts


GROWABLE = ("text_attention", "coordinates", "position_scale", "mid_blocks")
"""Architecture fields that ``--init`` may change: text_attention, coordinates and mid_blocks
add zero-initialised weights only; position_scale rescales the text position embeddings."""


def grow(policy: ShapesPolicy, changes: dict) -> ShapesPolicy:
    """A copy of ``policy`` with ``GROWABLE`` fields changed, old weights kept.

    Added layers and input channels start at zero weight, so they leave the output unchanged;
    a new position_scale does change it (word order weighs more), and training adapts to it.
    """
    refused = sorted(set(changes) - set(GROWABLE))
    if refused:
        raise ValueError(
            f"--init keeps the saved architecture; only {', '.join(GROWABLE)} can be added "
            f"to it (got {', '.join(refused)})"
        )
    config = replace(policy.model.config, **changes)
    model = ShapesFlowModel(config)
    state = dict(policy.model.state_dict())
    if changes.get("coordinates") and not policy.model.config.coordinates:
        # conv_in gains two input channels (x, y): zero weights keep the old function
        old = state["conv_in.weight"]
        state["conv_in.weight"] = torch.cat(
            [old, old.new_zeros(old.shape[0], 2, *old.shape[2:])], 1
        )
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or any(
        not k.startswith(("down_text.", "up_text.", "mid_transformer.")) for k in missing
    ):
        raise ValueError(f"cannot grow the model: missing {missing}, unexpected {unexpected}")
    return ShapesPolicy(model, autocast_dtype=policy.autocast_dtype)


def save_ema(config: ShapesModelConfig, ema: dict[str, torch.Tensor], output: Path) -> None:
    """Write the EMA weights as a loadable model folder (intermediate or final)."""
    snapshot = ShapesFlowModel(config)
    snapshot.load_state_dict(ema)
    ShapesPolicy(snapshot).save_pretrained(output)


def pretrain(
    output: Path,
    steps: int = 2000,
    batch_size: int = 64,
    lr: float = 1e-3,
    p_correct: float = 0.5,
    seed: int = 0,
    log_every: int = 50,
    save_every: int = 250,
    schedule_steps: int | None = None,
    init: str | None = None,
    architecture: dict | None = None,
    task_weights: dict[str, float] | None = None,
    reading_order: bool = False,
    count_cells: bool = False,
) -> dict[str, float]:
    """Train from scratch with the flow-matching loss and write an EMA checkpoint to ``output``.

    ``schedule_steps`` is the length of the warmup + cosine learning-rate schedule (default
    ``steps``); stopping before its end keeps the weights of a longer run's intermediate step.
    ``init`` continues from a saved model (a directory or "shapes-base") instead of from scratch;
    ``architecture`` overrides ShapesModelConfig fields of a new model (e.g. patch_size, channels);
    with ``init`` it may only change the ``GROWABLE`` fields, see ``grow``.
    ``task_weights`` draws some tasks more often (e.g. {"position": 2.0}); unnamed tasks weigh 1.
    ``reading_order`` lays two-clause scenes out in prompt order and ``count_cells`` puts each
    object of a counting scene in a cell of its own (``sample_scene``).
    """
    horizon = schedule_steps or steps
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    if init is not None:
        policy = ShapesPolicy.from_pretrained(init, autocast_dtype="auto")
        if architecture:
            policy = grow(policy, architecture)
        config = policy.model.config
    else:
        config = ShapesModelConfig(vocab_size=len(VOCAB), **(architecture or {}))
        policy = ShapesPolicy(ShapesFlowModel(config))
    model = policy.model
    model.train()
    ema = {k: v.detach().clone() for k, v in model.state_dict().items()}
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    warmup = max(horizon // 20, 1)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: min((s + 1) / warmup, 0.5 * (1 + math.cos(math.pi * min(s / horizon, 1.0)))),
    )
    pool = {task: all_prompts(task) for task in ALL_TASKS}
    start, running = time.time(), None
    for step in range(steps):
        x0, prompts = training_pairs(
            rng, batch_size, p_correct, pool, task_weights, reading_order, count_cells
        )
        cond = policy.encode_prompts(prompts)
        t = torch.sigmoid(torch.randn(batch_size))  # logit-normal, as SD3
        eps = torch.randn_like(x0)
        x_t = (1 - t[:, None, None, None]) * x0 + t[:, None, None, None] * eps
        v = policy.velocity(x_t, t, cond, adapter=None)
        loss = (v - (eps - x0)).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        decay = min(0.999, (1 + step) / (10 + step))
        with torch.no_grad():
            for k, v_ in model.state_dict().items():
                if v_.is_floating_point():
                    ema[k].mul_(decay).add_(v_.detach(), alpha=1 - decay)
                else:
                    ema[k].copy_(v_)
        running = loss.item() if running is None else 0.98 * running + 0.02 * loss.item()
        if log_every and (step + 1) % log_every == 0:
            print(
                f"step {step + 1}/{steps} loss {running:.4f} ({time.time() - start:.0f}s)",
                flush=True,
            )
        if save_every and (step + 1) % save_every == 0 and step + 1 < steps:
            save_ema(config, ema, output)
    save_ema(config, ema, output)
    stats = {
        "steps": steps,
        "schedule_steps": horizon,
        "batch_size": batch_size,
        "lr": lr,
        "p_correct": p_correct,
        "seed": seed,
        "init": init,
        "task_weights": task_weights,
        "reading_order": reading_order,
        "count_cells": count_cells,
        "final_loss": float(running or 0.0),
        "seconds": time.time() - start,
    }
    (Path(output) / "training.json").write_text(json.dumps(stats, indent=2))
    return stats


def parse_task_weights(text: str) -> dict[str, float]:
    """'position=2,color_attr=2' -> {"position": 2.0, "color_attr": 2.0}; tasks are checked."""
    weights: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        task, sep, value = item.partition("=")
        if not sep or task not in ALL_TASKS:
            close = difflib.get_close_matches(task, ALL_TASKS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise argparse.ArgumentTypeError(
                f"bad task weight {item!r}{hint}: use TASK=WEIGHT with TASK in "
                f"{', '.join(ALL_TASKS)}"
            )
        try:
            weights[task] = float(value)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(
                f"weight of {task} is not a number: {value!r}"
            ) from exc
    return weights


def main() -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--p-correct", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--schedule-steps",
        type=int,
        default=None,
        help="length of the LR schedule (default: --steps)",
    )
    parser.add_argument(
        "--init", default=None, help="continue from this model (directory or 'shapes-base')"
    )
    parser.add_argument(
        "--patch-size",
        type=int,
        default=None,
        help="new model only: fold PxP pixel patches into channels (2: ~2.3x "
        "cheaper forward, use with --channels 64 96 128)",
    )
    parser.add_argument(
        "--channels",
        type=int,
        nargs="+",
        default=None,
        help="new model only: U-Net channels per level",
    )
    parser.add_argument(
        "--text-attention",
        action="store_true",
        help="U-Net: text cross-attention after every block (with --init: "
        "added to the loaded model, zero-initialised)",
    )
    parser.add_argument(
        "--task-weights",
        default=None,
        type=parse_task_weights,
        help="draw tasks unevenly, e.g. 'position=2,color_attr=2' (others 1)",
    )
    parser.add_argument(
        "--coordinates",
        action="store_true",
        help="U-Net: x/y coordinate input channels (with --init: added, zero weights)",
    )
    parser.add_argument(
        "--mid-blocks",
        type=int,
        default=0,
        help="U-Net: this many position-aware attention blocks at the lowest "
        "resolution (with --init: added, zero output)",
    )
    parser.add_argument(
        "--position-scale",
        type=float,
        default=None,
        help="multiply the text position embeddings (40: word order on the scale of word identity)",
    )
    parser.add_argument(
        "--reading-order",
        action="store_true",
        help="lay two-clause scenes out left to right in prompt order",
    )
    parser.add_argument(
        "--count-cells",
        action="store_true",
        help="counting scenes: each object in a cell of its own (a row of 2-3, a 2x2 grid of 4)",
    )
    args = parser.parse_args()
    architecture = {
        k: v
        for k, v in (
            ("patch_size", args.patch_size),
            ("channels", tuple(args.channels or ()) or None),
        )
        if v is not None
    }
    if args.text_attention:
        architecture["text_attention"] = True
    if args.coordinates:
        architecture["coordinates"] = True
    if args.mid_blocks:
        architecture["mid_blocks"] = args.mid_blocks
    if args.position_scale is not None:
        architecture["position_scale"] = args.position_scale
    if args.init and set(architecture) - set(GROWABLE):
        parser.error(
            "--patch-size/--channels describe a new model; they cannot change "
            "--init's (only --text-attention, --coordinates, --mid-blocks and "
            "--position-scale)"
        )
    torch.set_num_threads(max(torch.get_num_threads(), 1))
    stats = pretrain(
        args.output,
        args.steps,
        args.batch_size,
        args.lr,
        args.p_correct,
        args.seed,
        schedule_steps=args.schedule_steps,
        init=args.init,
        architecture=architecture,
        task_weights=args.task_weights,
        reading_order=args.reading_order,
        count_cells=args.count_cells,
    )
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
