"""DiffusionNFT on the CPU shapes world: base vs tuned on the held-out suite.

Prints and writes JSON with base overall, tuned overall, optimizer steps, wall seconds and
peak RSS. This is what `make demo` runs, measured:

    python benchmarks/shapes_nft.py [--steps N] [--model shapes-base] [--output DIR]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import time
from pathlib import Path

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


def main() -> None:
    """Run the benchmark."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="shapes-base")
    parser.add_argument("--steps", type=int, default=None, help="epochs (preset default)")
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
    evaluator = ShapesEvaluator()
    settings = EvalSettings(steps=evaluator.default_steps)
    base = run_evaluation(load_policy(args.model), evaluator, args.model, settings, store=store)
    print(f"base overall {base.metrics['overall']:.3f} ({base.seconds:.0f}s)", flush=True)
    preset = get_preset("shapes")
    overrides = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}
    config = preset.nft_config(epochs=args.steps, **overrides)
    spec = TrainSpec(
        model=args.model,
        rewards=preset.rewards,
        prompts=preset.prompts,
        config=config,
        output=args.output / "train",
        preset="shapes",
    )
    train_start = time.time()

    def report(record: dict) -> None:
        print(
            f"epoch {record['epoch'] + 1}/{config.epochs} step {record['step']} "
            f"reward {record['reward_mean']:.3f} ({time.time() - train_start:.0f}s)",
            flush=True,
        )

    summary = run_training(spec, db_url=db, on_epoch=report)
    train_seconds = time.time() - train_start
    tuned = run_evaluation(
        load_policy(args.output / "train"), evaluator, "tuned", settings, store=store
    )
    result = {
        "base_overall": base.metrics["overall"],
        "tuned_overall": tuned.metrics["overall"],
        "base_metrics": base.metrics,
        "tuned_metrics": tuned.metrics,
        "epochs": summary["epochs"],
        "optimizer_steps": summary["optimizer_steps"],
        "train_seconds": round(train_seconds, 1),
        "wall_seconds": round(time.time() - start, 1),
        "peak_rss_gb": round(peak_rss_gb(), 3),
        "threads": torch.get_num_threads(),
        "config": config.to_dict(),
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
