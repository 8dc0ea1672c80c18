"""`nftkit train`, `nftkit eval` and `nftkit leaderboard` through the real CLI, tiny model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nftkit.evaluators.shapes import ShapesEvaluator
from nftkit.results.store import ResultsStore
from tests.conftest import run_cli
from tests.shapes_helpers import tiny_shapes_config, write_tiny_shapes_model

SMALL_NFT = [
    "--set",
    "prompts_per_epoch=2",
    "--set",
    "group_size=4",
    "--set",
    "num_steps=3",
    "--set",
    "sample_batch_size=8",
    "--set",
    "train_batch_size=8",
    "--set",
    "max_train_timesteps=1",
    "--set",
    "lora_rank=2",
    "--set",
    "lora_alpha=4",
]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_shapes_model(
        tmp_path_factory.mktemp("tiny-model"), tiny_shapes_config(16), seed=1
    )


def test_eval_json_and_database_rows(tiny_model: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'r.db'}"
    result = run_cli(
        "--db",
        db,
        "eval",
        "--model",
        str(tiny_model),
        "--suite",
        "shapes",
        "--limit",
        "3",
        "--n-samples",
        "2",
        "--steps",
        "2",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report) == {"run_id", "suite", "model", "n_images", "metrics"}
    assert report["suite"] == "shapes" and report["n_images"] == 6
    store = ResultsStore(db)
    rows = store.samples(report["run_id"])
    assert len(rows) == 6
    recomputed = (
        ShapesEvaluator()
        .summarize(
            [
                {
                    "tag": "single_object" if r.prompt_id == "00000" else "two_object",
                    "correct": r.correct,
                    "scores": r.scores,
                }
                for r in rows
            ]
        )
        .metrics
    )
    assert recomputed["overall"] == pytest.approx(report["metrics"]["overall"])
    board = run_cli("--db", db, "leaderboard", "--suite", "shapes", "--format", "json")
    assert board.returncode == 0, board.stderr
    assert str(tiny_model) in board.stdout


def test_train_resume_and_refusal(tiny_model: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'r.db'}"
    out = tmp_path / "run"
    args = [
        "--db",
        db,
        "train",
        "--model",
        str(tiny_model),
        "--rewards",
        "jpeg",
        "--prompts",
        "shapes-train",
        "--output",
        str(out),
        "--quiet",
        *SMALL_NFT,
    ]
    first = run_cli(*args, "--steps", "1")
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout.strip().splitlines()[-1])
    assert summary["epochs"] == 1 and summary["optimizer_steps"] == 1
    for name in (
        "lora/pytorch_lora_weights.safetensors",
        "lora/nftkit_adapter.safetensors",
        "reward_curve.png",
        "samples_base_vs_tuned.png",
        "history.jsonl",
        "nftkit_model.json",
    ):
        assert (out / name).is_file(), name
    again = run_cli(*args, "--steps", "2")
    assert again.returncode == 2
    assert "--resume" in again.stderr and again.stderr.strip().count("\n") == 0
    resumed = run_cli(*args, "--steps", "2", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout.strip().splitlines()[-1])["epochs"] == 2
    assert len((out / "history.jsonl").read_text().splitlines()) == 2
    store = ResultsStore(db)
    runs = store.list_runs(kind="train")
    assert len(runs) == 1 and runs[0].status == "finished"


def test_bad_inputs_are_one_line_errors(tiny_model: Path, tmp_path: Path) -> None:
    missing = run_cli("eval", "--model", str(tmp_path / "nope"), "--suite", "shapes")
    assert missing.returncode == 2 and "model not found" in missing.stderr
    unknown = run_cli("eval", "--model", str(tiny_model), "--suite", "shape")
    assert unknown.returncode == 2 and "Did you mean: shapes" in unknown.stderr
    bad_set = run_cli(
        "train",
        "--model",
        str(tiny_model),
        "--rewards",
        "jpeg",
        "--prompts",
        "shapes-train",
        "--output",
        str(tmp_path / "o"),
        "--set",
        "nope=1",
    )
    assert bad_set.returncode == 2 and "unknown NFT option" in bad_set.stderr


def test_demo_end_to_end_with_one_epoch(tmp_path: Path) -> None:
    """`nftkit demo` (what `make demo` runs), cut to one epoch and a small evaluation."""
    out = tmp_path / "demo"
    result = run_cli("demo", "--output", str(out), "--steps", "1", "--per-task", "1")
    assert result.returncode == 0, result.stderr
    summary = json.loads((out / "demo_summary.json").read_text())
    assert json.loads(result.stdout.strip().splitlines()[-1]) == summary
    assert 0.0 <= summary["base_overall"] <= 1.0 and 0.0 <= summary["tuned_overall"] <= 1.0
    for produced in (
        "leaderboard.png",
        "train/reward_curve.png",
        "train/history.jsonl",
        "train/samples_base_vs_tuned.png",
        "train/lora/pytorch_lora_weights.safetensors",
    ):
        assert (out / produced).is_file(), produced
    store = ResultsStore(f"sqlite:///{out / 'nftkit.db'}")
    evals = store.list_runs(kind="eval")
    assert sorted(r.model for r in evals) == sorted(["shapes-base", str(out / "train")])
    assert all(r.status == "finished" for r in evals)
