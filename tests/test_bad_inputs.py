"""The bad-input matrix: every case goes through the real CLI entry point (in-process).

Each case checks a clear one-line error, a non-zero exit (2 for bad input, 1 for a failure at
run time) and that nothing half-written is left behind (no output folder, no database row left
"running", no partial stdout). Odd but valid images (grayscale, RGBA, 16-bit, palette) are
converted and scored, not rejected.
"""

from __future__ import annotations

import json
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nftkit.results.store import ResultsStore
from tests.shapes_helpers import TINY_TRAIN, tiny_shapes_config, write_tiny_shapes_model

UNREACHABLE_PG = "postgresql+psycopg://nftkit:s3cret@127.0.0.1:1/nftkit"

BAD_PLUGINS = '''
import torch
from nftkit.rewards.base import Reward, RewardOutput


class _Constant(Reward):
    value = 0.0

    def score_batch(self, images, prompts, metadata):
        return RewardOutput(torch.full((len(prompts),), self.value))


class NanReward(_Constant):
    name = "nanreward"
    value = float("nan")


class InfReward(_Constant):
    name = "infreward"
    value = float("inf")


class WrongShape(Reward):
    name = "wrongshape"

    def score_batch(self, images, prompts, metadata):
        return RewardOutput(torch.zeros(len(prompts) + 1))


class NotAReward:
    """Implements the call itself and returns a bare tensor of the wrong length."""

    name = "notareward"
    higher_is_better = True

    def __init__(self, **kwargs):
        pass

    def __call__(self, images, prompts, metadata=None):
        return torch.zeros(1, 3)
'''
ENTRY_POINTS = {
    "nanreward": "nftkit_bad_plugins:NanReward",
    "infreward": "nftkit_bad_plugins:InfReward",
    "wrongshape": "nftkit_bad_plugins:WrongShape",
    "notareward": "nftkit_bad_plugins:NotAReward",
    "importboom": "nftkit_bad_plugins_boom:Reward",
}


@dataclass
class CliResult:
    """Exit code and captured output of one CLI call."""

    code: int
    out: str
    err: str


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path):
    """Call ``nftkit ARGS`` through its console entry point, in this process, in tmp_path."""
    from nftkit.cli.main import run

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NFTKIT_DB", str(tmp_path / "default.db"))
    monkeypatch.setenv("NFTKIT_WEIGHTS_DIR", "")  # restored afterwards: --weights-dir sets it

    def call(*args: str) -> CliResult:
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["nftkit", *args])
        try:
            run()
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        return CliResult(code, out, err)

    return call


def _one_line_error(result: CliResult, code: int, *needles: str) -> str:
    """Assert a failed call printed exactly one ``error:`` line naming every needle."""
    assert result.code == code, (result.code, result.err)
    lines = [line for line in result.err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and errors[0] == lines[-1], result.err
    for needle in needles:
        assert needle in errors[0], (needle, errors[0])
    assert "Traceback" not in result.err
    assert result.out.strip() == "", result.out  # no partial results on stdout
    return errors[0]


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture(scope="module")
def plugin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An installed distribution (dist-info with entry points) of misbehaving reward plugins."""
    root = tmp_path_factory.mktemp("bad-plugins")
    (root / "nftkit_bad_plugins.py").write_text(textwrap.dedent(BAD_PLUGINS))
    (root / "nftkit_bad_plugins_boom.py").write_text(
        "raise ImportError('missing dependency of this plugin (on purpose)')\n"
    )
    info = root / "nftkit_bad_plugins-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: nftkit-bad-plugins\nVersion: 0.1\n"
    )
    lines = "".join(f"{name} = {target}\n" for name, target in ENTRY_POINTS.items())
    (info / "entry_points.txt").write_text(f"[nftkit.rewards]\n{lines}")
    return root


@pytest.fixture
def plugins(plugin_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(plugin_dir))
    return plugin_dir


@pytest.fixture
def images(tmp_path: Path) -> Path:
    """Two valid RGB PNGs."""
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(folder / name)
    return folder


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_shapes_model(
        tmp_path_factory.mktemp("bad-inputs-model"), tiny_shapes_config(8), seed=3
    )


# -- prompt files -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "needles"),
    [
        ('{"prompt": "a cat"}\n\n{"prompt": "a dog"\n', ["prompts.jsonl:3:", "invalid JSON"]),
        ('{"prompt": "a cat"}\n["a", "list"]\n', ["prompts.jsonl:2:", "expected a JSON object"]),
        (
            '{"prompt": "a cat"}\n\n\n{"text": "no prompt key"}\n',
            ["prompts.jsonl:4:", "no string 'prompt' key"],
        ),
        ('{"prompt": "a cat", "metadata": [1]}\n', ["prompts.jsonl:1:", "must be an object"]),
    ],
)
def test_malformed_jsonl_is_reported_with_its_line_number(
    cli, images: Path, tmp_path: Path, content: str, needles: list[str]
) -> None:
    manifest = tmp_path / "prompts.jsonl"
    manifest.write_text(content)
    before = _tree(tmp_path)
    result = cli("score", "--rewards", "jpeg", "--images", str(images), "--prompts", str(manifest))
    _one_line_error(result, 2, *needles)
    assert _tree(tmp_path) == before


def test_malformed_jsonl_stops_training_before_anything_is_written(
    cli, tiny_model: Path, tmp_path: Path
) -> None:
    manifest = tmp_path / "train.jsonl"
    manifest.write_text('{"prompt": "a red circle"}\n{"prompt": "a blue\n')
    out = tmp_path / "run"
    result = cli(
        "--db",
        f"sqlite:///{tmp_path / 'r.db'}",
        "train",
        "--model",
        str(tiny_model),
        "--rewards",
        "jpeg",
        "--prompts",
        str(manifest),
        "--output",
        str(out),
        *TINY_TRAIN,
    )
    _one_line_error(result, 2, "train.jsonl:2:")
    assert not out.exists() and not (tmp_path / "r.db").exists()


def test_ocr_prompt_without_quotes(cli, images: Path, tmp_path: Path) -> None:
    prompts = tmp_path / "prompts.txt"
    prompts.write_text('a sign that says "open"\na sign that says open\n')
    result = cli("score", "--rewards", "ocr", "--images", str(images), "--prompts", str(prompts))
    _one_line_error(result, 2, "no quoted target text", "'a sign that says open'")


# -- image files ------------------------------------------------------------------------------


def test_truncated_image(cli, images: Path) -> None:
    data = (images / "b.png").read_bytes()
    (images / "b.png").write_bytes(data[: len(data) // 2])
    result = cli("score", "--rewards", "jpeg", "--images", str(images), "--json")
    _one_line_error(result, 2, "cannot read image", "b.png")


def test_non_image_file_with_an_image_name(cli, images: Path) -> None:
    (images / "c.jpg").write_text("this is a text file, not a JPEG\n")
    result = cli("score", "--rewards", "jpeg", "--images", str(images), "--json")
    _one_line_error(result, 2, "cannot read image", "c.jpg")


def test_grayscale_rgba_16bit_and_palette_images_are_converted(cli, tmp_path: Path) -> None:
    folder = tmp_path / "odd"
    folder.mkdir()
    rng = np.random.default_rng(1)
    gray = rng.integers(1, 255, (24, 24), dtype=np.uint8)
    rgb = np.repeat(gray[..., None], 3, axis=2)
    Image.fromarray(rgb).save(folder / "a_rgb.png")
    Image.fromarray(gray).save(folder / "b_gray.png")
    Image.fromarray(gray.astype(np.uint16) * 257).save(folder / "c_gray16.png")
    Image.fromarray(np.dstack([rgb, np.full_like(gray, 255)])).save(folder / "d_rgba.png")
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE).save(folder / "e_palette.png")
    with Image.open(folder / "c_gray16.png") as im:
        assert im.mode.startswith("I")  # really a 16-bit file
    result = cli("score", "--rewards", "jpeg", "--images", str(folder), "--json")
    assert result.code == 0, result.err
    rows = {
        Path(r["image"]).name: r["scores"]["jpeg"] for r in map(json.loads, result.out.splitlines())
    }
    assert len(rows) == 5 and all(np.isfinite(list(rows.values())))
    # the same pixels in another container give the same score: converted, not mangled
    assert rows["b_gray.png"] == rows["c_gray16.png"] == rows["d_rgba.png"] == rows["a_rgb.png"]


# -- rewards and plugins ----------------------------------------------------------------------


@pytest.mark.parametrize(("name", "shown"), [("nanreward", "nan"), ("infreward", "inf")])
def test_non_finite_reward(cli, plugins: Path, images: Path, name: str, shown: str) -> None:
    result = cli("score", "--rewards", name, "--images", str(images), "--json")
    _one_line_error(result, 1, f"reward '{name}' returned {shown} for sample 0")


def test_non_finite_reward_fails_the_training_run_cleanly(
    cli, plugins: Path, tiny_model: Path, tmp_path: Path
) -> None:
    db = f"sqlite:///{tmp_path / 'r.db'}"
    out = tmp_path / "run"
    result = cli(
        "--db",
        db,
        "train",
        "--model",
        str(tiny_model),
        "--rewards",
        "jpeg,nanreward",
        "--prompts",
        "shapes-train",
        "--output",
        str(out),
        *TINY_TRAIN,
    )
    _one_line_error(result, 1, "reward 'nanreward' returned nan")
    assert not (out / "checkpoints").exists() and not (out / "lora").exists()
    (run,) = ResultsStore(db).list_runs(kind="train")
    assert run.status == "failed"  # closed, not left "running"


@pytest.mark.parametrize(
    ("name", "needles"),
    [
        ("wrongshape", ["reward 'wrongshape' returned scores of shape (3,), expected (2,)"]),
        # not a Reward subclass: the registry's contract refuses it before it is called
        (
            "notareward",
            ["plugin 'notareward'", "is invalid", "not a subclass of nftkit.rewards.base.Reward"],
        ),
    ],
)
def test_reward_with_wrong_output(
    cli, plugins: Path, images: Path, name: str, needles: list[str]
) -> None:
    result = cli("score", "--rewards", name, "--images", str(images), "--json")
    _one_line_error(result, 1, *needles)


def test_plugin_raising_at_import(cli, plugins: Path, images: Path) -> None:
    result = cli("score", "--rewards", "importboom", "--images", str(images))
    _one_line_error(result, 1, "plugin 'importboom'", "failed to load", "on purpose")
    listing = cli("rewards", "list", "--json")
    assert listing.code == 0, listing.err
    rows = {row["name"]: row for row in json.loads(listing.out)}
    assert rows["importboom"]["status"] == "failed" and rows["jpeg"]["status"] == "ok"


# -- names ------------------------------------------------------------------------------------


def test_unknown_reward_suggests_the_closest(cli, images: Path) -> None:
    result = cli("score", "--rewards", "jpeg,pickscor", "--images", str(images))
    _one_line_error(result, 2, "unknown reward 'pickscor'", "Did you mean: pickscore")


def test_unknown_suite_suggests_the_closest(cli, tiny_model: Path, tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'r.db'}"
    result = cli("--db", db, "eval", "--model", str(tiny_model), "--suite", "shapez")
    _one_line_error(result, 2, "unknown evaluator 'shapez'", "Did you mean: shapes")
    assert not (tmp_path / "r.db").exists() or ResultsStore(db).list_runs() == []


def test_unknown_preset_suggests_the_closest(cli, tmp_path: Path) -> None:
    result = cli("train", "--preset", "shape", "--output", str(tmp_path / "run"))
    _one_line_error(result, 2, "unknown preset 'shape'", "Did you mean: shapes")
    assert not (tmp_path / "run").exists()


# -- paths, databases, weights ----------------------------------------------------------------


def test_missing_checkpoint_path(cli, tmp_path: Path) -> None:
    missing = tmp_path / "runs" / "never-trained"
    _one_line_error(
        cli("eval", "--model", str(missing), "--suite", "shapes"),
        2,
        "model not found",
        str(missing),
    )
    result = cli("export", str(missing), "--output", str(tmp_path / "exported"))
    _one_line_error(result, 2, str(missing))
    assert not (tmp_path / "exported").exists()
    out = tmp_path / "run"
    result = cli(
        "train",
        "--model",
        str(missing),
        "--rewards",
        "jpeg",
        "--prompts",
        "shapes-train",
        "--output",
        str(out),
        *TINY_TRAIN,
    )
    _one_line_error(result, 2, "model not found")
    assert not out.exists()


def test_unreachable_database(cli, tiny_model: Path, tmp_path: Path) -> None:
    result = cli("--db", UNREACHABLE_PG, "leaderboard")
    line = _one_line_error(result, 1, "cannot open results database", "127.0.0.1:1", "***")
    assert "s3cret" not in line
    out = tmp_path / "run"
    result = cli(
        "--db",
        UNREACHABLE_PG,
        "train",
        "--model",
        str(tiny_model),
        "--rewards",
        "jpeg",
        "--prompts",
        "shapes-train",
        "--output",
        str(out),
        *TINY_TRAIN,
    )
    _one_line_error(result, 1, "cannot open results database")
    assert not out.exists()


def test_weights_directory_in_the_wrong_format(cli, images: Path, tmp_path: Path) -> None:
    weights = tmp_path / "weights"
    (weights / "clipscore").mkdir(parents=True)
    (weights / "clipscore" / "config.json").write_text("{ not json")
    (weights / "clipscore" / "model.safetensors").write_bytes(b"\x80\x04pickle, not safetensors")
    (weights / "aesthetic").mkdir()
    (weights / "aesthetic" / "weights.pkl").write_bytes(b"\x80\x04")
    before = _tree(tmp_path)
    for reward in ("clipscore", "aesthetic"):
        result = cli(
            "--weights-dir", str(weights), "score", "--rewards", reward, "--images", str(images)
        )
        _one_line_error(result, 1, f"weights for reward '{reward}'", str(weights / reward))
    assert _tree(tmp_path) == before


def test_model_folder_in_the_wrong_format(cli, tiny_model: Path, tmp_path: Path) -> None:
    broken = tmp_path / "model"
    broken.mkdir()
    (broken / "config.json").write_text((tiny_model / "config.json").read_text())
    (broken / "model.safetensors").write_bytes(b"PK\x03\x04 a zip, e.g. torch.save output")
    result = cli("eval", "--model", str(broken), "--suite", "shapes", "--limit", "1")
    _one_line_error(result, 1, str(broken), "not in the expected format", "safetensors")
    run_dir = tmp_path / "trained"
    run_dir.mkdir()
    (run_dir / "nftkit_model.json").write_text("{'base': 'shapes-base'}")
    result = cli("eval", "--model", str(run_dir), "--suite", "shapes", "--limit", "1")
    _one_line_error(result, 1, "nftkit_model.json is not valid JSON")


# -- round two: typed options, checks before any work, damaged resumes ----------------------


def _train_args(model: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--model",
        str(model),
        "--rewards",
        "jpeg",
        "--prompts",
        "shapes-train",
        "--output",
        str(out),
        *TINY_TRAIN,
        *extra,
    ]


def _nothing_written(cli, tmp_path: Path, args: list[str], code: int, *needles: str) -> str:
    """Run ``args``; assert one error line and that no file under tmp_path appeared or changed."""
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")}
    line = _one_line_error(cli(*args), code, *needles)
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("*")} == before
    return line


@pytest.mark.parametrize(
    ("item", "needles"),
    [
        ("lr=abc", ["--set lr=abc: expected a float"]),
        ("lr=inf", ["--set lr=inf: expected a finite float"]),
        ("num_steps=1.5", ["--set num_steps=1.5: expected an integer"]),
        ("lrr=0.1", ["unknown NFT option 'lrr'", "did you mean 'lr'"]),
        ("solver=rk4", ["--set solver=rk4", "expected one of: dpm2, euler, sde"]),
        ("std_mode=local", ["expected one of: global, group"]),
        ("adam_betas=0.9", ["--set adam_betas=0.9: expected 2 comma-separated floats"]),
        ("max_train_timesteps=many", ["expected an integer or null"]),
        ("noise_level=0.5", ["'noise_level' is an option of GRPO, not of NFT"]),
        ("lr", ["--set expects key=value, got 'lr'"]),
    ],
)
def test_set_values_are_parsed_to_the_option_type(
    cli, tiny_model: Path, tmp_path: Path, item: str, needles: list[str]
) -> None:
    out = tmp_path / "run"
    _nothing_written(cli, tmp_path, _train_args(tiny_model, out, "--set", item), 2, *needles)
    assert not out.exists()


def test_set_value_for_a_grpo_preset_is_checked_against_grpo_options(cli, tmp_path: Path) -> None:
    args = [
        "train",
        "--preset",
        "shapes-grpo",
        "--output",
        str(tmp_path / "run"),
        "--quiet",
        "--set",
        "beta=0.1",
    ]
    _nothing_written(cli, tmp_path, args, 2, "'beta' is an option of NFT, not of GRPO")


@pytest.mark.parametrize(
    ("toml", "needles"),
    [
        ('[nft]\nlr = "abc"\n', ["run.toml: lr = 'abc': expected a float"]),
        ("[nft]\nbta = 0.5\n", ["unknown NFT option 'bta'", "did you mean 'beta'"]),
        ("shift = true\n", ["shift = True: expected a float"]),
        ("[nft\nlr = 1\n", ["invalid TOML"]),
        (
            '[[stages]]\nepochs = 1\nrewards = "pickscor"\nprompts = "shapes-train"\n',
            ["unknown reward 'pickscor'", "Did you mean: pickscore"],
        ),
    ],
)
def test_config_file_values_are_typed_and_checked(
    cli, tiny_model: Path, tmp_path: Path, toml: str, needles: list[str]
) -> None:
    config = tmp_path / "run.toml"
    config.write_text(toml)
    out = tmp_path / "run"
    _nothing_written(
        cli, tmp_path, _train_args(tiny_model, out, "--config", str(config)), 2, *needles
    )


def test_unknown_reward_fails_before_the_progress_bar(
    cli, tiny_model: Path, tmp_path: Path
) -> None:
    args = [a for a in _train_args(tiny_model, tmp_path / "run") if a != "--quiet"]
    args[args.index("jpeg")] = "jpeg,pickscor"
    _nothing_written(cli, tmp_path, args, 2, "unknown reward 'pickscor'", "Did you mean: pickscore")
    # _one_line_error already checked that the error is the only line: no bar was drawn


@pytest.fixture
def offline_hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """HF_HUB_OFFLINE with an empty hub cache, and no prompt download allowed."""
    import urllib.request

    cache = tmp_path / "hf-home"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(cache))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("NFTKIT_CACHE", str(tmp_path / "nftkit-cache"))

    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(urllib.request, "urlopen", no_download)
    return cache


def test_missing_hub_model_is_reported_before_the_prompt_download(
    cli, offline_hub: Path, tmp_path: Path
) -> None:
    line = _nothing_written(
        cli,
        tmp_path,
        ["eval", "--model", "does/not-exist", "--suite", "geneval"],
        1,
        "model 'does/not-exist' is not in the Hugging Face cache",
        str(offline_hub / "hub"),
        "huggingface-cli download does/not-exist",
    )
    assert "prompt" not in line
    assert not (tmp_path / "nftkit-cache").exists() and not (tmp_path / "default.db").exists()


def test_missing_hub_model_stops_training_before_anything_loads(
    cli, offline_hub: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    args = [
        "train",
        "--model",
        "someone/sd3-missing",
        "--rewards",
        "jpeg",
        "--prompts",
        "shapes-train",
        "--output",
        str(out),
        *TINY_TRAIN,
    ]
    _nothing_written(cli, tmp_path, args, 1, "'someone/sd3-missing' is not in the Hugging Face")
    assert not out.exists()


NO_CUDA = pytest.mark.skipif(
    __import__("torch").cuda.is_available(), reason="this machine has CUDA"
)


@NO_CUDA
def test_cuda_device_without_cuda_fails_first_in_train(
    cli, tiny_model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    args = _train_args(tiny_model, out, "--device", "cuda")
    _nothing_written(cli, tmp_path, args, 2, "--device cuda: CUDA is not available", "--device cpu")


@NO_CUDA
def test_cuda_device_without_cuda_fails_first_in_eval(
    cli, tiny_model: Path, tmp_path: Path
) -> None:
    args = [
        "eval",
        "--model",
        str(tiny_model),
        "--suite",
        "shapes",
        "--device",
        "cuda:0",
        "--output",
        str(tmp_path / "ev"),
    ]
    _nothing_written(cli, tmp_path, args, 2, "--device cuda:0: CUDA is not available")


@NO_CUDA
def test_cuda_device_without_cuda_fails_first_in_score(cli, images: Path, tmp_path: Path) -> None:
    args = ["score", "--rewards", "jpeg", "--images", str(images), "--device", "cuda"]
    _nothing_written(cli, tmp_path, args, 2, "CUDA is not available")


def test_device_name_that_is_not_a_device(cli, images: Path, tmp_path: Path) -> None:
    args = ["score", "--rewards", "jpeg", "--images", str(images), "--device", "gpu"]
    _nothing_written(cli, tmp_path, args, 2, "--device gpu: not a torch device")


def test_output_that_is_a_file(cli, tiny_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    out.write_text("not a folder\n")
    _nothing_written(cli, tmp_path, _train_args(tiny_model, out), 2, "a file is in the way")


def test_output_below_a_file(cli, tiny_model: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("x\n")
    args = [
        "eval",
        "--model",
        str(tiny_model),
        "--suite",
        "shapes",
        "--output",
        str(blocker / "sub" / "ev"),
    ]
    _nothing_written(cli, tmp_path, args, 2, f"{blocker} is a file, so the folder cannot")


def test_missing_training_prompt_file(cli, tiny_model: Path, tmp_path: Path) -> None:
    args = _train_args(tiny_model, tmp_path / "run")
    args[args.index("shapes-train")] = str(tmp_path / "nope.txt")
    _nothing_written(cli, tmp_path, args, 2, "nope.txt: no such file, and not a named prompt set")


def test_named_training_prompt_set_that_is_not_there(
    cli, tiny_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("NFTKIT_PROMPTS_DIR", raising=False)
    args = _train_args(tiny_model, tmp_path / "run")
    args[args.index("shapes-train")] = "geneval-train"
    _nothing_written(
        cli,
        tmp_path,
        args,
        2,
        "training prompt set 'geneval-train' not found",
        "NFTKIT_PROMPTS_DIR",
    )


def test_missing_eval_prompt_file(cli, tiny_model: Path, tmp_path: Path) -> None:
    args = [
        "eval",
        "--model",
        str(tiny_model),
        "--suite",
        "drawbench",
        "--prompts",
        str(tmp_path / "p.txt"),
    ]
    _nothing_written(cli, tmp_path, args, 2, "--prompts", "p.txt: no such file or folder")


def test_missing_images_folder(cli, tmp_path: Path) -> None:
    args = ["score", "--rewards", "jpeg", "--images", str(tmp_path / "imgs")]
    _nothing_written(cli, tmp_path, args, 2, "--images", "imgs: no such file or folder")


def test_images_given_as_a_file(cli, images: Path, tmp_path: Path) -> None:
    args = ["score", "--rewards", "jpeg", "--images", str(images / "a.png")]
    _nothing_written(cli, tmp_path, args, 2, "a.png: expected a folder, found a file")


def test_bad_weight_in_a_reward_spec(cli, images: Path, tmp_path: Path) -> None:
    args = ["score", "--rewards", "jpeg=heavy", "--images", str(images)]
    _nothing_written(cli, tmp_path, args, 2, "bad weight 'heavy'")


def test_training_folder_without_its_lora_file(cli, tmp_path: Path) -> None:
    run_dir = tmp_path / "trained"
    run_dir.mkdir()
    (run_dir / "nftkit_model.json").write_text(
        json.dumps(
            {
                "family": "shapes",
                "base": "shapes-base",
                "lora": {"rank": 2, "alpha": 4, "targets": ["x"], "file": "lora/a.safetensors"},
            }
        )
    )
    args = ["eval", "--model", str(run_dir), "--suite", "shapes", "--limit", "1"]
    _nothing_written(cli, tmp_path, args, 1, "LoRA weights missing", "lora/a.safetensors")


def test_shapes_model_folder_without_weights(cli, tiny_model: Path, tmp_path: Path) -> None:
    broken = tmp_path / "model"
    broken.mkdir()
    (broken / "config.json").write_text((tiny_model / "config.json").read_text())
    out = tmp_path / "run"
    _nothing_written(cli, tmp_path, _train_args(broken, out), 1, "model.safetensors is missing")


def test_diffusers_folder_of_an_unknown_pipeline(cli, tmp_path: Path) -> None:
    folder = tmp_path / "pipe"
    folder.mkdir()
    (folder / "model_index.json").write_text('{"_class_name": "KandinskyPipeline"}')
    args = ["eval", "--model", str(folder), "--suite", "shapes", "--limit", "1"]
    _nothing_written(cli, tmp_path, args, 2, str(folder), "no installed policy family", "--family")


def test_diffusers_folder_missing_a_component(cli, tmp_path: Path) -> None:
    folder = tmp_path / "pipe"
    (folder / "vae").mkdir(parents=True)
    (folder / "model_index.json").write_text(
        json.dumps(
            {
                "_class_name": "FluxPipeline",
                "vae": ["diffusers", "AutoencoderKL"],
                "transformer": ["diffusers", "FluxTransformer2DModel"],
            }
        )
    )
    args = ["eval", "--model", str(folder), "--suite", "shapes", "--limit", "1"]
    _nothing_written(cli, tmp_path, args, 1, str(folder), "transformer")


def test_serve_unknown_reward_fails_before_loading(cli, tmp_path: Path) -> None:
    _nothing_written(
        cli,
        tmp_path,
        ["serve", "jpeg,pickscor", "--port", "1"],
        2,
        "unknown reward 'pickscor'",
        "Did you mean: pickscore",
    )


def test_preset_of_the_other_algorithm(cli, tmp_path: Path) -> None:
    args = ["train", "--preset", "shapes", "--algo", "grpo", "--output", str(tmp_path / "run")]
    _nothing_written(cli, tmp_path, args, 2, "preset 'shapes' trains with --algo nft, not grpo")


def test_unknown_algorithm(cli, tmp_path: Path) -> None:
    args = ["train", "--preset", "shapes", "--algo", "ppo", "--output", str(tmp_path / "run")]
    _nothing_written(cli, tmp_path, args, 2, "unknown --algo 'ppo'", "nft, grpo")


def test_train_without_preset_or_model(cli, tmp_path: Path) -> None:
    args = ["train", "--rewards", "jpeg", "--output", str(tmp_path / "run")]
    _nothing_written(cli, tmp_path, args, 2, "give --preset NAME, or all of --model")


def test_zero_steps(cli, tiny_model: Path, tmp_path: Path) -> None:
    args = _train_args(tiny_model, tmp_path / "run")
    args[args.index("--steps") + 1] = "0"
    _nothing_written(cli, tmp_path, args, 2, "--epochs must be >= 1")


def test_eval_without_model_or_images(cli, tmp_path: Path) -> None:
    _nothing_written(
        cli,
        tmp_path,
        ["eval", "--suite", "shapes"],
        2,
        "give --model MODEL to generate images, or --images DIR",
    )


def test_eval_guidance_scale_zero(cli, tiny_model: Path, tmp_path: Path) -> None:
    args = ["eval", "--model", str(tiny_model), "--suite", "shapes", "--cfg", "0"]
    _nothing_written(cli, tmp_path, args, 2, "--cfg must be > 0")


def test_resume_with_every_checkpoint_damaged_is_an_error_not_a_restart(
    cli, tiny_model: Path, tmp_path: Path
) -> None:
    out = tmp_path / "run"
    db = f"sqlite:///{tmp_path / 'r.db'}"
    args = ["--db", db, *_train_args(tiny_model, out)]
    assert cli(*args).code == 0
    (step,) = (out / "checkpoints").iterdir()
    (step / "trainer_state.json").write_text("{ truncated")
    history = (out / "history.jsonl").read_text()
    (run,) = ResultsStore(db).list_runs(kind="train")
    result = cli(*args, "--resume")
    _one_line_error(result, 1, "no readable checkpoint", "trainer_state.json", "--output")
    assert (out / "history.jsonl").read_text() == history  # nothing trained from scratch
    assert not list((out / "checkpoints").glob("step-*"))  # set aside, not overwritten
    assert [r.id for r in ResultsStore(db).list_runs(kind="train")] == [run.id]


@pytest.mark.parametrize(
    ("failure", "needles"),
    [
        ("missing", ["not on the hub", "no such repository"]),
        ("network", ["the hub cannot be reached", "ConnectionError", "huggingface-cli download"]),
    ],
)
def test_uncached_hub_model_online_is_looked_up_before_any_download(
    cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failure: str, needles: list[str]
) -> None:
    import urllib.request

    from huggingface_hub.errors import RepositoryNotFoundError

    from nftkit.cli import validation

    def lookup(repo_id: str) -> None:
        assert repo_id == "does/not-exist"
        if failure == "network":
            raise ConnectionError("Name or service not known")
        error = RepositoryNotFoundError.__new__(RepositoryNotFoundError)
        error.args = ("404 Client Error",)
        raise error

    def no_download(*args: object, **kwargs: object) -> None:
        raise AssertionError("a download was attempted")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("NFTKIT_CACHE", str(tmp_path / "nftkit-cache"))
    monkeypatch.setattr(validation, "hub_model_info", lookup)
    monkeypatch.setattr(urllib.request, "urlopen", no_download)
    _nothing_written(
        cli,
        tmp_path,
        ["eval", "--model", "does/not-exist", "--suite", "geneval"],
        1,
        "model 'does/not-exist'",
        *needles,
    )
