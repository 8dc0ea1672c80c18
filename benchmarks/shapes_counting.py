"""Where counting fails on the shapes world: every counting prompt, train vs held-out split.

The held-out suite judges counting on the three counting prompts the split keeps out of training;
RL trains on the other six. This scores a model on all nine (--n-samples images each) and
prints accuracy by split, by number and by shape, and the most common failure reasons, so a
generalisation gap (train prompts right, unseen number/shape pairs wrong) shows as such:

    python benchmarks/shapes_counting.py MODEL [MODEL ...] [--n-samples 8] [--seed 0]
        [--json FILE]

MODEL is anything `nftkit eval --model` takes ("shapes-base", a training output folder).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from nftkit.eval import EvalSettings, run_evaluation
from nftkit.evaluators.base import PromptSpec
from nftkit.evaluators.shapes import ShapesEvaluator
from nftkit.policies.loading import load_policy
from nftkit.shapes.prompts import all_prompts, split_prompts


class CountingPrompts(ShapesEvaluator):
    """All counting prompts, each tagged with its split ("train" or "held_out")."""

    name = "shapes-counting"

    def __init__(self, n_samples: int = 8, split_seed: int = 0) -> None:
        super().__init__(split_seed=split_seed, n_samples=n_samples)

    def prompts(self) -> list[PromptSpec]:
        """Every counting prompt of the grammar, in grammar order."""
        _, held_out = split_prompts(seed=self.split_seed)
        unseen = {m["prompt"] for m in held_out}
        return [
            PromptSpec(
                f"{i:05d}",
                meta["prompt"],
                {**meta, "split": "held_out" if meta["prompt"] in unseen else "train"},
            )
            for i, meta in enumerate(all_prompts("counting"))
        ]


def counting_breakdown(model: str, n_samples: int, seed: int) -> dict[str, Any]:
    """Accuracy by split, number and shape, and the top failure reasons, for one model."""
    evaluator = CountingPrompts(n_samples=n_samples)
    report = run_evaluation(
        load_policy(model), evaluator, model, EvalSettings(steps=evaluator.default_steps, seed=seed)
    )
    specs = {spec.id: spec for spec in evaluator.prompts()}
    verdicts: dict[str, list[bool]] = defaultdict(list)
    failures: Counter[str] = Counter()
    for row in report.result.rows:
        meta = specs[row["prompt_id"]].metadata
        clause = meta["include"][0]
        for key in (meta["split"], f"n={clause['count']}", clause["class"], "all"):
            verdicts[key].append(bool(row["correct"]))
        if not row["correct"]:
            failures[f"{meta['prompt']}: {row['reason']}"] += 1
    return {
        "model": model,
        "accuracy": {key: sum(v) / len(v) for key, v in sorted(verdicts.items())},
        "images": {key: len(v) for key, v in sorted(verdicts.items())},
        "top_failures": failures.most_common(8),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+")
    parser.add_argument("--n-samples", type=int, default=8, help="images per prompt")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    results = [counting_breakdown(m, args.n_samples, args.seed) for m in args.models]
    for result in results:
        accuracy = ", ".join(f"{k} {v:.2f}" for k, v in result["accuracy"].items())
        print(f"{result['model']}: {accuracy}")
        for failure, count in result["top_failures"]:
            print(f"  {count:3d}  {failure}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
