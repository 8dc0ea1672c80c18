"""The ``nftkit.policies`` group: listing, resolution by model_index.json, --family, plugins."""

from __future__ import annotations

import json
import os
import re
import textwrap
from pathlib import Path

import pytest

from nftkit.errors import UnknownPluginError, UsageError
from nftkit.policies.families import family_class, family_for_hub_id
from nftkit.policies.loading import describe_model
from tests.conftest import REPO_ROOT, run_cli
from tests.plugin_install import pip_install_target

EXAMPLE = REPO_ROOT / "examples" / "nftkit-toyflow"
BUILTIN = {"shapes", "sd3", "flux", "sana", "qwen-image"}


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A --target folder with the example family and a family plugin that fails on import."""
    target = tmp_path_factory.mktemp("family-plugins")
    pip_install_target(EXAMPLE, target)
    broken = tmp_path_factory.mktemp("broken-family")
    (broken / "nftkit_broken_family").mkdir()
    (broken / "nftkit_broken_family" / "__init__.py").write_text(
        "raise ImportError('this family is broken on purpose')\n"
    )
    (broken / "pyproject.toml").write_text(
        textwrap.dedent("""
        [build-system]
        requires = ["setuptools>=70"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "nftkit-broken-family"
        version = "0.0.1"
        [project.entry-points."nftkit.policies"]
        brokenfam = "nftkit_broken_family:Policy"
        [tool.setuptools]
        packages = ["nftkit_broken_family"]
    """)
    )
    pip_install_target(broken, target)
    return target


def _env(plugin_path: Path) -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join([str(plugin_path), str(REPO_ROOT)])}


def test_builtin_families_listed_ok() -> None:
    result = run_cli("policies", "list", "--json")
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert set(rows) >= BUILTIN
    assert all(rows[name]["status"] == "ok" for name in BUILTIN)


def test_unknown_family_suggests_the_closest() -> None:
    with pytest.raises(UnknownPluginError, match="Did you mean: flux"):
        family_class("flx")


def test_hub_ids_and_folders_resolve_to_families(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    assert family_for_hub_id("black-forest-labs/FLUX.1-dev") == "flux"
    assert family_for_hub_id("stabilityai/stable-diffusion-3.5-large") == "sd3"
    assert family_for_hub_id("someone/some-model") == "sd3"  # the pre-family default
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    assert describe_model(folder) == {"family": "flux", "base": str(folder)}
    assert describe_model(folder, family="sd3")["family"] == "sd3"  # --family overrides
    (folder / "model_index.json").write_text(json.dumps({"_class_name": "NoSuchPipeline"}))
    with pytest.raises(UsageError, match="--family"):
        describe_model(folder)


def test_family_presets_sample_on_the_family_scheduler_grid() -> None:
    """No preset forces a shifted-linspace grid: each trains on its policy's own time_grid."""
    from nftkit.train.presets_families import FAMILY_PRESETS

    for name, preset in FAMILY_PRESETS.items():
        assert preset.train_config().shift is None, name


def test_third_party_family_plugin(plugin_path: Path, tmp_path: Path) -> None:
    env = _env(plugin_path)
    result = run_cli("policies", "list", "--json", env=env)
    assert result.returncode == 0, result.stderr
    rows = {row["name"]: row for row in json.loads(result.stdout)}
    assert rows["toyflow"]["status"] == "ok"
    assert rows["toyflow"]["distribution"] == "nftkit-toyflow"
    assert rows["brokenfam"]["status"] == "failed"
    assert "broken on purpose" in rows["brokenfam"]["error"]
    assert all(rows[name]["status"] == "ok" for name in BUILTIN)

    model = tmp_path / "toy"
    made = run_cli("debug", "make-tiny", "--family", "toyflow", str(model), env=env)
    assert made.returncode == 0, made.stderr
    (tmp_path / "p.txt").write_text("a red cube\na blue ball\n")
    trained = run_cli(
        "--db",
        f"sqlite:///{tmp_path / 'r.db'}",
        "train",
        "--model",
        str(model),
        "--rewards",
        "jpeg",
        "--prompts",
        str(tmp_path / "p.txt"),
        "--output",
        str(tmp_path / "run"),
        "--steps",
        "1",
        "--quiet",
        "--set",
        "prompts_per_epoch=2",
        "--set",
        "group_size=2",
        "--set",
        "num_steps=2",
        "--set",
        "lora_rank=2",
        "--set",
        "lora_alpha=2",
        env=env,
    )
    assert trained.returncode == 0, trained.stderr
    info = json.loads((tmp_path / "run" / "nftkit_model.json").read_text())
    assert info["family"] == "toyflow" and info["lora"]["targets"] == ["inp", "mid", "out"]
    wrong = run_cli("debug", "make-tiny", "--family", "toyflw", str(tmp_path / "x"), env=env)
    assert wrong.returncode == 2 and "Did you mean: toyflow" in wrong.stderr


def test_sana_preset_resolves_to_the_sana_family_and_plans() -> None:
    from nftkit.train.presets import get_preset

    preset = get_preset("sana-pickscore")
    assert family_for_hub_id(preset.model) == "sana"
    assert preset.policy == {"resolution": 1024, "gradient_checkpointing": True}
    config = preset.train_config()
    assert (config.sample_batch_size, config.train_batch_size, config.beta) == (9, 9, 1.0)
    assert (config.lora_rank, config.lora_alpha, config.num_steps) == (32, 64, 10)
    for setting in ("1024 px", "9/9", "PickScore", "beta 1.0"):
        assert setting in preset.description
    result = run_cli("train", "--preset", "sana-pickscore", "--plan", "--processes", "8")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[-1].startswith("estimated peak GPU memory per process: ")
    rows = dict(re.split(r"\s{2,}", line, maxsplit=1) for line in lines[1:-1])
    assert result.stdout.startswith("plan for sana-pickscore (nft)")
    assert rows["per-GPU train batch"] == "9"
    assert rows["gradient accumulation"] == "16"  # 1,152 samples / (8 x 9)
    assert rows["samples per optimizer step"] == "1152"


def test_table_title_names_policy_families() -> None:
    result = run_cli("policies", "list")
    assert result.returncode == 0, result.stderr
    assert "nftkit policy families" in result.stdout
