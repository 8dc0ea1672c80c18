"""Full-parameter NFT under FSDP: the shipped accelerate configs, and 2 gloo processes on CPU.

``accelerate launch --config_file examples/accelerate/fsdp-8gpu.yaml --num_processes 2`` runs
``nftkit train --set finetune=full`` on the tiny FLUX pipeline (FSDP2, CPU, float32): 2 epochs of
2 optimizer steps. Checked: the transformer is sharded (the two processes hold different shards
whose sums add up to the gathered weights), the checkpoint written from the gathered state is
what the processes trained, a resume from the first checkpoint ends bit-exactly where the
uninterrupted run ended, FSDP gives the weights of the same run under DDP (to float rounding),
and the run reloads as a policy (the DDP comparison is marked slow). accelerate has no FSDP on CPU of its own (its state says
MULTI_CPU there); ``nftkit.train.fsdp.fsdp_accelerator`` switches it to FSDP, so this is the
same ``accelerator.prepare`` path as on GPUs.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from nftkit.policies.loading import load_policy
from tests.family_helpers import PROMPTS, invoke

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "examples" / "accelerate"
BLOCKS = {
    "FluxTransformerBlock",
    "FluxSingleTransformerBlock",
    "JointTransformerBlock",
    "QwenImageTransformerBlock",
    "SanaTransformerBlock",
}
FILES = ("model_default", "model_old", "ema", "optimizer")
TRAIN = [
    *("--rewards", "jpeg", "--quiet", "--device", "cpu", "--checkpoint-every", "1"),
    *("--set", "prompts_per_epoch=2", "--set", "group_size=4", "--set", "num_steps=3"),
    *("--set", "sample_batch_size=8", "--set", "train_batch_size=2"),
    *("--set", "max_train_timesteps=2", "--set", "lr=0.001", "--set", "seed=5"),
    *("--set", "keep_checkpoints=3", "--set", "finetune=full", "--epochs", "2"),
]


@pytest.mark.parametrize(("name", "machines", "processes"), [("8gpu", 1, 8), ("2node", 2, 16)])
def test_accelerate_configs_parse_and_launch_fsdp2(
    name: str, machines: int, processes: int
) -> None:
    from accelerate.commands.config.config_args import ClusterConfig
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser
    from accelerate.utils import DistributedType
    from accelerate.utils.launch import prepare_multi_gpu_env

    path = CONFIGS / f"fsdp-{name}.yaml"
    config = ClusterConfig.from_yaml_file(str(path))
    assert config.distributed_type == DistributedType.FSDP and config.mixed_precision == "bf16"
    assert (config.num_machines, config.num_processes) == (machines, processes)
    fsdp = config.fsdp_config
    assert fsdp["fsdp_version"] == 2 and fsdp["fsdp_reshard_after_forward"] is True
    assert fsdp["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert set(fsdp["fsdp_transformer_layer_cls_to_wrap"].split(",")) == BLOCKS
    assert fsdp["fsdp_state_dict_type"] == "FULL_STATE_DICT"  # nftkit gathers full dicts
    if machines > 1:
        assert config.main_process_ip and config.main_process_port and config.machine_rank == 0
    # what `accelerate launch --config_file ...` hands every process
    parsed = launch_command_parser().parse_args(
        ["--config_file", str(path), "--machine_rank", "0", "-m", "nftkit", "train"]
    )
    args, _, _ = _validate_launch_command(parsed)
    env = prepare_multi_gpu_env(args)
    assert env["ACCELERATE_USE_FSDP"] == "true" and env["FSDP_VERSION"] == "2"
    assert env["ACCELERATE_MIXED_PRECISION"] == "bf16" and args.num_processes == processes


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _launch(launcher: list[str], root: Path, out: Path, *extra: str) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("ACCELERATE_", "FSDP_")) and k not in ("WORLD_SIZE", "RANK")
    }
    env["OMP_NUM_THREADS"] = "1"
    command = [
        sys.executable,
        *launcher,
        *("-m", "nftkit", "--db", f"sqlite:///{root / 'runs.db'}", "train"),
        *("--model", str(root / "dev"), "--prompts", str(root / "prompts.txt")),
        *("--output", str(out), *TRAIN, *extra),
    ]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr[-3000:]


def _fsdp(port: int) -> list[str]:
    config = str(CONFIGS / "fsdp-8gpu.yaml")
    return [
        *("-m", "accelerate.commands.launch", "--config_file", config, "--num_processes", "2"),
        *("--mixed_precision", "no", "--main_process_port", str(port)),
    ]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not torch.distributed.is_available() or not torch.distributed.is_gloo_available():
        pytest.skip("torch.distributed with gloo is not available in this build")
    root = tmp_path_factory.mktemp("fsdp")
    (root / "prompts.txt").write_text("\n".join(PROMPTS) + "\n")
    invoke("debug", "make-tiny", "--family", "flux", str(root / "dev"))
    _launch(_fsdp(_free_port()), root, root / "fsdp")
    return root


def _tensors(run: Path, name: str, step: int = 2) -> dict[str, torch.Tensor]:
    return load_file(str(run / "checkpoints" / f"step-{step:07d}" / f"{name}.safetensors"))


def test_fsdp_shards_the_transformer_and_checkpoints_what_it_trained(root: Path) -> None:
    run = root / "fsdp"
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert [r["step"] for r in history] == [2, 4] and history[-1]["world_size"] == 2
    last = history[-1]
    shards, totals = last["shard_checksum_ranks"], last["lora_checksum_ranks"]
    assert len(shards) == 2 and shards[0] != shards[1]  # each process holds its own shard
    assert totals[0] == totals[1] == pytest.approx(sum(shards), rel=1e-12)
    trained = _tensors(run, "model_default")
    gathered = sum(float(v.double().sum()) for v in trained.values())
    assert gathered == pytest.approx(totals[0], rel=1e-12)  # rank 0's gather = the shards
    base = load_file(str(root / "dev" / "transformer" / "diffusion_pytorch_model.safetensors"))
    assert set(trained) == set(base)
    assert all(not torch.equal(trained[k], base[k]) for k in base)  # every weight trained
    reloaded = load_policy(run).model.state_dict()
    ema = _tensors(run, "ema")
    assert all(torch.equal(reloaded[k], ema[k]) for k in base)


def test_fsdp_resume_from_the_first_checkpoint_is_bit_exact(root: Path) -> None:
    resumed = root / "resumed"
    shutil.copytree(root / "fsdp", resumed)
    shutil.rmtree(resumed / "checkpoints" / "step-0000002")
    _launch(_fsdp(_free_port()), root, resumed, "--resume")
    for name in FILES:
        a, b = _tensors(root / "fsdp", name), _tensors(resumed, name)
        assert set(a) == set(b) and all(torch.equal(a[k], b[k]) for k in a), name


@pytest.mark.slow  # one more 2-process launch (~16 s on 2 cores)
def test_fsdp_trains_the_weights_ddp_trains(root: Path) -> None:
    ddp = root / "ddp"
    port = str(_free_port())
    _launch(
        ["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port], root, ddp
    )
    assert "shard_checksum_ranks" not in (ddp / "history.jsonl").read_text()
    base = load_file(str(root / "dev" / "transformer" / "diffusion_pytorch_model.safetensors"))
    for name in ("model_default", "model_old", "ema"):
        a, b = _tensors(root / "fsdp", name), _tensors(ddp, name)
        gap = max(float((a[k] - b[k]).abs().max()) for k in a)
        moved = max(float((a[k] - base[k]).abs().max()) for k in a)
        assert gap < 1e-6 and moved > 1e-3, (name, gap, moved)
