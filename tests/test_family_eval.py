"""``nftkit eval`` from the CLI on the tiny SD3, Qwen-Image and SANA pipelines (FLUX:
tests/test_family_flux.py): GenEval on two prompts, the rows in the results database, policy
options given with ``--set policy.KEY=VALUE`` and those a training run folder recorded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from PIL import Image
from typer.testing import CliRunner

from nftkit.cli.main import app
from nftkit.errors import UsageError
from nftkit.results.store import ResultsStore
from tests.family_helpers import PROMPTS, TINY_NFT, invoke

FAMILIES = ("sd3", "qwen-image", "sana")
QWEN_AT_32 = ["--set", "policy.resolution=32"]  # the tiny Qwen-Image default is 512 px


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from nftkit.debug_tiny import make_tiny_weights

    root = tmp_path_factory.mktemp("family-eval")
    (root / "prompts.txt").write_text("\n".join(PROMPTS) + "\n")
    for family in FAMILIES:
        invoke("debug", "make-tiny", "--family", family, str(root / family))
    assert make_tiny_weights(root / "w", ["geneval"])
    return root


@pytest.fixture
def geneval_env(root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The tiny GenEval detector and colour classifier, and a private cache."""
    monkeypatch.setenv("NFTKIT_WEIGHTS_DIR", str(root / "w"))
    monkeypatch.setenv("NFTKIT_CACHE", str(root / "cache"))
    return root


def _eval(db: str, model: Path, shared_data: Path, *extra: str) -> dict[str, Any]:
    result = invoke(
        "--db",
        db,
        "eval",
        "--model",
        str(model),
        "--suite",
        "geneval",
        "--prompts",
        str(shared_data / "geneval" / "evaluation_metadata.jsonl"),
        "--limit",
        "2",
        "--n-samples",
        "1",
        "--steps",
        "2",
        "--json",
        *extra,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def _image_sizes(folder: Path) -> set[tuple[int, int]]:
    return {Image.open(path).size for path in folder.rglob("*.png")}


@pytest.mark.parametrize("family", FAMILIES)
def test_geneval_eval_of_a_tiny_pipeline_lands_in_the_database(
    family: str, geneval_env: Path, shared_data: Path, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'r.db'}"
    model = geneval_env / family
    extra = [*QWEN_AT_32, "--output", str(tmp_path / "out")] if family == "qwen-image" else []
    report = _eval(db, model, shared_data, *extra)
    assert report["n_images"] == 2 and "overall" in report["metrics"]
    store = ResultsStore(db)
    run = store.get_run(report["run_id"])
    assert (run.kind, run.model, run.suite, run.status) == (
        "eval",
        str(model),
        "geneval",
        "finished",
    )
    rows = store.samples(report["run_id"])
    assert len(rows) == 2 and {r.suite for r in rows} == {"geneval"}
    assert len({r.prompt_id for r in rows}) == 2
    if family == "qwen-image":  # the option reached the policy and the run's config
        assert run.config["policy"] == {"resolution": 32}
        assert _image_sizes(tmp_path / "out") == {(32, 32)}
    else:
        assert "policy" not in run.config


def test_a_trained_run_folder_evaluates_with_its_recorded_policy_options(
    geneval_env: Path, shared_data: Path, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'r.db'}"
    run_dir = tmp_path / "nft"
    invoke(
        "--db",
        db,
        "train",
        "--model",
        str(geneval_env / "qwen-image"),
        "--rewards",
        "jpeg",
        "--prompts",
        str(geneval_env / "prompts.txt"),
        "--output",
        str(run_dir),
        "--epochs",
        "1",
        "--quiet",
        *TINY_NFT,
        *QWEN_AT_32,
    )
    info = json.loads((run_dir / "nftkit_model.json").read_text())
    assert info["family"] == "qwen-image" and info["policy"] == {"resolution": 32}
    report = _eval(db, run_dir, shared_data, "--output", str(tmp_path / "out"))
    assert report["n_images"] == 2
    assert len(ResultsStore(db).samples(report["run_id"])) == 2
    assert _image_sizes(tmp_path / "out") == {(32, 32)}  # no --set: the run folder's options
    from nftkit.policies.loading import load_policy

    assert load_policy(run_dir, resolution=64).resolution == 64  # given options win


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("policy.resolutoin=32", "did you mean 'resolution'?"),
        ("policy.guidance=3.5", "the sana policy has no option 'guidance'"),
        ("policy.device=cpu", "give --device instead"),
        ("steps=3", "expected policy.KEY=VALUE"),
    ],
)
def test_bad_policy_options_fail_before_loading(root: Path, item: str, message: str) -> None:
    result = CliRunner().invoke(
        app,
        ["eval", "--model", str(root / "sana"), "--suite", "geneval", "--set", item],
    )
    assert isinstance(result.exception, UsageError), (result.output, result.exception)
    assert message in str(result.exception)


@pytest.mark.parametrize("family", FAMILIES)
def test_one_grpo_optimizer_step_changes_the_lora(root: Path, family: str) -> None:
    run = root / f"grpo-{family}"
    extra = QWEN_AT_32 if family == "qwen-image" else []
    result = invoke(
        "--db",
        f"sqlite:///{root / 'grpo.db'}",
        "train",
        "--algo",
        "grpo",
        "--model",
        str(root / family),
        "--rewards",
        "jpeg",
        "--prompts",
        str(root / "prompts.txt"),
        "--output",
        str(run),
        "--epochs",
        "1",
        "--quiet",
        *[f"--set={item}" for item in ("prompts_per_epoch=2", "group_size=4", "num_steps=3")],
        *[f"--set={item}" for item in ("lora_rank=4", "seed=5")],
        *extra,
    )
    assert json.loads(result.stdout.strip().splitlines()[-1])["optimizer_steps"] == 1
    from safetensors.torch import load_file

    # the trained adapter moved (lora_B starts at zero); the saved EMA keeps the start until
    # its first update, every 8 optimizer steps, as in Flow-GRPO
    trained = load_file(run / "checkpoints" / "step-0000001" / "adapter_default.safetensors")
    moved = [t.abs().max() for name, t in trained.items() if "lora_B" in name]
    assert moved and max(moved) > 0
