"""`nftkit eval` end to end for every benchmark suite: tiny SD3 pipeline, tiny reward weights.

Checks GenEval's folder layout, the result lines, that the reported summary equals a
recomputation from the stored rows, --images scoring, the leaderboard and the HTML report.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from nftkit.cli.main import app
from nftkit.eval.recording import record_to_row
from nftkit.registry import evaluator_class
from nftkit.results.store import ResultsStore

SUITES = {
    "geneval": ("geneval/evaluation_metadata.jsonl", []),
    "ocr": ("ocr/test.txt", []),
    "drawbench": ("drawbench/prompts.txt", []),
    "pickscore": ("pickscore/test.txt", ["--rewards", "pickscore,clipscore"]),
}
N_PROMPTS, N_SAMPLES = 2, 2


def invoke(*args: str) -> Any:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, (result.output, result.exception)
    return result


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, tiny_weights: Path, shared_data: Path) -> Any:
    from nftkit.policies.tiny_sd3 import save_tiny_sd3

    root = tmp_path_factory.mktemp("eval-suites")
    model = save_tiny_sd3(root / "tiny-sd3")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NFTKIT_WEIGHTS_DIR", str(tiny_weights))
        mp.setenv("NFTKIT_CACHE", str(root / "cache"))
        yield {
            "root": root,
            "model": model,
            "db": f"sqlite:///{root / 'r.db'}",
            "data": shared_data,
        }


@pytest.fixture(scope="module")
def runs(env: Any) -> dict[str, dict[str, Any]]:
    out = {}
    for suite, (rel, extra) in SUITES.items():
        output = env["root"] / f"out-{suite}"
        result = invoke(
            "--db",
            env["db"],
            "eval",
            "--model",
            str(env["model"]),
            "--suite",
            suite,
            "--prompts",
            str(env["data"] / rel),
            "--limit",
            str(N_PROMPTS),
            "--n-samples",
            str(N_SAMPLES),
            "--steps",
            "2",
            "--batch-size",
            "3",
            "--output",
            str(output),
            "--json",
            *extra,
        )
        out[suite] = {
            "report": json.loads(result.stdout.strip().splitlines()[-1]),
            "output": output,
        }
    return out


def _rows(env: Any, suite: str, run_id: str) -> tuple[Any, list[dict[str, Any]]]:
    store = ResultsStore(env["db"])
    evaluator = evaluator_class(suite)(
        prompts_path=env["data"] / SUITES[suite][0],
        **({"rewards": "pickscore,clipscore"} if suite == "pickscore" else {}),
    )
    return evaluator, [record_to_row(r, evaluator) for r in store.samples(run_id)]


@pytest.mark.parametrize("suite", list(SUITES))
def test_layout_rows_and_summary_recomputed(env: Any, runs: dict, suite: str) -> None:
    report, output = runs[suite]["report"], runs[suite]["output"]
    assert set(report) == {"run_id", "suite", "model", "n_images", "metrics"}
    assert report["suite"] == suite and report["n_images"] == N_PROMPTS * N_SAMPLES
    evaluator, rows = _rows(env, suite, report["run_id"])
    specs = evaluator.prompts()[:N_PROMPTS]
    # GenEval layout: <index>/metadata.jsonl (the prompt's line) + samples/<k>.png
    assert sorted(p.name for p in output.iterdir() if p.is_dir()) == ["00000", "00001"]
    for i, spec in enumerate(specs):
        meta = (output / f"{i:05d}" / "metadata.jsonl").read_text().splitlines()
        assert [json.loads(m) for m in meta] == [evaluator.prompt_line(spec)]
        assert json.loads(meta[0])["prompt"] == spec.text
        assert sorted(p.name for p in (output / f"{i:05d}" / "samples").iterdir()) == [
            "0000.png",
            "0001.png",
        ]
    # one row per image, no duplicates, seeds per (prompt, sample)
    keys = [(r["prompt_id"], r["sample_index"]) for r in rows]
    assert sorted(keys) == [(f"{i:05d}", k) for i in range(N_PROMPTS) for k in range(N_SAMPLES)]
    assert len({r["seed"] for r in rows}) == len(rows)
    assert all(Path(r["image_path"]).is_file() for r in rows)
    # the summary is a function of the stored rows
    recomputed = evaluator.summarize(rows).metrics
    assert recomputed.keys() == report["metrics"].keys()
    for key, value in recomputed.items():
        assert value == pytest.approx(report["metrics"][key], abs=1e-9), key
    lines = [json.loads(x) for x in (output / "results.jsonl").read_text().splitlines()]
    assert len(lines) == len(rows)
    assert sorted(x["filename"] for x in lines) == sorted(r["image_path"] for r in rows)


def test_geneval_result_lines_are_official_format(env: Any, runs: dict) -> None:
    output, report = runs["geneval"]["output"], runs["geneval"]["report"]
    lines = [json.loads(x) for x in (output / "results.jsonl").read_text().splitlines()]
    for line in lines:
        assert list(line) == [
            "filename",
            "tag",
            "prompt",
            "correct",
            "reason",
            "metadata",
            "details",
        ]
        meta = json.loads(line["metadata"])
        assert meta["prompt"] == line["prompt"] and meta["tag"] == line["tag"]
        # details is a JSON string, as evaluate_images.py writes it (json.dumps)
        assert isinstance(line["correct"], bool) and isinstance(line["details"], str)
        for boxes in json.loads(line["details"]).values():
            assert all(len(b) == 5 for b in boxes)
    tasks = {x["tag"] for x in lines}
    by_task = {t: np.mean([x["correct"] for x in lines if x["tag"] == t]) for t in tasks}
    metrics = report["metrics"]
    assert metrics["overall"] == pytest.approx(np.mean(list(by_task.values())))
    assert metrics["image_mean"] == pytest.approx(np.mean([x["correct"] for x in lines]))
    assert {"strict_mean", "partial_mean"} <= metrics.keys()


def test_reward_set_suites_have_their_rewards(runs: dict) -> None:
    assert set(runs["drawbench"]["report"]["metrics"]) == {
        "imagereward",
        "pickscore",
        "aesthetic",
        "clipscore",
        "hpsv2",
    }
    assert set(runs["pickscore"]["report"]["metrics"]) == {"pickscore", "clipscore"}
    assert set(runs["ocr"]["report"]["metrics"]) == {"overall", "exact_match"}


def test_images_mode_scores_the_same(env: Any, runs: dict) -> None:
    gen = runs["geneval"]
    result = invoke(
        "--db",
        env["db"],
        "eval",
        "--images",
        str(gen["output"]),
        "--suite",
        "geneval",
        "--model",
        "imported",
        "--json",
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["model"] == "imported" and report["run_id"] != gen["report"]["run_id"]
    assert report["n_images"] == gen["report"]["n_images"]
    assert report["metrics"] == pytest.approx(gen["report"]["metrics"])
    # a manifest of images made elsewhere (OCR prompts)
    ocr_out = runs["ocr"]["output"]
    manifest = env["root"] / "manifest.jsonl"
    specs = [json.loads((ocr_out / f"{i:05d}/metadata.jsonl").read_text()) for i in range(2)]
    manifest.write_text(
        "".join(
            json.dumps(
                {
                    "image": str(ocr_out / f"{i:05d}/samples/{k:04d}.png"),
                    "prompt": specs[i]["prompt"],
                }
            )
            + "\n"
            for i in range(2)
            for k in range(2)
        )
    )
    result = invoke(
        "--db", env["db"], "eval", "--images", str(manifest), "--suite", "ocr", "--json"
    )
    assert json.loads(result.stdout.strip().splitlines()[-1])["metrics"] == pytest.approx(
        runs["ocr"]["report"]["metrics"]
    )


def test_leaderboard_per_task_columns_and_plot(env: Any, runs: dict) -> None:
    result = invoke(
        "--db",
        env["db"],
        "leaderboard",
        "--suite",
        "geneval",
        "--format",
        "csv",
        "--plot",
        str(env["root"] / "board.png"),
    )
    header = result.stdout.splitlines()[0].split(",")
    assert header[:3] == ["suite", "model", "overall"]
    assert {"single_object", "image_mean", "strict_mean", "partial_mean"} <= set(header)
    models = [line.split(",")[1] for line in result.stdout.strip().splitlines()[1:]]
    assert str(env["model"]) in models and len(models) == len(set(models))  # a row per model
    assert (env["root"] / "board.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for fmt in ("markdown", "html", "json"):
        shown = invoke("--db", env["db"], "leaderboard", "--suite", "geneval", "--format", fmt)
        assert str(env["model"]) in shown.stdout and "single_object" in shown.stdout


def test_report_is_self_contained(env: Any, runs: dict) -> None:
    run_id = runs["geneval"]["report"]["run_id"]
    page_path = env["root"] / "report.html"
    invoke("--db", env["db"], "report", run_id[:8], "--output", str(page_path))
    page = page_path.read_text()
    assert page.count('src="data:image/png;base64,') == N_PROMPTS * N_SAMPLES
    assert 'src="http' not in page and "<link" not in page
    assert "a photo of a bench" in page and "overall" in page
    assert page.count("expected ") >= 1 or "correct" in page  # verdicts with reasons
