"""Watching training (issue 21): evals during training, TensorBoard, monitors, stop rules."""

from __future__ import annotations

import json
import re
import signal
from pathlib import Path
from typing import Any

import pytest
import torch

from nftkit.compose import ComposedScores
from nftkit.errors import UsageError
from nftkit.results.store import ResultsStore
from nftkit.train.eval_during import DONE_FILE, eval_folder
from nftkit.train.faults import FAULT_ENV
from nftkit.train.monitor import WatchedComposer, first_stop, parse_stop_rule
from nftkit.train.trackers import parse_log_with
from tests.conftest import run_cli
from tests.shapes_helpers import tiny_shapes_config, write_tiny_shapes_model
from tests.test_cli_train_eval import SMALL_NFT

ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_shapes_model(
        tmp_path_factory.mktemp("tiny-model"), tiny_shapes_config(16), seed=1
    )


def _train(db: str, model: Path, out: Path, *extra: str, env: dict[str, str] | None = None) -> Any:
    return run_cli(
        "--db",
        db,
        "train",
        "--model",
        str(model),
        "--rewards",
        "jpeg",
        "--prompts",
        "shapes-train",
        "--output",
        str(out),
        "--quiet",
        *SMALL_NFT,
        *extra,
        env={**ONE_THREAD, **(env or {})},
        timeout=600,
    )


def _history(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]


def _eval_runs(store: ResultsStore, train_id: str) -> dict[int, Any]:
    runs = [
        r
        for r in store.list_runs(kind="eval", limit=None)
        if r.config.get("train_run_id") == train_id
    ]
    return {int(r.config["train_epoch"]): r for r in runs}


# ---------------------------------------------------------------- stop rules and statistics
def test_stop_rules_absolute_and_relative_drop() -> None:
    history = [{"epoch": 0, "monitor/aesthetic": 5.0}, {"epoch": 1, "monitor/aesthetic": 4.5}]
    drop = parse_stop_rule("aesthetic drop>20%")
    assert (drop.name, drop.op, drop.threshold) == ("aesthetic", "drop", 20.0)
    # 5.0 -> 4.1 is an 18% drop: keep going; 5.0 -> 3.9 is 22%: stop.
    assert drop.check({"epoch": 2, "monitor/aesthetic": 4.1}, history) is None
    why = drop.check({"epoch": 2, "monitor/aesthetic": 3.9}, history)
    assert why is not None and "22.0%" in why and "aesthetic drop>20%" in why
    below = parse_stop_rule("pickscore<-1.0")
    assert below.check({"epoch": 0, "reward/pickscore": -0.5}, []) is None
    assert "pickscore" in below.check({"epoch": 0, "reward/pickscore": -1.5}, [])
    assert parse_stop_rule("loss>=2").check({"epoch": 0, "loss": 2.0}, []) is not None
    # A monitor wins over a training component of the same name.
    rec = {"epoch": 0, "monitor/jpeg": -2.0, "reward/jpeg": 0.0}
    assert "monitor/jpeg" in first_stop([parse_stop_rule("jpeg<-1")], rec, [])
    for bad in ("pickscore", "pickscore<<1", "aesthetic drop 20", "x<abc"):
        with pytest.raises(UsageError, match="--stop-if"):
            parse_stop_rule(bad)


def test_log_with_names() -> None:
    assert parse_log_with("all") == ["tensorboard", "wandb", "mlflow"]
    assert parse_log_with("TensorBoard, wandb,tensorboard") == ["tensorboard", "wandb"]
    assert parse_log_with(None) == []
    with pytest.raises(UsageError, match="unknown --log-with 'neptune'"):
        parse_log_with("neptune")


class _Fixed:
    """A composer that returns fixed scores (for the statistics the watch adds)."""

    normalization = "none"

    def __init__(self, scores: list[float]) -> None:
        self.scores = torch.tensor(scores)

    def __call__(self, images: Any, prompts: Any, metadata: Any) -> ComposedScores:
        return ComposedScores(
            total=self.scores.clone(), components={"r": self.scores.clone()}, details={}
        )


def test_watched_composer_statistics_and_monitor() -> None:
    # Two groups of 3: [1, 1, 1] has zero std, [0, 2, 4] does not -> share 0.5.
    scores = [1.0, 1.0, 1.0, 0.0, 2.0, 4.0]
    monitor = _Fixed([10.0, 20.0, 30.0, 40.0, 50.0, 60.0])
    watched = WatchedComposer(_Fixed(scores), monitor, group_size=3, gather=lambda t: t)
    out = watched(None, ["p"] * 6, [{}] * 6)
    assert out.total.tolist() == scores  # the training signal is untouched
    stats = watched.pending
    assert stats["groups/zero_std_share"] == 0.5
    assert stats["reward_total/mean"] == pytest.approx(9.0 / 6)
    # population std: mean 1.5, squared deviations 0.25 * 3 + 2.25 + 0.25 + 6.25 = 9.5
    assert stats["reward_total/std"] == pytest.approx((9.5 / 6) ** 0.5)
    assert stats["monitor/r"] == pytest.approx(35.0)
    assert stats["reward_raw/r"] == pytest.approx(1.5)


# ---------------------------------------------------------------- the CLI end to end
@pytest.fixture(scope="module")
def watched(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, Any]:
    """A 3-epoch run: shapes eval every 2 epochs (1 prompt), TensorBoard, jpeg monitor."""
    pytest.importorskip("tensorboard")
    tmp = tmp_path_factory.mktemp("watched")
    db = f"sqlite:///{tmp / 'r.db'}"
    out = tmp / "run"
    result = _train(
        db,
        tiny_model,
        out,
        "--steps",
        "3",
        "--eval-suite",
        "shapes",
        "--eval-every",
        "2",
        "--eval-limit",
        "1",
        "--log-with",
        "tensorboard",
        "--monitor",
        "jpeg",
    )
    assert result.returncode == 0, result.stderr
    return db, out, result


def test_eval_during_training_tensorboard_and_monitor(watched: tuple[str, Path, Any]) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    db, out, result = watched
    assert "device: cpu" in result.stderr or torch.cuda.is_available()
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    train_id = summary["run_id"]
    # Eval points: every 2 epochs (epoch 2) and the final checkpoint (epoch 3).
    assert [(e["epoch"], e["step"]) for e in summary["evals"]] == [(2, 2), (3, 3)]
    store = ResultsStore(db)
    evals = _eval_runs(store, train_id)
    assert sorted(evals) == [2, 3]
    for epoch, run in evals.items():
        assert run.status == "finished" and run.config["train_step"] == epoch
        assert run.config["steps"] == 20 and run.config["solver"] == "dpm2"  # the suite's own
        assert len(store.samples(run.id)) == 4  # one prompt x the suite's 4 samples
        assert (eval_folder(out, "shapes", epoch) / DONE_FILE).is_file()
    linked = {(m.step, m.metric): m.value for m in store.metrics(train_id, suite="eval:shapes")}
    for epoch, run in evals.items():
        final = {m.metric: m.value for m in store.metrics(run.id, final_only=True)}
        assert linked[(epoch, "overall")] == pytest.approx(final["overall"])
    history = _history(out)
    assert len(history) == 3
    for row in history:
        # jpeg is both the trained reward and a monitor: the two must agree.
        assert row["monitor/jpeg"] == pytest.approx(row["reward/jpeg"], rel=1e-6)
    acc = EventAccumulator(str(out / "trackers"), size_guidance={"scalars": 0, "images": 0})
    tags: dict[str, dict[int, float]] = {}
    for events in (out / "trackers").rglob("events.out.tfevents.*"):
        one = EventAccumulator(str(events), size_guidance={"scalars": 0, "images": 0})
        one.Reload()
        for tag in one.Tags()["scalars"]:
            tags.setdefault(tag, {}).update({e.step: e.value for e in one.Scalars(tag)})
        if one.Tags()["images"]:
            acc = one
    for key in (
        "reward_mean",
        "monitor/jpeg",
        "loss",
        "grad_norm",
        "lr",
        "eta",
        "groups/zero_std_share",
        "ema_decay",
        "reward_raw/jpeg",
    ):
        assert key in tags, (key, sorted(tags))
        assert {row["step"]: row[key] for row in history} == pytest.approx(tags[key], rel=1e-5)
    for step in (1, 2, 3):  # 2 prompts x 4 images per epoch; wall-clock figures: trackers only
        assert tags["throughput/sample_images_per_s"][step] == pytest.approx(
            8 / tags["time/sample_seconds"][step], rel=1e-4
        )
        assert tags["seconds_per_epoch"][step] == pytest.approx(
            tags["time/sample_seconds"][step] + tags["time/train_seconds"][step], rel=1e-4
        )
        assert 0.05 < tags["memory/peak_rss_gib"][step] < 64  # a python + torch process
        assert 0 < tags["time/watch_seconds"][step] < tags["seconds_per_epoch"][step]
    assert "throughput/sample_images_per_s" not in history[0]
    assert tags["eval/shapes/overall"] == pytest.approx({e: linked[(e, "overall")] for e in (2, 3)})
    assert "eval/shapes/samples" in acc.Tags()["images"]
    assert acc.Images("eval/shapes/samples")[0].width > 0


def test_crash_during_eval_resumes_without_loss(tiny_model: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'r.db'}"
    out = tmp_path / "run"
    args = ("--steps", "2", "--eval-suite", "shapes", "--eval-every", "1", "--eval-limit", "1")
    # Killed after the rows of the first evaluation (epoch 1) are committed, before it finishes.
    crashed = _train(db, tiny_model, out, *args, env={FAULT_ENV: "eval-after-batch:1"})
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
    assert (out / "checkpoints" / "step-0000001").is_dir()  # checkpointed before the eval
    assert not (eval_folder(out, "shapes", 1) / DONE_FILE).exists()
    store = ResultsStore(db)
    train_id = store.list_runs(kind="train")[0].id
    before = _eval_runs(store, train_id)
    assert list(before) == [1] and before[1].status == "running"
    resumed = _train(db, tiny_model, out, *args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    after = _eval_runs(store, train_id)
    assert sorted(after) == [1, 2]
    assert after[1].id == before[1].id and after[1].status == "finished"  # continued, not redone
    assert len(store.samples(after[1].id)) == 4
    assert len(_history(out)) == 2


def test_stop_rule_stops_cleanly_with_checkpoint(tiny_model: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'r.db'}"
    out = tmp_path / "run"
    # jpeg scores are negative (minus the compressed size): "jpeg<0" holds after epoch 0.
    result = _train(db, tiny_model, out, "--steps", "5", "--monitor", "jpeg", "--stop-if", "jpeg<0")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["epochs"] == 1 and "stopped by --stop-if 'jpeg<0'" in summary["stopped"]
    assert "monitor/jpeg" in result.stderr
    assert (out / "checkpoints" / "step-0000001").is_dir()
    assert ResultsStore(db).list_runs(kind="train")[0].status == "finished"


def test_bad_watch_options_are_one_line_errors(tiny_model: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'r.db'}"
    bad_rule = _train(db, tiny_model, tmp_path / "a", "--stop-if", "jpeg<<1")
    assert bad_rule.returncode == 2 and "--stop-if expects" in bad_rule.stderr
    bad_tracker = _train(db, tiny_model, tmp_path / "b", "--log-with", "neptune")
    assert bad_tracker.returncode == 2 and "unknown --log-with" in bad_tracker.stderr
    no_suite = _train(db, tiny_model, tmp_path / "d", "--eval-every", "2")
    assert no_suite.returncode == 2 and "need --eval-suite" in no_suite.stderr
    assert not any((tmp_path / n).exists() for n in "abd")
    try:
        import wandb  # noqa: F401
    except ImportError:
        missing = _train(db, tiny_model, tmp_path / "c", "--log-with", "wandb")
        assert missing.returncode == 2 and "pip install wandb" in missing.stderr


def _wandb_values(run_file: Path, key: str) -> list[float]:
    """Values of ``key`` in an offline W&B run file, in logged order.

    A history item is protobuf ``key`` (field 2, tag 0x12) then ``value_json`` (field 16,
    tag 0x82 0x01), each length-prefixed (lengths here are < 128: one byte).
    """
    data = run_file.read_bytes()
    pattern = re.compile(
        re.escape(b"\x12" + bytes([len(key)]) + key.encode() + b"\x82\x01") + b"(.)", re.DOTALL
    )
    values = []
    for m in pattern.finditer(data):
        start = m.end()
        values.append(float(json.loads(data[start : start + m.group(1)[0]])))
    return values


def test_wandb_offline_and_mlflow_file_store(tiny_model: Path, tmp_path: Path) -> None:
    pytest.importorskip("wandb")
    pytest.importorskip("mlflow")
    db = f"sqlite:///{tmp_path / 'r.db'}"
    out = tmp_path / "run"
    env = {"WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    result = _train(db, tiny_model, out, "--steps", "2", "--log-with", "wandb,mlflow", env=env)
    assert result.returncode == 0, result.stderr
    history = _history(out)
    (run_file,) = (out / "trackers" / "wandb").glob("offline-run-*/run-*.wandb")
    for key in ("reward_mean", "loss", "grad_norm"):
        # each log writes a history record and updates the run summary: every value twice
        values = _wandb_values(run_file, key)
        assert (
            values[::2] == pytest.approx([r[key] for r in history]) and values[1::2] == values[::2]
        )
    (metrics,) = (out / "mlruns").glob("*/*/metrics")
    for key in ("reward_mean", "loss"):
        lines = (metrics / key).read_text().split()
        # MLflow file store: "timestamp value step" per line
        logged = {int(lines[i + 2]): float(lines[i + 1]) for i in range(0, len(lines), 3)}
        assert logged == pytest.approx({r["step"]: r[key] for r in history})


def test_training_report_and_compare(
    watched: tuple[str, Path, Any], tiny_model: Path, tmp_path: Path
) -> None:
    db, out, _ = watched
    page = tmp_path / "report.html"
    result = run_cli("--db", db, "report", str(out), "--output", str(page))
    assert result.returncode == 0, result.stderr
    text = page.read_text()
    # Curves vs step and vs wall seconds, eval metrics; two eval points with 4 samples each.
    assert text.count('src="data:image/png;base64,') == 3 + 2 * 4
    assert "vs wall seconds" in text and "eval metrics vs step" in text
    assert "epoch 2 (step 2)" in text and "epoch 3 (step 3)" in text
    assert "images per epoch</th><td>8 (2 prompts x 4)" in text
    assert "<link" not in text and "<script src" not in text  # self-contained
    train_id = ResultsStore(db).list_runs(kind="train")[0].id  # the run id works too
    by_id = run_cli("--db", db, "report", train_id, "--output", str(tmp_path / "by_id.html"))
    assert by_id.returncode == 0 and (tmp_path / "by_id.html").read_text().count("base64") == 11
    other = tmp_path / "other"
    second = _train(db, tiny_model, other, "--steps", "2", "--seed", "7")
    assert second.returncode == 0, second.stderr
    cmp = run_cli(
        "--db", db, "compare", str(out), str(other), "--output", str(tmp_path / "cmp" / "c.html")
    )
    assert cmp.returncode == 0, cmp.stderr
    html_text = (tmp_path / "cmp" / "c.html").read_text()
    assert "<td>run</td><td>3</td>" in html_text and "<td>other</td><td>2</td>" in html_text
    from PIL import Image

    with Image.open(tmp_path / "cmp" / "c.png") as png:
        low, high = png.convert("L").getextrema()
        assert png.size[0] > 100 and high - low > 50  # not blank
    bad = run_cli("--db", db, "compare", str(out), "--output", str(tmp_path / "x.html"))
    assert bad.returncode == 2 and "at least two" in bad.stderr


def test_crash_during_the_final_eval_resumes_it(tiny_model: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'r.db'}"
    out = tmp_path / "run"
    args = ("--steps", "1", "--eval-suite", "shapes", "--eval-limit", "1")  # final eval only
    crashed = _train(db, tiny_model, out, *args, env={FAULT_ENV: "eval-after-batch:1"})
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr[-2000:]
    resumed = _train(db, tiny_model, out, *args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    summary = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert summary["epochs"] == 1 and [e["epoch"] for e in summary["evals"]] == [1]
    store = ResultsStore(db)
    (train,) = store.list_runs(kind="train")
    assert train.status == "finished"
    evals = _eval_runs(store, train.id)
    assert list(evals) == [1] and evals[1].status == "finished"
    assert len(_history(out)) == 1
