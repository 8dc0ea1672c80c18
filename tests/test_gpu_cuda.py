"""CUDA-only checks (marker ``cuda``; skipped without a CUDA device, so CPU CI skips them).

Run on a GPU machine with ``pytest -m cuda`` (benchmarks/gpu/run.sh does). They cover the
device paths: bf16 autocast of the SD3 velocity, every reward with inputs on the GPU (scores
come back float32 on the CPU and match the CPU scores), an NFT training epoch on the GPU and
seeded sampling that does not depend on the batch size.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]

PROMPTS = ["a red cube", "two dogs on a green sofa", 'a sign that says "hello"', "a blue car"]


@pytest.fixture(autouse=True)
def exact_float32() -> Iterator[None]:
    """Plain float32 matmuls (no TF32) so that GPU and CPU results are comparable."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


def tiny_policy(device: str, **kwargs: object) -> object:
    """The tiny random-init SD3 policy (the same seed gives the same weights on every device)."""
    from nftkit.policies.sd3 import SD3Policy
    from nftkit.policies.tiny_sd3 import build_tiny_sd3

    return SD3Policy(build_tiny_sd3(), device=device, **kwargs)


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """||a - b|| / ||b|| in float64."""
    a, b = a.detach().double().cpu(), b.detach().double().cpu()
    return float((a - b).norm() / b.norm())


def test_sd3_velocity_on_cuda_matches_cpu_and_bf16_autocast_is_used() -> None:
    import copy

    from nftkit.policies.sd3 import SD3Policy
    from nftkit.policies.tiny_sd3 import build_tiny_sd3

    pipeline = build_tiny_sd3()  # one pipeline for both (its tokenizers are trained per build)
    cpu = SD3Policy(copy.deepcopy(pipeline), device="cpu")
    gpu = SD3Policy(pipeline, device="cuda")
    torch.manual_seed(0)
    x = torch.randn(3, *cpu.latent_shape)
    t = torch.tensor([0.9, 0.5, 0.1])
    v_cpu = cpu.velocity(x, t, cpu.encode_prompts(PROMPTS[:3]), adapter=None)
    cond = gpu.encode_prompts(PROMPTS[:3])
    v_gpu = gpu.velocity(x.cuda(), t.cuda(), cond, adapter=None)
    assert v_gpu.device.type == "cuda" and v_gpu.dtype == torch.float32
    assert relative_error(v_gpu, v_cpu) < 1e-4
    gpu.autocast_dtype = torch.bfloat16
    v_bf16 = gpu.velocity(x.cuda(), t.cuda(), cond, adapter=None)
    assert v_bf16.dtype == torch.float32 and torch.isfinite(v_bf16).all()
    err = relative_error(v_bf16, v_cpu)
    assert 1e-5 < err < 5e-2, f"bf16 autocast relative error {err}: not bf16, or too far off"


def _modules(reward: object) -> list[torch.nn.Module]:
    found = []
    for value in vars(reward).values():
        for candidate in (value, getattr(value, "model", None)):
            if isinstance(candidate, torch.nn.Module):
                found.append(candidate)
    return found


@pytest.mark.parametrize(
    "name",
    ["pickscore", "clipscore", "hpsv2", "aesthetic", "imagereward", "geneval", "jpeg", "ocr"],
)
def test_every_reward_on_cuda_scores_float32_on_cpu_like_the_cpu(
    name: str, tiny_weights: Path
) -> None:
    from nftkit.registry import create_reward

    generator = torch.Generator().manual_seed(3)
    images = torch.rand((4, 3, 64, 64), generator=generator)
    meta = [
        {
            "tag": "color_attr",
            "include": [
                {"class": "apple", "count": 1, "color": "red"},
                {"class": "cup", "count": 1},
            ],
        }
    ] * 4
    prompts = ['a red apple and a cup with a sign that says "hi"'] * 4
    cpu = create_reward(name, weights_dir=tiny_weights, device="cpu")
    gpu = create_reward(name, weights_dir=tiny_weights, device="cuda")
    expected = cpu(images, prompts, meta).scores
    out = gpu(images.cuda(), prompts, meta)
    assert out.scores.device.type == "cpu" and out.scores.dtype == torch.float32
    assert out.scores.shape == (4,) and torch.isfinite(out.scores).all()
    for module in _modules(gpu):
        assert next(module.parameters()).device.type == "cuda", f"{name}: a model stayed on CPU"
    if name == "geneval":  # discrete verdicts: a near-threshold score may flip between devices
        assert ((out.scores >= 0) & (out.scores <= 1)).all()
        assert (out.scores == expected).float().mean() >= 0.5
    else:
        torch.testing.assert_close(out.scores, expected, atol=1e-3, rtol=1e-3)


def test_nft_epoch_on_cuda_updates_the_lora_on_the_gpu(tmp_path: Path) -> None:
    from nftkit.compose import RewardComposer
    from nftkit.train.nft import NFTConfig, NFTTrainer, PromptItem

    policy = tiny_policy("cuda")
    config = NFTConfig(
        prompts_per_epoch=2,
        group_size=2,
        num_steps=3,
        sample_batch_size=4,
        train_batch_size=2,
        max_train_timesteps=2,
        lora_rank=4,
        lora_alpha=8,
        lr=0.01,
        seed=5,
    )
    trainer = NFTTrainer(
        policy,
        RewardComposer("jpeg"),
        [PromptItem(p) for p in PROMPTS],
        config,
        output_dir=tmp_path,
    )
    before = [p.detach().clone() for p in trainer.trainable]
    record = trainer.run_epoch()
    assert record["step"] == 2 and all(p.device.type == "cuda" for p in trainer.trainable)
    assert all(torch.isfinite(torch.tensor(v)) for v in record.values() if isinstance(v, float))
    moved = max(
        float((p.detach() - b).abs().max()) for p, b in zip(trainer.trainable, before, strict=True)
    )
    assert moved > 0, "the trained LoRA did not change"


def test_seeded_sampling_on_cuda_does_not_depend_on_the_batch_size() -> None:
    import numpy as np

    from nftkit.eval import EvalSettings, generate

    policy = tiny_policy("cuda")
    seeds = [11, 12, 13, 14]
    one = generate(policy, PROMPTS, seeds, EvalSettings(steps=4, batch_size=1), adapter=None)
    four = generate(policy, PROMPTS, seeds, EvalSettings(steps=4, batch_size=4), adapter=None)
    for a, b in zip(one, four, strict=True):
        diff = np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16))
        assert diff.max() <= 1, f"pixels differ by {diff.max()} between batch sizes 1 and 4"


def test_shapes_policy_on_cuda_matches_cpu_and_defaults_to_bf16(tiny_model_dir: Path) -> None:
    from nftkit.policies.shapes import ShapesPolicy

    cpu = ShapesPolicy.from_pretrained(tiny_model_dir, device="cpu", autocast_dtype=None)
    gpu = ShapesPolicy.from_pretrained(tiny_model_dir, device="cuda", autocast_dtype=None)
    torch.manual_seed(0)
    x = torch.randn(3, *cpu.latent_shape)
    t = torch.tensor([0.9, 0.5, 0.1])
    v_cpu = cpu.velocity(x, t, cpu.encode_prompts(PROMPTS[:3]), adapter=None)
    v_gpu = gpu.velocity(x.cuda(), t.cuda(), gpu.encode_prompts(PROMPTS[:3]), adapter=None)
    assert v_gpu.device.type == "cuda"
    assert relative_error(v_gpu, v_cpu) < 1e-4
    auto = ShapesPolicy.from_pretrained(tiny_model_dir, device="cuda")
    assert auto.autocast_dtype == torch.bfloat16  # the AUTO default on a bf16-capable GPU
