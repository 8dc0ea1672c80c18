"""Resumable evaluation (an eval killed half way and rerun), seeds, CFG and LoRA folders."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from nftkit.errors import UsageError
from nftkit.eval import EvalSettings, generate, run_evaluation
from nftkit.evaluators.geneval import GenevalEvaluator
from nftkit.policies.sd3 import SD3Policy
from nftkit.results.store import ResultsStore


class Killed(Exception):
    """Stands in for a crash half way through an evaluation."""


@pytest.fixture(scope="module")
def tiny_sd3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from nftkit.policies.tiny_sd3 import save_tiny_sd3

    return save_tiny_sd3(tmp_path_factory.mktemp("resume") / "tiny-sd3")


@pytest.fixture(scope="module")
def policy(tiny_sd3: Path) -> SD3Policy:
    return SD3Policy.from_pretrained(tiny_sd3)


@pytest.fixture()
def geneval(tiny_weights: Path, shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("NFTKIT_WEIGHTS_DIR", str(tiny_weights))
    path = shared_data / "geneval/evaluation_metadata.jsonl"
    return lambda: GenevalEvaluator(prompts_path=path, n_samples=2)


def _pngs(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.png"))}


def test_killed_eval_resumes_to_the_same_metrics_without_duplicates(
    policy: SD3Policy, geneval: Any, tmp_path: Path
) -> None:
    store = ResultsStore(tmp_path / "r.db")
    settings = EvalSettings(steps=2, solver="euler", batch_size=2, limit=3)  # 6 images, 3 batches
    straight = run_evaluation(
        policy, geneval(), "tiny", settings, store, output_dir=tmp_path / "straight"
    )

    def crash_after_two_batches(done: int, total: int) -> None:
        if done >= 4:
            raise Killed

    killed_dir = tmp_path / "killed"
    with pytest.raises(Killed):
        run_evaluation(
            policy,
            geneval(),
            "tiny",
            settings,
            store,
            output_dir=killed_dir,
            progress=crash_after_two_batches,
        )
    failed = [r for r in store.list_runs("eval") if r.output_dir == str(killed_dir)]
    assert [r.status for r in failed] == ["failed"]
    assert len(store.samples(failed[0].id)) == 4
    before = {name: (killed_dir / name).stat().st_mtime_ns for name in _pngs(killed_dir)}

    resumed = run_evaluation(policy, geneval(), "tiny", settings, store, output_dir=killed_dir)
    assert resumed.run_id == failed[0].id
    assert resumed.counts["skipped"] == 4
    assert resumed.counts["generated"] + resumed.counts["reused"] == 2
    assert resumed.metrics == straight.metrics
    for name, mtime in before.items():  # finished images were not written again
        assert (killed_dir / name).stat().st_mtime_ns == mtime
    assert _pngs(killed_dir) == _pngs(tmp_path / "straight")  # seeds per (prompt, sample)

    samples = store.samples(resumed.run_id)
    assert len(samples) == 6 == len({(s.prompt_id, s.sample_index) for s in samples})
    assert [r.status for r in store.list_runs("eval") if r.output_dir == str(killed_dir)] == [
        "finished"
    ]
    lines = (killed_dir / "results.jsonl").read_text().splitlines()
    assert len(lines) == 6 == len({json.loads(x)["filename"] for x in lines})

    again = run_evaluation(policy, geneval(), "tiny", settings, store, output_dir=killed_dir)
    assert again.run_id == resumed.run_id and again.metrics == straight.metrics
    assert again.counts["skipped"] == 6 and again.counts["generated"] == 0
    assert len(store.samples(again.run_id)) == 6


def test_changed_settings_start_a_new_run(policy: SD3Policy, geneval: Any, tmp_path: Path) -> None:
    store = ResultsStore(tmp_path / "r.db")
    out = tmp_path / "out"
    first = run_evaluation(
        policy, geneval(), "tiny", EvalSettings(steps=2, limit=1), store, output_dir=out
    )
    other = run_evaluation(
        policy,
        geneval(),
        "tiny",
        EvalSettings(steps=2, limit=1, seed=9),
        store,
        output_dir=tmp_path / "out2",
    )
    same_batch = run_evaluation(
        policy,
        geneval(),
        "tiny",
        EvalSettings(steps=2, limit=1, batch_size=1),
        store,
        output_dir=out,
    )
    assert other.run_id != first.run_id
    assert same_batch.run_id == first.run_id  # the batch size does not change results


def test_generation_is_independent_of_batching_and_cfg_changes_it(policy: SD3Policy) -> None:
    prompts, seeds = ["a red cube", "a blue car", "a dog"], [1, 2, 3]
    one = generate(policy, prompts, seeds, EvalSettings(steps=2, batch_size=1))
    three = generate(policy, prompts, seeds, EvalSettings(steps=2, batch_size=3))
    for a, b in zip(one, three, strict=True):  # same up to float rounding (a few pixels +-1)
        diff = np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16))
        assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
    guided = generate(policy, prompts, seeds, EvalSettings(steps=2, batch_size=3, cfg=4.0))
    assert [im.size for im in guided] == [im.size for im in one]
    assert all(a.tobytes() != b.tobytes() for a, b in zip(one, guided, strict=True))


def test_lora_folder_needs_base_and_reproduces_the_adapter(tiny_sd3: Path, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from nftkit.policies.loading import load_policy
    from nftkit.train.lora import (
        adapter_parameters,
        add_nft_adapters,
        lora_state_dict_for_diffusers,
    )

    torch.manual_seed(0)
    tuned = SD3Policy.from_pretrained(tiny_sd3)
    add_nft_adapters(tuned.model, tuned.lora_targets, rank=4, alpha=8)
    with torch.no_grad():
        for key, param in adapter_parameters(tuned.model, "default").items():
            if "lora_B" in key:
                param.normal_(0, 0.05)
    lora = tmp_path / "lora"
    lora.mkdir()
    save_file(
        lora_state_dict_for_diffusers(tuned.model, "default"),
        str(lora / "pytorch_lora_weights.safetensors"),
    )
    with pytest.raises(UsageError, match="pass --base"):
        load_policy(lora)
    loaded = load_policy(lora, base=str(tiny_sd3))
    base = load_policy(tiny_sd3)
    x = torch.randn(2, *tuned.latent_shape)
    t = torch.tensor(0.6)
    prompts = ["a cat", "a sign"]
    expected = tuned.velocity(x, t, tuned.encode_prompts(prompts), adapter="default")
    got = loaded.velocity(x, t, loaded.encode_prompts(prompts))
    plain = base.velocity(x, t, base.encode_prompts(prompts), adapter=None)
    assert torch.allclose(got, expected, atol=1e-4)
    assert not torch.allclose(got, plain, atol=1e-3)
    with pytest.raises(UsageError, match="--base is only for LoRA folders"):
        load_policy(tiny_sd3, base=str(tiny_sd3))


@pytest.mark.slow
def test_two_processes_share_one_run(
    tiny_sd3: Path, tiny_weights: Path, shared_data: Path, tmp_path: Path
) -> None:
    import socket
    import subprocess
    import sys

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    db = f"sqlite:///{tmp_path / 'r.db'}"
    args = [
        "--db",
        db,
        "--weights-dir",
        str(tiny_weights),
        "eval",
        "--model",
        str(tiny_sd3),
        "--suite",
        "geneval",
        "--prompts",
        str(shared_data / "geneval/evaluation_metadata.jsonl"),
        "--limit",
        "3",
        "--n-samples",
        "2",
        "--steps",
        "2",
        "--json",
    ]
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    launched = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node",
            "2",
            "--master_port",
            str(port),
            "-m",
            "nftkit",
            *args,
            "--output",
            str(tmp_path / "two"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert launched.returncode == 0, launched.stderr[-2000:]
    reports = [json.loads(x) for x in launched.stdout.splitlines() if x.startswith("{")]
    assert len(reports) == 1  # only the main process prints
    store = ResultsStore(tmp_path / "r.db")
    samples = store.samples(reports[0]["run_id"])
    assert len(samples) == 6 == len({(s.prompt_id, s.sample_index) for s in samples})
    assert store.get_run(reports[0]["run_id"]).status == "finished"
    single = subprocess.run(
        [sys.executable, "-m", "nftkit", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert single.returncode == 0, single.stderr[-2000:]
    assert json.loads(single.stdout.splitlines()[-1])["metrics"] == pytest.approx(
        reports[0]["metrics"]
    )
