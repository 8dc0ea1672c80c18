"""DiffusionNFT vs the FlowGRPO baseline on the CPU shapes world: the efficiency headline.

Both methods start from `shapes-base`, train against `shapes-geneval` on the `shapes` preset's
prompts (the same prompts per epoch for a seed) with the same images per epoch and the same
optimizer steps per epoch (NFT's settings come from the `shapes` preset, GRPO's from
`shapes-grpo` with NFT's budget copied in). Every --eval-every epochs the EMA weights are
scored on the held-out `shapes` suite (overall = mean of the six GenEval task accuracies).
For each seed NFT trains first; GRPO then trains until it reaches the highest threshold NFT
reached, or until it has spent --grpo-budget times NFT's training seconds to get there (then
GRPO/NFT is reported as a lower bound, "> x"). Prints and writes JSON with the optimizer steps,
sampled images and training wall seconds (sampling + updates, evaluation excluded) each method
needs to reach each threshold, the per-seed GRPO/NFT ratios, the ratio at the highest
threshold every run reaches, and a PNG of the curves:

    python benchmarks/nft_vs_grpo.py [--seeds 0 1 2] [--epochs N] [--eval-every K]
        [--grpo-budget 3] [--quick]
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from nftkit.compose import RewardComposer
from nftkit.eval import EvalSettings, run_evaluation
from nftkit.evaluators.shapes import ShapesEvaluator
from nftkit.policies.loading import load_policy
from nftkit.train.algos import TITLES, TrainConfig, trainer_class
from nftkit.train.presets import get_preset, resolve_training_prompts

PRESETS = {"nft": "shapes", "grpo": "shapes-grpo"}
PROMPTS = get_preset(PRESETS["nft"]).prompts  # both methods train on the NFT preset's prompts
BUDGET_KEYS = (
    "prompts_per_epoch",
    "group_size",
    "sample_batch_size",
    "train_batch_size",
    "samples_per_step",
    "steps_per_epoch",
    "grad_accum",
)
QUICK = {
    "prompts_per_epoch": 4,
    "group_size": 4,
    "sample_batch_size": 16,
    "train_batch_size": 8,
    "samples_per_step": 8,
    "num_steps": 6,
}
RESULTS = Path(__file__).resolve().parent / "results"


def method_configs(epochs: int | None, quick: bool) -> dict[str, TrainConfig]:
    """NFT from the `shapes` preset; GRPO from `shapes-grpo` with NFT's per-step budget."""
    extra = dict(QUICK) if quick else {}
    nft = get_preset(PRESETS["nft"]).train_config(**{**extra, "epochs": epochs})
    budget = {key: getattr(nft, key) for key in BUDGET_KEYS}
    grpo = get_preset(PRESETS["grpo"]).train_config(**{**extra, **budget, "epochs": nft.epochs})
    return {"nft": nft, "grpo": grpo}


def images_per_step(config: TrainConfig) -> float:
    """Sampled images per optimizer step."""
    from nftkit.train.layout import plan_layout

    layout = plan_layout(config, 1)
    return layout.samples_per_epoch / layout.steps_per_epoch


def evaluate(trainer: Any, evaluator: ShapesEvaluator, settings: EvalSettings) -> float:
    """Overall shapes score of the trainer's EMA weights."""
    with trainer.ema.swapped_in(trainer.trainable):
        report = run_evaluation(trainer.policy, evaluator, "bench", settings, adapter="default")
    return float(report.metrics["overall"])


def run_method(
    algo: str,
    config: TrainConfig,
    seed: int,
    evaluator: ShapesEvaluator,
    settings: EvalSettings,
    eval_every: int,
    base_overall: float,
    autocast: torch.dtype | None,
    progress: Progress,
    task: Any,
    stop_at: float | None = None,
    max_seconds: float | None = None,
) -> list[dict[str, float]]:
    """Train one method with one seed; the curve of (epoch, step, images, seconds, overall).

    Runs ``config.epochs`` epochs, or fewer: it stops at the first evaluation that reaches
    ``stop_at`` or once its training seconds pass ``max_seconds``.
    """
    config = type(config).from_dict({**config.to_dict(), "seed": seed})
    policy = load_policy("shapes-base", autocast_dtype=autocast)
    composer = RewardComposer("shapes-geneval")
    prompts = resolve_training_prompts(PROMPTS)
    per_epoch = config.prompts_per_epoch * config.group_size
    curve = [{"epoch": 0, "step": 0, "images": 0, "seconds": 0.0, "overall": base_overall}]
    seconds = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        trainer = trainer_class(algo)(policy, composer, prompts, config, tmp)
        for epoch in range(1, config.epochs + 1):
            record = trainer.run_epoch()
            seconds += record["seconds"]
            progress.update(
                task, status=f"{algo} seed {seed} epoch {epoch} reward {record['reward_mean']:.3f}"
            )
            out_of_time = max_seconds is not None and seconds >= max_seconds
            if epoch % eval_every == 0 or epoch == config.epochs or out_of_time:
                overall = evaluate(trainer, evaluator, settings)
                curve.append(
                    {
                        "epoch": epoch,
                        "step": trainer.global_step,
                        "images": epoch * per_epoch,
                        "seconds": round(seconds, 2),
                        "overall": overall,
                    }
                )
                progress.console.print(
                    f"{algo} seed {seed} epoch {epoch} step "
                    f"{trainer.global_step} overall {overall:.3f} "
                    f"({seconds:.0f}s training)"
                )
                if out_of_time or (stop_at is not None and overall >= stop_at):
                    break
    progress.update(task, advance=1)
    return curve


def first_reach(curve: list[dict[str, float]], threshold: float) -> dict[str, float] | None:
    """The first evaluation point at or above ``threshold`` (None if never)."""
    for point in curve:
        if point["overall"] >= threshold:
            return {k: point[k] for k in ("epoch", "step", "images", "seconds", "overall")}
    return None


def top_reached(curve: list[dict[str, float]], thresholds: list[float]) -> float | None:
    """The highest threshold a curve reaches (None if it reaches none)."""
    reached = [thr for thr in thresholds if first_reach(curve, thr)]
    return max(reached) if reached else None


def seed_ratio(
    nft: list[dict[str, float]], grpo: list[dict[str, float]], thresholds: list[float]
) -> dict[str, Any] | None:
    """GRPO/NFT for one seed at the highest threshold NFT reaches.

    Exact when GRPO reaches it too; otherwise GRPO ran out of its budget first, and the
    ratio of GRPO's whole training time to NFT's time-to-threshold is a lower bound.
    """
    top = top_reached(nft, thresholds)
    if top is None:
        return None
    n = first_reach(nft, top)
    g = first_reach(grpo, top)
    assert n is not None
    spent = g or grpo[-1]
    return {
        "threshold": top,
        "grpo_reached": g is not None,
        "steps": spent["step"] / max(n["step"], 1),
        "images": spent["images"] / max(n["images"], 1),
        "seconds": spent["seconds"] / max(n["seconds"], 1e-9),
    }


def summarize(
    runs: dict[str, list[list[dict[str, float]]]], thresholds: list[float]
) -> dict[str, Any]:
    """Threshold crossings per method and seed, and the GRPO/NFT ratios per seed."""
    reach = {
        algo: {str(thr): [first_reach(c, thr) for c in runs[algo]] for thr in thresholds}
        for algo in runs
    }
    ratios = [seed_ratio(n, g, thresholds) for n, g in zip(runs["nft"], runs["grpo"], strict=True)]
    known = [r for r in ratios if r is not None]
    common = None
    if known and all(r is not None for r in ratios):
        threshold = min(r["threshold"] for r in known)
        exact = all(first_reach(g, threshold) for g in runs["grpo"])
        per_seed = [
            seed_ratio(n, g, [threshold]) for n, g in zip(runs["nft"], runs["grpo"], strict=True)
        ]
        common = {
            "threshold": threshold,
            "grpo_reached_on_every_seed": exact,
            "seconds_min": min(r["seconds"] for r in per_seed if r),
            "seconds_mean": sum(r["seconds"] for r in per_seed if r) / len(per_seed),
            "steps_mean": sum(r["steps"] for r in per_seed if r) / len(per_seed),
        }
    return {
        "reach": reach,
        "per_seed_ratio": ratios,
        "grpo_over_nft": common,
        "final_overall": {a: [c[-1]["overall"] for c in cs] for a, cs in runs.items()},
        "best_overall": {a: [max(p["overall"] for p in c) for c in cs] for a, cs in runs.items()},
    }


def plot(
    runs: dict[str, list[list[dict[str, float]]]], thresholds: list[float], path: Path
) -> None:
    """Overall score against optimizer steps, sampled images and training seconds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    axes_keys = [
        ("step", "optimizer steps"),
        ("images", "sampled images"),
        ("seconds", "training wall seconds"),
    ]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4), dpi=120, sharey=True)
    colors = {"nft": "tab:blue", "grpo": "tab:red"}
    for ax, (key, label) in zip(axes, axes_keys, strict=True):
        for algo, curves in runs.items():
            for i, curve in enumerate(curves):
                ax.plot(
                    [p[key] for p in curve],
                    [p["overall"] for p in curve],
                    color=colors[algo],
                    lw=1.5,
                    marker="o",
                    ms=3,
                    alpha=0.8,
                    label=f"{TITLES[algo]} ({len(curves)} seeds)" if i == 0 else None,
                )
        for thr in thresholds:
            ax.axhline(thr, color="gray", ls="--", lw=0.8)
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("shapes overall (held-out, EMA weights)")
    axes[0].legend(loc="upper left")
    fig.suptitle("DiffusionNFT vs FlowGRPO on the shapes world")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    """Run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default 0 1 2")
    parser.add_argument("--epochs", type=int, default=None, help="NFT epochs (preset default)")
    parser.add_argument("--eval-every", type=int, default=None, help="epochs between evals")
    parser.add_argument(
        "--grpo-budget",
        type=float,
        default=3.0,
        help="GRPO may train this many times NFT's seconds-to-threshold",
    )
    parser.add_argument("--quick", action="store_true", help="minute-scale smoke run")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.6, 0.8, 0.9])
    parser.add_argument(
        "--autocast",
        choices=("none", "bf16"),
        default="none",
        help="policy autocast (bf16 is only fast on CPUs with AMX/AVX512-BF16)",
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    quick = args.quick
    thresholds = sorted(args.thresholds)
    seeds = args.seeds or ([0] if quick else [0, 1, 2])
    configs = method_configs(args.epochs or (3 if quick else None), quick)
    epochs = configs["nft"].epochs
    eval_every = args.eval_every or (1 if quick else 5)
    evaluator = ShapesEvaluator(per_task=2) if quick else ShapesEvaluator()
    settings = EvalSettings(steps=10 if quick else evaluator.default_steps)
    autocast = torch.bfloat16 if args.autocast == "bf16" else None
    out_json = args.json or RESULTS / ("nft_vs_grpo_quick.json" if quick else "nft_vs_grpo.json")
    out_json.parent.mkdir(parents=True, exist_ok=True)
    start = time.time()
    base_policy = load_policy("shapes-base", autocast_dtype=autocast)
    base = run_evaluation(base_policy, evaluator, "shapes-base", settings, adapter=None)
    base_overall = float(base.metrics["overall"])
    print(f"shapes-base overall {base_overall:.3f}", flush=True)
    runs: dict[str, list[list[dict[str, float]]]] = {"nft": [], "grpo": []}
    progress = Progress(
        TextColumn("[bold]nft vs grpo[/]"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
    )
    with progress:
        task = progress.add_task("bench", total=len(seeds) * 2, status="")
        for seed in seeds:
            nft = run_method(
                "nft",
                configs["nft"],
                seed,
                evaluator,
                settings,
                eval_every,
                base_overall,
                autocast,
                progress,
                task,
            )
            # GRPO trains until it reaches the highest threshold NFT reached, or until it has
            # used --grpo-budget times NFT's seconds to get there (then the ratio is a bound).
            top = top_reached(nft, thresholds)
            hit = first_reach(nft, top) if top is not None else None
            budget = args.grpo_budget * (hit["seconds"] if hit else nft[-1]["seconds"])
            grpo_config = type(configs["grpo"]).from_dict(
                {**configs["grpo"].to_dict(), "epochs": 1000 * epochs}
            )
            grpo = run_method(
                "grpo",
                grpo_config,
                seed,
                evaluator,
                settings,
                eval_every,
                base_overall,
                autocast,
                progress,
                task,
                stop_at=top,
                max_seconds=budget,
            )
            runs["nft"].append(nft)
            runs["grpo"].append(grpo)
    summary = summarize(runs, thresholds)
    png = out_json.with_suffix(".png")
    plot(runs, thresholds, png)
    result = {
        "quick": quick,
        "seeds": seeds,
        "prompts": PROMPTS,
        "nft_epochs": epochs,
        "eval_every": eval_every,
        "grpo_budget": args.grpo_budget,
        "thresholds": thresholds,
        "base_overall": base_overall,
        "eval": {
            "per_task": evaluator.per_task,
            "samples_per_prompt": evaluator.n_samples,
            "steps": settings.steps,
            "solver": settings.solver,
            "weights": "EMA",
        },
        "images_per_step": {a: images_per_step(c) for a, c in configs.items()},
        # GRPO's epoch count is set by its time budget, not by its config
        "configs": {
            a: {**c.to_dict(), **({"epochs": None} if a == "grpo" else {})}
            for a, c in configs.items()
        },
        **summary,
        "runs": {
            a: [{"seed": s, "curve": c} for s, c in zip(seeds, curves, strict=True)]
            for a, curves in runs.items()
        },
        "wall_seconds": round(time.time() - start, 1),
        "threads": torch.get_num_threads(),
        "autocast": args.autocast,
        "machine": platform.processor() or platform.machine(),
        "png": str(png),
    }
    out_json.write_text(json.dumps(result, indent=2))
    for seed, ratio in zip(seeds, summary["per_seed_ratio"], strict=True):
        for algo in ("nft", "grpo"):
            reached = {
                thr: summary["reach"][algo][str(thr)][seeds.index(seed)] for thr in thresholds
            }
            text = ", ".join(
                f"{thr:.2f} at {hit['seconds']:.0f}s (step {hit['step']:.0f})"
                if hit
                else f"{thr:.2f} not reached"
                for thr, hit in reached.items()
            )
            print(f"seed {seed} {TITLES[algo]:>12}: {text}")
        if ratio is None:
            print(f"seed {seed}: NFT reached no threshold, no ratio")
        else:
            sign = "=" if ratio["grpo_reached"] else ">"
            print(
                f"seed {seed}: GRPO/NFT wall seconds to {ratio['threshold']:.2f} "
                f"{sign} {ratio['seconds']:.2f}x (optimizer steps {sign} {ratio['steps']:.2f}x)"
            )
    print(f"wrote {out_json} and {png} ({time.time() - start:.0f}s)")


if __name__ == "__main__":
    main()
