"""Stable Diffusion 3 DiffusionNFT throughput: sampling images/s and seconds per optimizer step.

Default: the offline tiny pipeline on CPU (what tests use). ``--real-size`` builds a random-init
transformer with the published SD3.5-Medium config (2.5B parameters, 24 MMDiT blocks, dual
attention in the first 13) and the SD3 VAE, with small random text encoders of the right output
widths (prompt embeddings are cached during training, so text encoding is not timed); meant for
a GPU:

    python benchmarks/sd3_train_step.py [--real-size --device cuda --dtype bf16] [--resolution 512]

Reports sampling images/s (``--sample-steps`` steps, batch ``--batch``, CFG-free, old adapter,
VAE decode included), seconds and peak memory per NFT optimizer step (batch ``--batch``,
``--timesteps`` trained timesteps, LoRA r32/a64), and an MFU estimate from counted FLOPs
(with ``--peak-tflops``, default that of an H100 SXM in bf16 dense). Prints and writes JSON to
benchmarks/results/.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

import torch

from nftkit.compose import RewardComposer
from nftkit.policies.sd3 import SD3Policy, parse_dtype
from nftkit.policies.tiny_sd3 import TinySD3Config, build_tiny_sd3
from nftkit.train.nft import EpochBatch, NFTConfig, NFTTrainer, PromptItem
from nftkit.train.sampling import sample

# Published stabilityai/stable-diffusion-3.5-medium transformer/config.json and vae/config.json.
SD35_MEDIUM_TRANSFORMER: dict[str, Any] = dict(
    sample_size=128,
    patch_size=2,
    in_channels=16,
    num_layers=24,
    attention_head_dim=64,
    num_attention_heads=24,
    joint_attention_dim=4096,
    caption_projection_dim=1536,
    pooled_projection_dim=2048,
    out_channels=16,
    pos_embed_max_size=384,
    dual_attention_layers=tuple(range(13)),
    qk_norm="rms_norm",
)
SD3_VAE: dict[str, Any] = dict(
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
    latent_channels=16,
    norm_num_groups=32,
    sample_size=1024,
    mid_block_add_attention=True,
)
PROMPTS = ["a photo of a red cube", "two dogs on a green sofa", 'a sign that says "hi"']


def build_policy(args: argparse.Namespace) -> SD3Policy:
    """The tiny pipeline, or the real-size transformer + VAE with small text encoders."""
    if args.real_size:
        transformer = {**SD35_MEDIUM_TRANSFORMER, "num_layers": args.num_layers}
        config = TinySD3Config(
            image_size=args.resolution,
            t5_dim=4096,
            clip_projection_dim=1024,
            transformer=transformer,
            vae=SD3_VAE,
        )
    else:
        config = TinySD3Config()
    pipeline = build_tiny_sd3(config)
    dtype = parse_dtype(args.dtype, torch.float32)
    return SD3Policy(
        pipeline,
        device=args.device,
        dtype=dtype,
        resolution=args.resolution if args.real_size else None,
        gradient_checkpointing=args.gradient_checkpointing,
    )


def sync(device: torch.device) -> None:
    """Wait for queued GPU work."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_gb(device: torch.device) -> float:
    """Peak GPU memory allocated, or the process's peak RSS on CPU (GB)."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 1e9
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def forward_flops(policy: SD3Policy, batch: int) -> float:
    """FLOPs of one transformer forward pass on ``batch`` latents (torch's FLOP counter)."""
    from torch.utils.flop_counter import FlopCounterMode

    cond = policy.encode_prompts([PROMPTS[0]] * batch)
    x = torch.randn(batch, *policy.latent_shape, device=policy.device)
    t = torch.full((batch,), 0.5, device=policy.device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        policy.velocity(x, t, cond, adapter=None)
    return float(counter.get_total_flops())


def time_sampling(trainer: NFTTrainer, args: argparse.Namespace) -> float:
    """Images per second of CFG-free sampling + VAE decode with the old adapter."""
    policy = trainer.policy
    cond = policy.encode_prompts([PROMPTS[i % len(PROMPTS)] for i in range(args.batch)])
    generator = torch.Generator().manual_seed(0)

    def run() -> None:
        x_T = torch.randn((args.batch, *policy.latent_shape), generator=generator)
        with torch.no_grad():
            x0 = sample(
                lambda x, t: policy.velocity(x, t, cond, adapter="old"),
                x_T.to(policy.device),
                args.sample_steps,
                "dpm2",
                3.0,
            )
            policy.decode(x0)

    run()  # warm-up
    sync(policy.device)
    start = time.perf_counter()
    for _ in range(args.repeats):
        run()
    sync(policy.device)
    return args.batch * args.repeats / (time.perf_counter() - start)


def time_nft_step(trainer: NFTTrainer, args: argparse.Namespace) -> float:
    """Seconds of one NFT optimizer step (batch ``args.batch``, ``args.timesteps`` timesteps)."""
    policy = trainer.policy
    n = args.batch
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(n)]
    batch = EpochBatch(
        x0=torch.randn((n, *policy.latent_shape)),
        cond=policy.encode_prompts(prompts),
        prompts=prompts,
        metadata=[{}] * n,
        groups=[i % 3 for i in range(n)],
        rewards=torch.randn(n),
        components={},
    )
    trainer.train_on(batch, epoch=0)  # warm-up
    sync(policy.device)
    if policy.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(policy.device)
    start = time.perf_counter()
    for epoch in range(args.repeats):
        trainer.train_on(batch, epoch=epoch + 1)
    sync(policy.device)
    return (time.perf_counter() - start) / args.repeats


def main() -> None:
    """Run the benchmark, print and write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--real-size", action="store_true", help="SD3.5-Medium-size transformer")
    parser.add_argument(
        "--num-layers",
        type=int,
        default=24,
        help="transformer blocks with --real-size (24 = published; fewer for a smoke run)",
    )
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None, help="float32 (CPU default) or bf16")
    parser.add_argument("--resolution", type=int, default=512, help="pixels (real size only)")
    parser.add_argument("--batch", type=int, default=9)
    parser.add_argument("--sample-steps", type=int, default=10)
    parser.add_argument("--timesteps", type=int, default=9, help="trained timesteps per sample")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--peak-tflops", type=float, default=989.0)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    policy = build_policy(args)
    params = sum(p.numel() for p in policy.model.parameters())
    config = NFTConfig(
        prompts_per_epoch=1,
        group_size=args.batch,
        num_steps=max(args.timesteps + 1, 10),
        sample_batch_size=args.batch,
        train_batch_size=args.batch,
        max_train_timesteps=args.timesteps,
        lora_rank=32,
        lora_alpha=64,
        beta=1.0,
    )
    trainer = NFTTrainer(
        policy,
        RewardComposer("jpeg"),
        [PromptItem(p) for p in PROMPTS],
        config,
        output_dir=Path("/tmp/nftkit-bench-unused"),
    )
    lora_params = sum(p.numel() for p in trainer.trainable)
    images_per_s = time_sampling(trainer, args)
    step_s = time_nft_step(trainer, args)
    fwd = forward_flops(policy, args.batch)
    # per trained timestep: old + reference forwards (no grad), trained forward + backward (~2x)
    passes = 5 + (1 if args.gradient_checkpointing else 0)
    step_flops = fwd * passes * args.timesteps
    device = policy.device
    result: dict[str, Any] = {
        "model": f"sd3.5-medium-size, {args.num_layers} blocks (random init)"
        if args.real_size
        else "tiny-sd3 (random init)",
        "device": torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)",
        "dtype": str(policy.dtype).replace("torch.", ""),
        "resolution": policy.resolution,
        "latent_shape": list(policy.latent_shape),
        "transformer_params": params,
        "lora_params": lora_params,
        "batch": args.batch,
        "sample_steps": args.sample_steps,
        "trained_timesteps": args.timesteps,
        "sampling_images_per_s": round(images_per_s, 3),
        "nft_step_seconds": round(step_s, 4),
        "peak_memory_gb": round(peak_memory_gb(device), 3),
        "peak_memory_kind": "cuda max allocated" if device.type == "cuda" else "process max RSS",
        "forward_gflops_per_batch": round(fwd / 1e9, 3),
        "nft_step_tflops": round(step_flops / 1e12, 4),
        "achieved_tflops": round(step_flops / step_s / 1e12, 4),
        "mfu": round(step_flops / step_s / (args.peak_tflops * 1e12), 4)
        if device.type == "cuda"
        else None,
        "gradient_checkpointing": args.gradient_checkpointing,
        "torch": torch.__version__,
    }
    name = "sd3_train_step_real.json" if args.real_size else "sd3_train_step_tiny_cpu.json"
    out = args.json or Path(__file__).resolve().parent / "results" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
