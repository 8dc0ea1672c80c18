"""DiffusionNFT on the CPU shapes world: base vs tuned on the held-out suite, over seeds.

Prints and writes JSON with base overall, tuned overall per seed (and their median and min),
optimizer steps, wall seconds and peak RSS. One seed is what `make demo` runs, measured. Every
model is scored with each of --eval-seeds (the suite's sampling noise): a model's overall is the
mean over them, and the eval-seed-0 figure (what `make demo` prints) is kept beside it:

    python benchmarks/shapes_nft.py [--seeds 0 1 2] [--eval-seeds 0 1 2 3] [--epochs N]
        [--prompts SOURCE] [--set key=JSON ...] [--output DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import torch

from nftkit.eval import EvalSettings, run_evaluation
from nftkit.evaluators.shapes import ShapesEvaluator
from nftkit.policies.loading import load_policy
from nftkit.results.store import ResultsStore
from nftkit.train.presets import get_preset
from nftkit.train.runner import TrainSpec, run_training


def peak_rss_gb() -> float:
    """Peak resident set size of this process so far, in GB (Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def evaluate_seeds(
    model: str | Path, label: str, eval_seeds: list[int], store: ResultsStore
) -> dict[str, Any]:
    """Score ``model`` on the held-out suite once per eval seed; metrics averaged over them."""
    policy, evaluator = load_policy(model), ShapesEvaluator()
    reports = []
    for eval_seed in eval_seeds:
        settings = EvalSettings(steps=evaluator.default_steps, seed=eval_seed)
        name = label if eval_seed == eval_seeds[0] else f"{label}-eval{eval_seed}"
        reports.append(run_evaluation(policy, evaluator, name, settings, store=store))
    keys = reports[0].metrics.keys()
    return {
        "overall": statistics.fmean(r.metrics["overall"] for r in reports),
        "metrics": {k: statistics.fmean(r.metrics[k] for r in reports) for k in keys},
        "overall_by_eval_seed": [r.metrics["overall"] for r in reports],
        "eval_seconds": round(sum(r.seconds for r in reports), 1),
    }


def run_seed(args: argparse.Namespace, seed: int, store: ResultsStore, db: str) -> dict[str, Any]:
    """Train the shapes preset with ``seed`` and evaluate the tuned model on the held-out suite."""
    preset = get_preset("shapes")
    overrides = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}
    config = preset.nft_config(epochs=args.epochs, seed=seed, **overrides)
    output = args.output / f"seed{seed}"
    spec = TrainSpec(
        model=args.model,
        rewards=preset.rewards,
        prompts=args.prompts or preset.prompts,
        config=config,
        output=output,
        preset="shapes",
    )
    start = time.time()

    def report(record: dict) -> None:
        print(
            f"seed {seed} epoch {record['epoch'] + 1}/{config.epochs} step {record['step']} "
            f"reward {record['reward_mean']:.3f} ({time.time() - start:.0f}s)",
            flush=True,
        )

    summary = run_training(spec, db_url=db, on_epoch=report)
    train_seconds = time.time() - start
    tuned = evaluate_seeds(output, f"tuned-seed{seed}", args.eval_seeds, store)
    by_seed = " / ".join(f"{v:.3f}" for v in tuned["overall_by_eval_seed"])
    print(f"seed {seed}: tuned overall {tuned['overall']:.3f} (eval seeds: {by_seed})", flush=True)
    return {
        "seed": seed,
        "tuned_overall": tuned["overall"],
        "tuned_overall_by_eval_seed": tuned["overall_by_eval_seed"],
        "tuned_metrics": tuned["metrics"],
        "epochs": summary["epochs"],
        "optimizer_steps": summary["optimizer_steps"],
        "train_seconds": round(train_seconds, 1),
        "seed_wall_seconds": round(time.time() - start, 1),
        "config": config.to_dict(),
    }


def main() -> None:
    """Run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="shapes-base")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument(
        "--eval-seeds", type=int, nargs="+", default=[0, 1, 2, 3], help="suite sampling seeds"
    )
    parser.add_argument("--epochs", "--steps", type=int, default=None, help="preset default")
    parser.add_argument("--prompts", default=None, help="training prompts (preset default)")
    parser.add_argument("--output", type=Path, default=Path("benchmarks/results/shapes_nft"))
    parser.add_argument("--json", type=Path, default=Path("benchmarks/results/shapes_nft.json"))
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--set", nargs="*", default=[], help="NFT overrides key=value (JSON)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.output.exists():
        shutil.rmtree(args.output)
    args.output.mkdir(parents=True)
    db = f"sqlite:///{args.output.resolve() / 'nftkit.db'}"
    store = ResultsStore(db)
    start = time.time()
    base = evaluate_seeds(args.model, args.model, args.eval_seeds, store)
    print(f"base overall {base['overall']:.3f} ({base['eval_seconds']:.0f}s)", flush=True)
    runs = [run_seed(args, seed, store, db) for seed in args.seeds]
    tuned = [run["tuned_overall"] for run in runs]
    first_eval_seed = [run["tuned_overall_by_eval_seed"][0] for run in runs]
    result = {
        "base_overall": base["overall"],
        "base_overall_by_eval_seed": base["overall_by_eval_seed"],
        "base_metrics": base["metrics"],
        "base_eval_seconds": base["eval_seconds"],
        "seeds": args.seeds,
        "eval_seeds": args.eval_seeds,
        "tuned_overall_median": statistics.median(tuned),
        "tuned_overall_min": min(tuned),
        "tuned_overall": tuned,
        f"tuned_overall_eval_seed{args.eval_seeds[0]}": first_eval_seed,
        "prompts": args.prompts or get_preset("shapes").prompts,
        "runs": runs,
        "wall_seconds": round(time.time() - start, 1),
        "peak_rss_gb": round(peak_rss_gb(), 3),
        "threads": torch.get_num_threads(),
        "cpu": _cpu_name(),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    json.dump({k: v for k, v in result.items() if k != "runs"}, sys.stdout, indent=2)
    print()


def _cpu_name() -> str:
    """The CPU model from /proc/cpuinfo ("" where it is not readable)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


if __name__ == "__main__":
    main()
