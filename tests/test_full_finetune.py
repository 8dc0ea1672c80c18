"""Full-parameter training (``--set finetune=full``) in one process, on the tiny FLUX pipeline.

The trained weights are the transformer's own; "old" and the reference are swapped-in copies
(``nftkit.train.full_weights``). Checked: exact swaps, the typed option and its refusals, a
2-epoch run whose weights move, checkpoints of plain safetensors, bit-exact resume, the reload of
the run as a policy and ``nftkit export --merged`` as a FluxPipeline. The 2-process FSDP run is
in tests/test_fsdp_cpu.py.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from nftkit.cli.main import app
from nftkit.cli.validation import check_model
from nftkit.config_values import typed_train_options
from nftkit.errors import UsageError
from nftkit.policies.loading import load_policy
from nftkit.policies.tiny_flux import build_tiny_flux
from nftkit.train.algos import make_config
from nftkit.train.fsdp import ModuleState, _require_fsdp2, keep_present_block_classes
from nftkit.train.full_checkpoint import flatten_optimizer, unflatten_optimizer
from nftkit.train.full_weights import FullWeights
from nftkit.train.presets import get_preset
from tests.family_helpers import PROMPTS, invoke

TINY_FULL = [
    "--quiet",
    "--checkpoint-every",
    "1",
    *("--set", "prompts_per_epoch=2", "--set", "group_size=4", "--set", "num_steps=3"),
    *("--set", "sample_batch_size=8", "--set", "train_batch_size=4"),
    *("--set", "max_train_timesteps=2", "--set", "lr=0.001", "--set", "seed=5"),
    *("--set", "keep_checkpoints=3", "--set", "finetune=full"),
]
FILES = ("model_default", "model_old", "ema", "optimizer")


def test_swaps_are_exact_nestable_and_restore_the_trained_weights() -> None:
    base = [torch.randn(3, 4), torch.randn(5)]
    params = [p.clone() for p in base]
    weights = FullWeights(params)
    with torch.no_grad():
        for p in params:
            p.add_(1.0)  # "training"
    trained = [p.clone() for p in params]
    with weights.use("old"):
        assert all(torch.equal(p, b) for p, b in zip(params, base, strict=True))
        with weights.use(None), weights.use(None):
            assert all(torch.equal(p, b) for p, b in zip(params, base, strict=True))
        with weights.use("default"):
            assert all(torch.equal(p, t) for p, t in zip(params, trained, strict=True))
    assert all(torch.equal(p, t) for p, t in zip(params, trained, strict=True))
    weights.soft_update_old(0.25)
    expected = [0.25 * b + 0.75 * t for b, t in zip(base, trained, strict=True)]
    assert all(torch.allclose(o, e) for o, e in zip(weights.copies["old"], expected, strict=True))
    bare = FullWeights([torch.zeros(2)], keep_reference=False)
    with pytest.raises(ValueError, match="ref_weight"), bare.use(None):
        pass


def test_finetune_is_a_typed_option_of_nft_and_presets_only() -> None:
    assert typed_train_options("nft", {}, None, ["finetune=full"])["finetune"] == "full"
    assert typed_train_options("nft", {"finetune": "full"}, "run.toml", [])["finetune"] == "full"
    with pytest.raises(UsageError, match="lora, full"):
        typed_train_options("nft", {}, None, ["finetune=partial"])
    assert get_preset("flux-dev-pickscore").train_config(finetune="full").finetune == "full"
    assert make_config("nft", {}).finetune == "lora"
    with pytest.raises(UsageError, match="--algo nft"):
        make_config("grpo", {"finetune": "full"})


def test_module_state_and_optimizer_state_round_trip_exactly() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    params = list(model.parameters())
    state = ModuleState(model, params, sharded=False)
    other = [torch.randn_like(p, dtype=torch.float64) for p in params]
    gathered = state.gather(other)
    assert gathered["0.weight"].dtype == torch.float64 and torch.equal(gathered["1.bias"], other[3])
    into = [torch.zeros_like(p) for p in params]
    state.scatter(state.gather(), into=into)
    assert all(torch.equal(a, b) for a, b in zip(into, params, strict=True))
    optimizer = torch.optim.AdamW(params, lr=0.1)
    model(torch.randn(5, 3)).sum().backward()
    optimizer.step()
    tensors, meta = flatten_optimizer(state.optimizer_state(optimizer))
    assert sorted(tensors)[0] == "0.bias#exp_avg" and json.dumps(meta)
    fresh = torch.optim.AdamW(params, lr=0.5)
    state.load_optimizer_state(fresh, unflatten_optimizer(tensors, json.loads(json.dumps(meta))))
    assert fresh.param_groups[0]["lr"] == 0.1
    for a, b in zip(fresh.state.values(), optimizer.state.values(), strict=True):
        assert all(torch.equal(a[k], b[k]) for k in ("exp_avg", "exp_avg_sq", "step"))


def test_fsdp_block_classes_are_narrowed_to_the_model_and_fsdp1_is_refused() -> None:
    transformer = build_tiny_flux().transformer
    listed = (
        "FluxTransformerBlock,FluxSingleTransformerBlock,JointTransformerBlock,SanaTransformerBlock"
    )
    plugin = SimpleNamespace(transformer_cls_names_to_wrap=listed.split(","))
    kept = keep_present_block_classes(plugin, transformer)
    assert kept == ["FluxTransformerBlock", "FluxSingleTransformerBlock"]
    with pytest.raises(UsageError, match="FluxSingleTransformerBlock"):
        keep_present_block_classes(
            SimpleNamespace(transformer_cls_names_to_wrap=["JointTransformerBlock"]), transformer
        )
    with pytest.raises(UsageError, match="fsdp_version: 2"):
        _require_fsdp2(SimpleNamespace(fsdp_version=1))


def _train(root: Path, out: Path, *extra: str) -> Path:
    invoke(
        *("--db", f"sqlite:///{root / 'runs.db'}", "train", "--model", str(root / "dev")),
        *("--rewards", "jpeg", "--prompts", str(root / "prompts.txt"), "--output", str(out)),
        *TINY_FULL,
        *extra,
    )
    return out


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("full")
    (root / "prompts.txt").write_text("\n".join(PROMPTS) + "\n")
    invoke("debug", "make-tiny", "--family", "flux", str(root / "dev"))
    return root


@pytest.fixture(scope="module")
def run(root: Path) -> Path:
    return _train(root, root / "run", "--epochs", "2")


def test_full_run_trains_every_weight_and_writes_safetensors_only(root: Path, run: Path) -> None:
    base = load_file(str(root / "dev" / "transformer" / "diffusion_pytorch_model.safetensors"))
    step = run / "checkpoints" / "step-0000002"
    saved = {name: load_file(str(step / f"{name}.safetensors")) for name in FILES[:3]}
    for name in FILES[:3]:
        assert set(saved[name]) == set(base)
    moved = [k for k in base if not torch.equal(saved["model_default"][k], base[k])]
    assert len(moved) == len(base)  # every tensor of the transformer was trained
    assert any(not torch.equal(saved["model_old"][k], saved["model_default"][k]) for k in base)
    assert any(not torch.equal(saved["ema"][k], saved["model_default"][k]) for k in base)
    suffixes = {p.suffix for p in run.rglob("*") if p.is_file()}
    assert suffixes <= {".safetensors", ".json", ".jsonl", ".png", ".lock", ""}, suffixes
    assert not list(step.glob("adapter_*"))
    info = json.loads((run / "nftkit_model.json").read_text())
    assert "lora" not in info and info["full"]["file"] == "full/transformer.safetensors"
    exported = load_file(str(run / "full" / "transformer.safetensors"))
    assert all(torch.equal(exported[k], saved["ema"][k]) for k in base)
    check_model(str(run))  # what `nftkit eval --model RUN` checks first
    reloaded = load_policy(run).model.state_dict()
    assert all(torch.equal(reloaded[k], saved["ema"][k]) for k in base)


def test_resume_of_a_full_run_is_bit_exact(root: Path, run: Path) -> None:
    half = root / "half"
    shutil.copytree(run, half)
    shutil.rmtree(half / "checkpoints" / "step-0000002")
    _train(root, half, "--epochs", "2", "--resume")
    for name in FILES:
        a = load_file(str(run / "checkpoints" / "step-0000002" / f"{name}.safetensors"))
        b = load_file(str(half / "checkpoints" / "step-0000002" / f"{name}.safetensors"))
        assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a), name
    result = CliRunner().invoke(
        app,
        [
            *("--db", f"sqlite:///{root / 'runs.db'}", "train", "--model", str(root / "dev")),
            *("--rewards", "jpeg", "--prompts", str(root / "prompts.txt"), "--output", str(half)),
            *TINY_FULL[:-2],
            *("--epochs", "3", "--resume"),
        ],
    )
    assert result.exit_code != 0 and "finetune=full" in f"{result.output} {result.exception}"


def test_export_of_a_full_run_is_a_pipeline_and_lora_export_says_merged(
    root: Path, run: Path
) -> None:
    result = CliRunner().invoke(app, ["export", str(run), "-o", str(root / "lora-out")])
    assert result.exit_code != 0 and "--merged" in f"{result.output} {result.exception}"
    out = root / "merged"
    invoke("export", str(run), "-o", str(out), "--merged", "--dtype", "float32")
    from diffusers import FluxPipeline

    transformer = FluxPipeline.from_pretrained(str(out)).transformer.state_dict()
    ema = load_file(str(run / "full" / "transformer.safetensors"))
    assert set(transformer) == set(ema)
    assert all(torch.equal(transformer[k], ema[k]) for k in ema)
