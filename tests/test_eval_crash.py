"""Evaluation survives ``kill -9``: real ``nftkit eval`` subprocesses SIGKILLed at chosen points.

Each killed evaluation is rerun with the same ``--output`` and ``--db`` and must end with the
metrics and per-sample rows of an uninterrupted run (its own folder and database), no
duplicate rows, no temporary files, and the images finished before the kill untouched. The
kill points come from ``nftkit.train.faults``: an image complete under its temporary name, a
batch's images saved but not recorded, inside the database transaction of a batch, right after
a batch was committed, and with every row recorded but the run not finished. The shapes world
makes 6 images (3 prompts x 2 samples) in 3 batches of 2. The fast test kills one folder three
times in a row; the slow ones kill a fresh evaluation at each point once (about 20 s each).
"""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from nftkit.results.store import ResultsStore
from nftkit.train.faults import FAULT_ENV, POINTS
from tests.conftest import run_cli

EVAL_ARGS = [
    "eval",
    "--model",
    "shapes-base",
    "--suite",
    "shapes",
    "--limit",
    "3",
    "--n-samples",
    "2",
    "--steps",
    "2",
    "--batch-size",
    "2",
    "--json",
]
N_IMAGES = 6
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
TEMP_NAME = re.compile(r"\.\d{4}\.png\.\d+\.tmp")


def _eval(db: Path, out: Path, fault: str | None = None) -> tuple[int, str, str]:
    result = run_cli(
        "--db",
        f"sqlite:///{db}",
        *EVAL_ARGS,
        "--output",
        str(out),
        env={**ONE_THREAD, FAULT_ENV: fault or ""},
        timeout=180,
    )
    return result.returncode, result.stdout, result.stderr


def _store(db: Path) -> ResultsStore:
    return ResultsStore(f"sqlite:///{db}")


def _pngs(out: Path) -> dict[str, Path]:
    return {str(p.relative_to(out)): p for p in sorted(out.glob("*/samples/*.png"))}


def _temporaries(out: Path) -> list[Path]:
    return sorted(p for p in out.rglob("*") if p.name.endswith(".tmp"))


def _rows(db: Path) -> list[tuple[Any, ...]]:
    (run,) = _store(db).list_runs(kind="eval")
    return [
        (s.prompt_id, s.sample_index, s.seed, json.dumps(s.scores, sort_keys=True), s.correct)
        for s in _store(db).samples(run.id)
    ]


@pytest.fixture(scope="module")
def straight(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The uninterrupted reference evaluation: metrics, rows and image bytes."""
    root = tmp_path_factory.mktemp("eval-straight")
    code, stdout, stderr = _eval(root / "r.db", root / "out")
    assert code == 0, stderr[-2000:]
    rows = _rows(root / "r.db")
    assert len(rows) == N_IMAGES
    return {
        "metrics": json.loads(stdout.strip().splitlines()[-1])["metrics"],
        "rows": rows,
        "pngs": {name: p.read_bytes() for name, p in _pngs(root / "out").items()},
    }


def _kill(db: Path, out: Path, fault: str) -> tuple[str, list[tuple[Any, ...]]]:
    """Run until ``fault`` SIGKILLs the evaluation; check nothing on disk or in the DB lies."""
    code, _, stderr = _eval(db, out, fault)
    assert code == -signal.SIGKILL, (fault, code, stderr[-2000:])
    (run,) = _store(db).list_runs(kind="eval")  # a rerun never starts a second run
    assert run.status == "running"  # killed: no clean exit was recorded
    assert not _store(db).metrics(run.id)
    rows = _rows(db)
    assert len(rows) == len({r[:2] for r in rows})
    pngs = _pngs(out)
    for name, path in pngs.items():  # every file under its final name is a whole image
        with Image.open(path) as image:
            image.load()
        assert image.size[0] > 0, name
    for prompt_id, sample, *_ in rows:  # the DB is never ahead of the images on disk
        assert f"{int(prompt_id):05d}/samples/{sample:04d}.png" in pngs
    temporaries = _temporaries(out)
    assert len(temporaries) <= 1 and all(TEMP_NAME.fullmatch(p.name) for p in temporaries)
    return run.id, rows


def _finish(
    db: Path, out: Path, run_id: str, straight: dict[str, Any], kept: dict[str, tuple[int, int]]
) -> None:
    """Rerun to the end and compare with the uninterrupted evaluation."""
    code, stdout, stderr = _eval(db, out)
    assert code == 0, stderr[-2000:]
    report = json.loads(stdout.strip().splitlines()[-1])
    assert report["run_id"] == run_id and report["n_images"] == N_IMAGES
    assert report["metrics"] == straight["metrics"]
    (run,) = _store(db).list_runs(kind="eval")
    assert run.id == run_id and run.status == "finished"
    assert {m.metric: m.value for m in _store(db).metrics(run_id)} == straight["metrics"]
    rows = _rows(db)
    assert len(rows) == len({r[:2] for r in rows}) == N_IMAGES
    assert rows == straight["rows"]
    assert not _temporaries(out)
    pngs = _pngs(out)
    assert {name: p.read_bytes() for name, p in pngs.items()} == straight["pngs"]
    for name, (mtime, inode) in kept.items():  # finished images were not written again
        stat = pngs[name].stat()
        assert (stat.st_mtime_ns, stat.st_ino) == (mtime, inode), name
    lines = (out / "results.jsonl").read_text().splitlines()
    assert len(lines) == N_IMAGES == len({json.loads(x)["filename"] for x in lines})


def _stats(out: Path) -> dict[str, tuple[int, int]]:
    return {name: (p.stat().st_mtime_ns, p.stat().st_ino) for name, p in _pngs(out).items()}


def test_repeatedly_killed_eval_resumes_to_the_uninterrupted_result(
    straight: dict[str, Any], tmp_path: Path
) -> None:
    """Three kills in a row on one folder (each rerun killed again), then a clean finish."""
    db, out = tmp_path / "r.db", tmp_path / "out"
    # PNG 3 (first of batch 2) complete under its temporary name: 2 finished images.
    run_id, rows = _kill(db, out, "eval-mid-png:3")
    assert len(_pngs(out)) == 2 and len(_temporaries(out)) == 1
    assert len(rows) in (0, 2)  # batch 1 may or may not have been scored yet
    kept = _stats(out)
    # Inside the first batch's DB transaction: nothing of it is committed.
    assert _kill(db, out, "mid-add-samples:1") == (run_id, rows)
    kept.update(_stats(out))
    # Right after the next batch was committed: exactly 2 more rows.
    _, after = _kill(db, out, "eval-after-batch:1")
    assert len(after) == len(rows) + 2 and set(rows) <= set(after)
    assert not (out / "results.jsonl").exists()
    kept.update(_stats(out))
    _finish(db, out, run_id, straight, kept)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("fault", "n_rows", "n_pngs"),
    [
        ("eval-mid-png:2", (0,), 1),  # second image of batch 1 not yet renamed
        ("eval-after-png:2", (0, 2), 4),  # batch 2 saved, not queued for scoring
        ("mid-add-samples:2", (2,), None),  # inside batch 2's transaction
        ("eval-after-batch:2", (4,), None),
        ("mid-add-samples:3", (4,), N_IMAGES),  # inside the last batch's transaction
        ("eval-after-batch:3", (N_IMAGES,), N_IMAGES),  # all rows, results.jsonl not written
        (f"eval-before-finish:{N_IMAGES}", (N_IMAGES,), N_IMAGES),
    ],
)
def test_eval_killed_at_each_point_resumes_to_the_uninterrupted_result(
    straight: dict[str, Any],
    tmp_path: Path,
    fault: str,
    n_rows: tuple[int, ...],
    n_pngs: int | None,
) -> None:
    db, out = tmp_path / "r.db", tmp_path / "out"
    run_id, rows = _kill(db, out, fault)
    assert len(rows) in n_rows
    if n_pngs is not None:
        assert len(_pngs(out)) == n_pngs
    assert (out / "results.jsonl").is_file() == fault.startswith("eval-before-finish")
    _finish(db, out, run_id, straight, _stats(out))


def test_every_eval_fault_point_is_registered() -> None:
    package = Path(__file__).resolve().parents[1] / "nftkit"
    source = "".join(
        f.read_text()
        for f in [*(package / "eval").glob("*.py"), *(package / "results").glob("*.py")]
    )
    used = set(re.findall(r'fault_point\("([a-z-]+)"', source))
    assert used == {
        "eval-mid-png",
        "eval-after-png",
        "mid-add-samples",
        "eval-after-batch",
        "eval-before-finish",
    }
    assert used <= set(POINTS)
