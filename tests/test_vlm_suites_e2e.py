"""`nftkit eval --suite geneval2 / dpg --limit 4` on the tiny SD3, VQA on a loopback fake server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from nftkit.cli.main import app
from nftkit.registry import evaluator_class
from tests.test_dpg import CSV
from tests.vlm_fake_server import FakeChatServer, deterministic_reply

DPG_CSV = CSV + "".join(
    f"D{i},a scene {i},x,1,0,entity,whole,entity - whole (thing{i}),Is there a thing{i}?\n"
    for i in range(2)
)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> Any:
    from nftkit.policies.tiny_sd3 import save_tiny_sd3

    root = tmp_path_factory.mktemp("vlm-suites")
    (root / "dpg_bench.csv").write_text(DPG_CSV)
    with FakeChatServer(deterministic_reply) as server, pytest.MonkeyPatch.context() as mp:
        mp.setenv("NFTKIT_VLM_URL", server.url)
        mp.setenv("NFTKIT_VLM_MODEL", "fake-qwen3-vl")
        mp.setenv("NFTKIT_CACHE", str(root / "cache"))
        yield {
            "root": root,
            "model": save_tiny_sd3(root / "tiny-sd3"),
            "server": server,
            "prompts": {
                "geneval2": shared_data / "geneval2" / "geneval2_data.jsonl",
                "dpg": root / "dpg_bench.csv",
            },
        }


def rows_from_results(output: Path, keys: tuple[str, ...]) -> list[dict[str, Any]]:
    rows = []
    for line in (output / "results.jsonl").read_text().splitlines():
        data = json.loads(line)
        path = Path(data["filename"])
        rows.append(
            {
                "prompt_id": path.parent.parent.name,
                "sample_index": int(path.stem),
                "scores": data["scores"],
                **{k: data[k] for k in keys if k in data},
            }
        )
    return rows


@pytest.mark.parametrize(("suite", "n_samples"), [("geneval2", 1), ("dpg", 4)])
def test_eval_limit_4_and_summary_from_the_result_lines(
    env: Any, suite: str, n_samples: int
) -> None:
    output = env["root"] / f"out-{suite}"
    result = CliRunner().invoke(
        app,
        [
            "--db",
            f"sqlite:///{env['root'] / 'r.db'}",
            "eval",
            "--model",
            str(env["model"]),
            "--suite",
            suite,
            "--prompts",
            str(env["prompts"][suite]),
            "--limit",
            "4",
            "--steps",
            "2",
            "--batch-size",
            "4",
            "--output",
            str(output),
            "--json",
        ],
    )
    assert result.exit_code == 0, (result.output, result.exception)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["n_images"] == 4 * n_samples
    evaluator = evaluator_class(suite)(prompts_path=env["prompts"][suite])
    rows = rows_from_results(output, evaluator.row_info_keys)
    assert len(rows) == 4 * n_samples
    recomputed = evaluator.summarize(rows).metrics
    assert recomputed.keys() == report["metrics"].keys()
    for key, value in recomputed.items():
        assert value == pytest.approx(report["metrics"][key], abs=1e-9), key
    assert 0.0 <= report["metrics"]["overall"] <= 100.0
    assert evaluator.settings()["vqa"]["model"] == "fake-qwen3-vl"


def test_leaderboard_has_the_new_suites_columns(env: Any) -> None:
    db = f"sqlite:///{env['root'] / 'r.db'}"
    for suite in ("geneval2", "dpg"):
        CliRunner().invoke(
            app,
            [
                "--db",
                db,
                "eval",
                "--model",
                str(env["model"]),
                "--suite",
                suite,
                "--prompts",
                str(env["prompts"][suite]),
                "--limit",
                "1",
                "--steps",
                "1",
                "--json",
            ],
        )
    result = CliRunner().invoke(app, ["--db", db, "leaderboard", "--format", "csv"])
    assert result.exit_code == 0, result.output
    header = result.stdout.splitlines()[0].split(",")
    for column in (
        "overall",
        "soft_tifa_am",
        "skill_count",
        "overall_corrected",
        "dropped_by_official",
        "entity",
    ):
        assert column in header, column


def test_geneval2_with_the_transformers_backend(env: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from nftkit.debug_tiny.qwen2vl import save_tiny_qwen2vl

    monkeypatch.setenv("NFTKIT_VLM_BACKEND", "transformers")
    monkeypatch.setenv("NFTKIT_VLM_MODEL", str(save_tiny_qwen2vl(env["root"] / "tiny-vlm")))
    served = len(env["server"].requests)
    result = CliRunner().invoke(
        app,
        [
            "--db",
            f"sqlite:///{env['root'] / 'local.db'}",
            "eval",
            "--model",
            str(env["model"]),
            "--suite",
            "geneval2",
            "--prompts",
            str(env["prompts"]["geneval2"]),
            "--limit",
            "2",
            "--steps",
            "1",
            "--json",
        ],
    )
    assert result.exit_code == 0, (result.output, result.exception)
    metrics = json.loads(result.stdout.strip().splitlines()[-1])["metrics"]
    assert 0.0 < metrics["overall"] <= metrics["soft_tifa_am"] < 100.0  # GM <= AM
    assert len(env["server"].requests) == served  # answered locally, not by the server


def test_vlm_options_choose_the_server_and_are_refused_elsewhere(env: Any) -> None:
    """--vlm-url/--vlm-model override the environment; a suite without a VQA judge refuses them."""
    output = env["root"] / "out-flags"
    with FakeChatServer(deterministic_reply) as other, pytest.MonkeyPatch.context() as mp:
        mp.setenv("NFTKIT_VLM_URL", "http://127.0.0.1:9/v1")  # nothing listens there
        result = CliRunner().invoke(
            app,
            [
                "--db",
                f"sqlite:///{env['root'] / 'flags.db'}",
                "eval",
                "--model",
                str(env["model"]),
                "--suite",
                "geneval2",
                "--prompts",
                str(env["prompts"]["geneval2"]),
                "--limit",
                "1",
                "--steps",
                "1",
                "--output",
                str(output),
                "--vlm-url",
                other.url,
                "--vlm-model",
                "flag-model",
                "--json",
            ],
        )
        assert result.exit_code == 0, (result.output, result.exception)
        assert other.requests, "the server named by --vlm-url was not asked"
        assert {r["model"] for r in other.requests} == {"flag-model"}
    config = json.loads(result.stdout.strip().splitlines()[-1])
    assert config["n_images"] == 1
    refused = CliRunner().invoke(
        app,
        [
            "--db",
            f"sqlite:///{env['root'] / 'flags.db'}",
            "eval",
            "--model",
            str(env["model"]),
            "--suite",
            "shapes",
            "--vlm-url",
            "http://127.0.0.1:9/v1",
        ],
    )
    assert refused.exit_code != 0
    assert "--vlm-url" in str(refused.exception)
