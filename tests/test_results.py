"""Results store and leaderboard, on real SQLite files in tmp_path."""

from __future__ import annotations

import csv
import io
import json
import math
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rich.console import Console

from nftkit.errors import NftkitError, UsageError
from nftkit.results import (
    DB_ENV,
    DEFAULT_DB_URL,
    FORMATS,
    LeaderboardRow,
    ResultsStore,
    config_hash,
    database_url,
    format_leaderboard,
    plot_leaderboard,
)
from nftkit.results.engine import mask_url


@pytest.fixture
def outside_repo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Work in tmp_path with git unable to find a repository above it."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    return tmp_path


@pytest.fixture
def store(outside_repo: Path) -> Iterator[ResultsStore]:
    """A fresh store on a SQLite file."""
    with ResultsStore(str(outside_repo / "results.db")) as results:
        yield results


def _eval_run(
    store: ResultsStore,
    model: str,
    metrics: dict[str, float],
    *,
    suite: str = "geneval",
    status: str | None = "finished",
    higher_is_better: dict[str, bool] | bool = True,
    n: int | None = 8,
) -> str:
    rid = store.start_run("eval", model, {"model": model}, suite=suite)
    store.log_metrics(rid, suite, metrics, n=n, higher_is_better=higher_is_better)
    if status is not None:
        store.finish_run(rid, status)
    return rid


# -- URLs -------------------------------------------------------------------------------------


def test_database_url_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv(DB_ENV, raising=False)
    assert database_url(None) == DEFAULT_DB_URL == "sqlite:///nftkit.db"
    monkeypatch.setenv(DB_ENV, "sqlite:///from-env.db")
    assert database_url(None) == "sqlite:///from-env.db"
    assert database_url("sqlite:///explicit.db") == "sqlite:///explicit.db"
    assert database_url(str(tmp_path / "a.db")) == f"sqlite:///{tmp_path}/a.db"
    assert database_url("rel/b.db") == "sqlite:///rel/b.db"
    assert database_url("postgresql://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
    assert database_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    monkeypatch.setenv(DB_ENV, "  ")
    assert database_url(None) == DEFAULT_DB_URL
    with pytest.raises(UsageError):
        database_url("")
    assert mask_url("postgresql+psycopg://u:secret@h:5/db") == "postgresql+psycopg://u:***@h:5/db"


# -- runs -------------------------------------------------------------------------------------


def test_run_round_trip_every_field(store: ResultsStore, outside_repo: Path) -> None:
    config = {"steps": 40, "cfg": None, "lr": 3e-4, "tags": ["a", "b"], "nested": {"z": 1, "a": 2}}
    before = datetime.now(UTC)
    rid = store.start_run(
        "train", "sd35-medium", config, suite="geneval", output_dir=outside_repo / "out"
    )
    run = store.get_run(rid)
    assert len(rid) == 32 and int(rid, 16) >= 0
    assert run.id == rid and run.short_id == rid[:8]
    assert (run.kind, run.model, run.suite, run.status) == (
        "train",
        "sd35-medium",
        "geneval",
        "running",
    )
    assert run.config == config
    assert run.config_hash == config_hash(config) == config_hash(dict(reversed(config.items())))
    assert len(run.config_hash) == 64
    assert run.git_sha is None
    assert run.output_dir == str(outside_repo / "out")
    assert run.versions["python"].count(".") == 2
    assert {"nftkit", "torch", "diffusers", "transformers"} <= run.versions.keys()
    assert run.started_at.tzinfo is not None and run.started_at.utcoffset().total_seconds() == 0
    assert before <= run.started_at <= datetime.now(UTC)
    assert run.finished_at is None

    store.finish_run(rid)
    done = store.get_run(rid)
    assert done.status == "finished"
    assert done.finished_at is not None and done.finished_at >= done.started_at
    assert done.finished_at.tzinfo is not None
    assert json.loads(json.dumps(done.as_dict()))["config"] == config

    explicit = uuid.uuid4().hex
    assert store.start_run("score", "m", {}, run_id=explicit.upper()) == explicit
    bare = store.get_run(explicit)
    assert (bare.suite, bare.output_dir, bare.config) == (None, None, {})


def test_git_sha_recorded_inside_a_repository(outside_repo: Path) -> None:
    if shutil.which("git") is None:
        pytest.skip("git not installed")
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "init"], check=True)
    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()
    with ResultsStore("results.db") as results:
        assert results.get_run(results.start_run("eval", "m", {})).git_sha == head


def test_status_changes_and_validation(store: ResultsStore) -> None:
    rid = store.start_run("eval", "m", {"a": 1})
    store.finish_run(rid, "interrupted")
    assert store.get_run(rid).status == "interrupted"
    store.set_status(rid, "running")  # resumed
    resumed = store.get_run(rid)
    assert (resumed.status, resumed.finished_at) == ("running", None)
    store.set_status(rid, "failed")
    assert store.get_run(rid).finished_at is not None
    with pytest.raises(UsageError, match="running"):
        store.finish_run(rid, "running")
    with pytest.raises(UsageError, match="done"):
        store.set_status(rid, "done")
    with pytest.raises(UsageError, match="kind"):
        store.start_run("benchmark", "m", {})
    with pytest.raises(NftkitError, match="JSON"):
        store.start_run("eval", "m", {"path": Path("x")})
    with pytest.raises(NftkitError, match="JSON"):
        store.start_run("eval", "m", {"lr": math.nan})
    with pytest.raises(NftkitError, match="already exists"):
        store.start_run("eval", "m", {}, run_id=rid)
    with pytest.raises(UsageError, match="32 hex"):
        store.start_run("eval", "m", {}, run_id="xyz")


def test_run_id_prefix_matching(store: ResultsStore) -> None:
    a = store.start_run("eval", "a", {}, run_id="abcd1" + "0" * 27)
    b = store.start_run("eval", "b", {}, run_id="abcd2" + "0" * 27)
    assert store.get_run("abcd1").id == a
    assert store.get_run("ABCD2000").id == b
    assert store.get_run(a).model == "a"
    with pytest.raises(UsageError, match="ambiguous"):
        store.get_run("abcd")
    with pytest.raises(UsageError, match="too short"):
        store.get_run("abc")
    with pytest.raises(NftkitError, match="no run"):
        store.get_run("ffff")
    with pytest.raises(NftkitError, match="no run"):
        store.get_run("f" * 32)
    with pytest.raises(UsageError, match="hex"):
        store.get_run("abcd-1")
    store.log_metrics("abcd1", "s", {"x": 1.0})  # writes resolve prefixes too
    assert [m.run_id for m in store.metrics("abcd1")] == [a]


def test_list_runs_and_find_run(store: ResultsStore) -> None:
    cfg = {"suite": "geneval", "n": 4}
    first = store.start_run("eval", "m", cfg, suite="geneval")
    store.finish_run(first, "interrupted")
    store.start_run("train", "m", cfg)
    second = store.start_run("eval", "m", cfg, suite="geneval")
    store.start_run("eval", "m", {"other": True}, suite="geneval")
    assert [r.kind for r in store.list_runs()][-1] == "eval"
    assert len(store.list_runs()) == 4
    assert len(store.list_runs(kind="eval")) == 3
    assert len(store.list_runs(limit=2)) == 2
    assert store.list_runs()[0].started_at >= store.list_runs()[-1].started_at
    found = store.find_run("eval", "m", "geneval", config_hash(cfg))
    assert found is not None and found.id == second
    resumable = store.find_run("eval", "m", "geneval", config_hash(cfg), status="interrupted")
    assert resumable is not None and resumable.id == first
    assert store.find_run("eval", "m", "ocr", config_hash(cfg)) is None
    assert store.find_run("train", "m", None, config_hash(cfg)) is not None


def test_delete_run_removes_metrics_and_samples(store: ResultsStore) -> None:
    rid = _eval_run(store, "m", {"overall": 0.5})
    store.add_samples(rid, "geneval", [{"prompt_id": "p", "sample_index": 0, "prompt": "x"}])
    store.delete_run(rid[:8])
    with pytest.raises(NftkitError):
        store.get_run(rid)
    assert store.leaderboard() == []


# -- metrics ----------------------------------------------------------------------------------


def test_metrics_upsert_final_replaced_steps_kept(store: ResultsStore) -> None:
    rid = store.start_run("train", "m", {})
    store.log_metrics(rid, "train", {"loss": 1.0, "reward": 0.1}, step=0, higher_is_better=False)
    store.log_metrics(rid, "train", {"loss": 0.5}, step=10, higher_is_better=False)
    store.log_metrics(rid, "train", {"loss": 0.4}, step=10, higher_is_better=False)  # same step
    store.log_metrics(rid, "eval", {"overall": 0.6, "count": 0.2}, n=100)
    store.log_metrics(
        rid,
        "eval",
        {"overall": 0.7, "fid": 30.0},
        n=120,
        higher_is_better={"overall": True, "fid": False},
    )
    rows = store.metrics(rid)
    assert [(m.suite, m.metric, m.step, m.value) for m in rows] == [
        ("eval", "count", None, 0.2),
        ("eval", "fid", None, 30.0),
        ("eval", "overall", None, 0.7),
        ("train", "loss", 0, 1.0),
        ("train", "loss", 10, 0.4),
        ("train", "reward", 0, 0.1),
    ]
    final = {m.metric: m for m in store.metrics(rid, final_only=True)}
    assert set(final) == {"count", "fid", "overall"}
    assert (final["overall"].n, final["count"].n) == (120, 100)
    assert final["fid"].higher_is_better is False and final["overall"].higher_is_better is True
    assert final["overall"].created_at.tzinfo is not None
    assert [m.metric for m in store.metrics(rid, suite="train")] == ["loss", "loss", "reward"]
    with pytest.raises(UsageError, match="fid"):
        store.log_metrics(
            rid, "eval", {"fid": 1.0, "overall": 1.0}, higher_is_better={"overall": True}
        )
    with pytest.raises(UsageError, match="step"):
        store.log_metrics(rid, "eval", {"x": 1.0}, step=-1)
    with pytest.raises(NftkitError, match="no run"):
        store.log_metrics("0" * 32, "eval", {"x": 1.0})


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, "high"])
def test_non_finite_metric_raises_naming_it(store: ResultsStore, bad: object) -> None:
    rid = store.start_run("eval", "m", {})
    with pytest.raises(NftkitError, match="'clip_score'"):
        store.log_metrics(rid, "geneval", {"overall": 0.5, "clip_score": bad})  # type: ignore[dict-item]
    assert store.metrics(rid) == []  # nothing half-written


# -- samples ----------------------------------------------------------------------------------


def _sample(prompt_id: str, index: int, score: float, **extra: object) -> dict[str, object]:
    return {
        "prompt_id": prompt_id,
        "sample_index": index,
        "seed": 1000 + index,
        "prompt": f"prompt {prompt_id}",
        "image_path": f"images/{prompt_id}_{index}.png",
        "scores": {"clip": score, "details": {"objects": ["cat"]}},
        "correct": score > 0.5,
        **extra,
    }


def test_samples_upsert_never_duplicates(store: ResultsStore) -> None:
    rid = store.start_run("eval", "m", {}, suite="geneval")
    rows = [_sample(p, i, 0.25) for p in ("p0", "p1") for i in range(2)]
    assert store.add_samples(rid, "geneval", rows) == 4
    assert store.add_samples(rid, "geneval", rows) == 4  # idempotent re-run
    store.add_samples(rid, "geneval", [_sample("p1", 1, 0.9, seed=2**40, image_path=Path("x.png"))])
    store.add_samples(rid, "ocr", [_sample("p1", 1, 0.1)])
    samples = store.samples(rid, suite="geneval")
    assert [(s.prompt_id, s.sample_index) for s in samples] == [
        ("p0", 0),
        ("p0", 1),
        ("p1", 0),
        ("p1", 1),
    ]
    last = samples[-1]
    assert (last.seed, last.image_path, last.correct) == (2**40, "x.png", True)
    assert last.scores == {"clip": 0.9, "details": {"objects": ["cat"]}}
    assert samples[0].prompt == "prompt p0" and samples[0].correct is False
    assert len(store.samples(rid)) == 5
    minimal = store.add_samples(
        rid, "drawbench", [{"prompt_id": 7, "sample_index": 0, "prompt": "x"}]
    )
    assert minimal == 1
    (only,) = store.samples(rid, suite="drawbench")
    assert (only.prompt_id, only.seed, only.image_path, only.scores, only.correct) == (
        "7",
        None,
        None,
        {},
        None,
    )


def test_sample_rows_are_validated(store: ResultsStore) -> None:
    rid = store.start_run("eval", "m", {})
    with pytest.raises(UsageError, match="missing prompt"):
        store.add_samples(rid, "s", [{"prompt_id": "p", "sample_index": 0}])
    with pytest.raises(UsageError, match="unknown keys reason"):
        store.add_samples(rid, "s", [_sample("p", 0, 0.1, reason="x")])
    with pytest.raises(NftkitError, match=r"'p'.*JSON"):
        store.add_samples(rid, "s", [_sample("p", 0, 0.1, scores={"clip": math.nan})])
    assert store.samples(rid) == []


def test_concurrent_writers_do_not_fail(outside_repo: Path) -> None:
    path = str(outside_repo / "shared.db")
    with ResultsStore(path) as first:
        rid = first.start_run("train", "m", {})
    errors: list[BaseException] = []

    def writer(worker: int) -> None:
        try:
            with ResultsStore(path) as results:
                for step in range(15):
                    results.log_metrics(rid, f"w{worker}", {"loss": 1.0 / (step + 1)}, step=step)
                    results.add_samples(rid, f"w{worker}", [_sample("p", step, 0.5)])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with ResultsStore(path) as results:
        assert len(results.metrics(rid)) == 60
        assert len(results.samples(rid)) == 60


# -- leaderboard ------------------------------------------------------------------------------


def _populated(store: ResultsStore) -> dict[str, str]:
    ids = {
        "old_a": _eval_run(store, "model-a", {"overall": 0.10, "counting": 0.9}),
        "b": _eval_run(store, "model-b", {"overall": 0.81234567, "counting": 0.5, "colors": 0.25}),
        "a": _eval_run(store, "model-a", {"overall": 0.6, "counting": 0.75}, n=553),
        "running": _eval_run(store, "model-a", {"overall": 0.99}, status=None),
        "failed": _eval_run(store, "model-c", {"overall": 0.95}, status="failed"),
        "ocr": _eval_run(
            store, "model-a", {"overall": 12.5}, suite="ocr", higher_is_better=False, n=None
        ),
        "ocr_b": _eval_run(
            store, "model-b", {"overall": 3.25}, suite="ocr", higher_is_better=False, n=None
        ),
        "plain_z": _eval_run(store, "z-model", {"acc": 0.3}, suite="drawbench"),
        "plain_b": _eval_run(store, "b-model", {"acc": 0.4}, suite="drawbench"),
    }
    train = store.start_run("train", "model-d", {})
    store.log_metrics(train, "geneval", {"overall": 1.0})
    store.finish_run(train)
    store.log_metrics(ids["a"], "geneval", {"overall": 0.99}, step=5)  # not final: ignored
    return ids


def test_leaderboard_latest_finished_eval_per_model(store: ResultsStore) -> None:
    ids = _populated(store)
    rows = store.leaderboard("geneval")
    assert [(r.model, r.run_id) for r in rows] == [("model-b", ids["b"]), ("model-a", ids["a"])]
    a = rows[1]
    assert a.metrics == {"overall": 0.6, "counting": 0.75}
    assert a.higher_is_better == {"overall": True, "counting": True}
    assert a.n == 553 and a.suite == "geneval"
    assert a.finished_at == store.get_run(ids["a"]).finished_at

    everything = store.leaderboard()
    assert [(r.suite, r.model) for r in everything] == [
        ("drawbench", "b-model"),  # no overall: by model name
        ("drawbench", "z-model"),
        ("geneval", "model-b"),
        ("geneval", "model-a"),
        ("ocr", "model-b"),  # lower is better: ascending
        ("ocr", "model-a"),
    ]
    assert store.leaderboard("nope") == []


def test_leaderboard_formats_render_the_numbers(store: ResultsStore) -> None:
    _populated(store)
    rows = store.leaderboard()

    parsed = list(csv.DictReader(io.StringIO(format_leaderboard(rows, "csv"))))
    header = list(parsed[0].keys())
    assert header == [
        "suite",
        "model",
        "overall",
        "acc",
        "colors",
        "counting",
        "n",
        "run_id",
        "finished_at",
    ]
    b = next(r for r in parsed if r["model"] == "model-b" and r["suite"] == "geneval")
    assert float(b["overall"]) == 0.81234567 and float(b["colors"]) == 0.25
    assert b["n"] == "8"
    assert next(r for r in parsed if r["suite"] == "ocr")["counting"] == ""

    data = json.loads(format_leaderboard(rows, "json"))
    assert [(d["suite"], d["model"]) for d in data] == [(r.suite, r.model) for r in rows]
    assert data[2]["metrics"] == {"overall": 0.81234567, "colors": 0.25, "counting": 0.5}
    assert data[4]["higher_is_better"] == {"overall": False}
    assert datetime.fromisoformat(data[0]["finished_at"]).tzinfo is not None

    markdown = format_leaderboard(rows, "markdown")
    lines = markdown.strip().splitlines()
    assert lines[0] == "| suite | model | overall ↑ | acc ↑ | colors ↑ | counting ↑ | n | run |"
    assert len(lines) == 2 + len(rows)
    cells = {tuple(c.strip() for c in line.strip("|").split("|"))[:7] for line in lines[2:]}
    assert ("geneval", "model-b", "0.8123", "", "0.2500", "0.5000", "8") in cells
    assert ("ocr", "model-a", "12.5000", "", "", "", "") in cells

    page = format_leaderboard(rows, "html")
    assert page.count("<tr>") == 1 + len(rows)
    assert "<td>model-b</td>" in page and ">0.8123</td>" in page and "12.5000" in page
    assert "http" not in page  # self-contained

    console = Console(file=io.StringIO(), width=160, color_system=None)
    console.print(format_leaderboard(rows, "table"))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "0.8123" in text and "model-b" in text and "3.2500" in text

    with pytest.raises(UsageError, match=", ".join(FORMATS)):
        format_leaderboard(rows, "xlsx")
    assert format_leaderboard([], "json").strip() == "[]"
    assert format_leaderboard([], "csv").strip() == "suite,model,n,run_id,finished_at"


def test_plot_leaderboard_writes_png(store: ResultsStore, outside_repo: Path) -> None:
    _populated(store)
    out = plot_leaderboard(store.leaderboard(), outside_repo / "board.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(NftkitError, match="nothing to plot"):
        plot_leaderboard([], outside_repo / "empty.png")


def test_leaderboard_row_as_dict() -> None:
    row = LeaderboardRow("s", "m", "0" * 32, None, {"overall": 1.0}, {"overall": True}, None)
    assert row.as_dict()["finished_at"] is None


# -- opening databases ------------------------------------------------------------------------


def test_unreachable_database_names_host_not_password() -> None:
    url = "postgresql+psycopg://u:secret@127.0.0.1:1/db"
    start = time.monotonic()
    with pytest.raises(NftkitError) as info:
        ResultsStore(url)
    message = str(info.value)
    assert time.monotonic() - start < 10
    assert "127.0.0.1" in message and "secret" not in message and "***" in message
    assert "\n" not in message
    assert "secret" not in str(info.value.__cause__ or "")


def test_bad_urls_raise_one_line(tmp_path: Path) -> None:
    with pytest.raises(NftkitError, match="nosuchdb"):
        ResultsStore("nosuchdb://x")
    with pytest.raises(NftkitError, match="directory exists"):
        ResultsStore(f"sqlite:///{tmp_path}/missing/dir/x.db")
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(NftkitError, match=r"junk\.db") as info:
        ResultsStore(str(junk))
    assert "\n" not in str(info.value)


def test_postgresql_round_trip(pg_url: str) -> None:
    suite = f"pg-{uuid.uuid4().hex[:8]}"  # leaves other data in the database alone
    with ResultsStore(pg_url) as results:
        rid = _eval_run(results, "model-a", {"overall": 0.5}, suite=suite)
        results.log_metrics(rid, suite, {"overall": 0.75})
        results.add_samples(rid, suite, [_sample("p", 0, 0.1)] * 2)
        (row,) = results.leaderboard(suite)
        assert (row.run_id, row.metrics) == (rid, {"overall": 0.75})
        assert len(results.samples(rid)) == 1
        assert results.get_run(rid[:10]).finished_at is not None
        results.delete_run(rid)


def test_transposed_leaderboard_has_a_column_per_model_and_a_row_per_metric() -> None:
    from rich.console import Console

    from nftkit.results.leaderboard import transposed_table
    from nftkit.results.records import LeaderboardRow

    rows = [
        LeaderboardRow(
            "shapes",
            "tuned",
            "a" * 32,
            None,
            {"overall": 0.41, "position": 0.21},
            {"overall": True, "position": True},
            120,
        ),
        LeaderboardRow("shapes", "base", "b" * 32, None, {"overall": 0.19}, {"overall": True}, 120),
    ]
    table = transposed_table(rows)
    assert len(table.columns) == 1 + len(rows)
    assert table.row_count == 2 + 1  # overall, position, n
    console = Console(width=60, record=True)
    console.print(table)
    text = console.export_text()
    assert "0.4100" in text and "0.1900" in text and "0.2100" in text and "…" not in text
