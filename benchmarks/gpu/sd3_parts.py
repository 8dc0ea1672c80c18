"""SD3.5-Medium parts: sampling throughput and one NFT optimizer step, through nftkit's code.

The policy is nftkit's ``SD3Policy`` over a pipeline built by ``build_tiny_sd3`` with the real
SD3.5-Medium transformer and VAE configs (configs.json) and small random text encoders of the
real output widths (prompt embeddings [B, 77 + 128, 4096], pooled [B, 2048]); the trainer is
``NFTTrainer`` with the reference settings (LoRA r32/a64 on the joint-attention projections,
batch 9, 9 trained timesteps of a 10-step dpm2 grid, shift 3). In bf16 on the GPU: weights
bf16, bf16 autocast, LoRA parameters as peft keeps them.

    python benchmarks/gpu/sd3_parts.py sample|train --out DIR [--dry-run] [--budget S]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import torch
from common import (
    Recorder,
    Settings,
    build_on,
    free_memory,
    is_oom,
    load_configs,
    parse_settings,
    peak_memory_gib,
    reset_peak,
    timed,
)

from nftkit.compose import RewardComposer
from nftkit.policies.sd3 import SD3Policy
from nftkit.policies.tiny_sd3 import TinySD3Config, build_tiny_sd3
from nftkit.train.nft import EpochBatch, NFTConfig, NFTTrainer, PromptItem

PROMPTS = ["a photo of a red cube", "two dogs on a green sofa", 'a sign that says "hi"']
SAMPLE_STEPS = 10


def sizes(settings: Settings) -> tuple[int, int]:
    """(batch, trained timesteps): the reference 9 and 9; 2 and 2 in a dry run (2 CPU cores)."""
    return (2, 2) if settings.dry_run else (9, 9)


def build_policy(settings: Settings) -> tuple[SD3Policy, dict[str, Any]]:
    """Real-size (GPU) or tiny (dry run) SD3 policy; returns it with a description."""
    if settings.dry_run:
        config, resolution, seq = TinySD3Config(), None, 16
        name = "tiny-sd3 (random init)"
    else:
        real = load_configs()["sd3.5-medium"]
        text = real["text_embeddings"]
        config = TinySD3Config(
            image_size=real["resolution"],
            t5_dim=text["t5_dim"],
            clip_projection_dim=text["clip_projection_dim"],
            transformer=dict(real["transformer"]),
            vae=dict(real["vae"]),
        )
        resolution, seq = real["resolution"], text["max_sequence_length"]
        name = "sd3.5-medium size (random init)"
    pipeline = build_on(settings.device, lambda: build_tiny_sd3(config))
    autocast = None if settings.dry_run else torch.bfloat16
    policy = SD3Policy(
        pipeline,
        device=settings.device,
        dtype=settings.dtype,
        resolution=resolution,
        autocast_dtype=autocast,
        max_sequence_length=seq,
    )
    info = {
        "model": name,
        "transformer_params": sum(p.numel() for p in policy.model.parameters()),
        "resolution": policy.resolution,
        "latent_shape": list(policy.latent_shape),
        "dtype": str(settings.dtype).replace("torch.", ""),
        "autocast": str(autocast).replace("torch.", "") if autocast else None,
    }
    cond = policy.encode_prompts(PROMPTS[:1])
    info["prompt_embeds_shape"] = list(cond["prompt_embeds"].shape[1:])
    info["pooled_shape"] = list(cond["pooled_projections"].shape[1:])
    return policy, info


def make_trainer(policy: SD3Policy, batch: int, timesteps: int, workdir: Path) -> NFTTrainer:
    """NFTTrainer with the reference SD3.5-M settings (adds the two LoRA adapters)."""
    config = NFTConfig(
        prompts_per_epoch=1,
        group_size=batch,
        num_steps=SAMPLE_STEPS,
        solver="dpm2",
        shift=3.0,
        sample_batch_size=batch,
        train_batch_size=batch,
        max_train_timesteps=timesteps,
        lora_rank=32,
        lora_alpha=64,
        beta=1.0,
    )
    return NFTTrainer(
        policy, RewardComposer("jpeg"), [PromptItem(p) for p in PROMPTS], config, output_dir=workdir
    )


def sample_part(settings: Settings, rec: Recorder) -> None:
    """Images/s of CFG-free 10-step dpm2 sampling + VAE decode at batch 9 and the best batch."""
    policy, info = build_policy(settings)
    first_batch, timesteps = sizes(settings)
    with tempfile.TemporaryDirectory() as tmp:
        make_trainer(
            policy, first_batch, timesteps, Path(tmp)
        )  # sampling runs with the "old" adapter
    rec.add("model", info)
    device = settings.device

    def run(batch: int) -> None:
        prompts = [PROMPTS[i % len(PROMPTS)] for i in range(batch)]
        generator = torch.Generator().manual_seed(0)
        policy.sample(prompts, generator, steps=SAMPLE_STEPS, solver="dpm2", adapter="old")

    reset_peak(device)
    seconds = timed(lambda: run(first_batch), device, repeats=1 if settings.dry_run else 2)
    first = {
        "batch": first_batch,
        "seconds": seconds,
        "images_per_s": first_batch / seconds,
        "peak_memory_gib": peak_memory_gib(device),
        "steps": SAMPLE_STEPS,
        "solver": "dpm2",
    }
    rec.add(f"batch_{first_batch}", first)
    rows = [first]
    candidates = [4] if settings.dry_run else [18, 36, 72, 144, 288]
    last = first
    for batch in candidates:
        estimate = last["seconds"] * batch / last["batch"] * 2  # one warm-up + one timed run
        if not settings.fits(estimate):
            rec.add(
                f"batch_{batch}",
                {
                    "batch": batch,
                    "skipped": f"estimated {estimate:.0f} s does not fit the time box",
                },
            )
            break
        reset_peak(device)
        try:
            seconds = timed(lambda b=batch: run(b), device, repeats=1)
        except (RuntimeError, torch.cuda.OutOfMemoryError) as exc:
            if not is_oom(exc):
                raise
            free_memory(device)
            rec.add(f"batch_{batch}", {"batch": batch, "oom": True})
            break
        last = {
            "batch": batch,
            "seconds": seconds,
            "images_per_s": batch / seconds,
            "peak_memory_gib": peak_memory_gib(device),
        }
        rec.add(f"batch_{batch}", last)
        rows.append(last)
    best = max(rows, key=lambda r: r["images_per_s"])
    rec.add(
        "best",
        {
            "batch": best["batch"],
            "images_per_s": best["images_per_s"],
            "peak_memory_gib": best["peak_memory_gib"],
        },
    )


def epoch_batch(policy: SD3Policy, n: int) -> EpochBatch:
    """One epoch's worth of random clean latents with real prompt conditioning."""
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(n)]
    generator = torch.Generator().manual_seed(1)
    return EpochBatch(
        x0=torch.randn((n, *policy.latent_shape), generator=generator),
        cond=policy.encode_prompts(prompts),
        prompts=prompts,
        metadata=[{}] * n,
        groups=[i % 3 for i in range(n)],
        rewards=torch.randn(n, generator=generator),
        components={},
    )


def count_flops(trainer: NFTTrainer, batch: EpochBatch) -> float:
    """FLOPs of one ``train_on`` (forwards + backward + optimizer) by torch's FLOP counter."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        trainer.train_on(batch, epoch=100)
    return float(counter.get_total_flops())


def forward_flops(policy: SD3Policy, n: int) -> float:
    """FLOPs of one transformer forward on ``n`` latents (the unit of the FLOP model)."""
    from torch.utils.flop_counter import FlopCounterMode

    cond = policy.encode_prompts([PROMPTS[i % len(PROMPTS)] for i in range(n)])
    x = torch.randn(n, *policy.latent_shape, device=policy.device)
    t = torch.full((n,), 0.5, device=policy.device)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        policy.velocity(x, t, cond, adapter="default")
    return float(counter.get_total_flops())


def train_part(settings: Settings, rec: Recorder) -> None:
    """Seconds, peak memory and MFU of one NFT optimizer step, checkpointing off and on."""
    policy, info = build_policy(settings)
    peak = load_configs()["peak_bf16_tflops"] * 1e12
    device = settings.device
    n, timesteps = sizes(settings)
    with tempfile.TemporaryDirectory() as tmp:
        trainer = make_trainer(policy, n, timesteps, Path(tmp))
        info["lora_params"] = sum(p.numel() for p in trainer.trainable)
        info["lora_dtype"] = str(trainer.trainable[0].dtype).replace("torch.", "")
        info.update(batch=n, trained_timesteps=timesteps, lora_rank=32)
        rec.add("model", info)
        batch = epoch_batch(policy, n)
        flops: float | None = None
        epoch = [0]

        def step() -> None:
            epoch[0] += 1
            trainer.train_on(batch, epoch=epoch[0])

        for checkpointing in (False, True):
            key = "checkpointing_on" if checkpointing else "checkpointing_off"
            if checkpointing:
                policy.model.enable_gradient_checkpointing()
            else:
                policy.model.disable_gradient_checkpointing()
            reset_peak(device)
            try:
                seconds = timed(step, device, repeats=1)
            except (RuntimeError, torch.cuda.OutOfMemoryError) as exc:
                if not is_oom(exc):
                    raise
                free_memory(device)
                rec.add(key, {"oom": True})
                continue
            row: dict[str, Any] = {
                "seconds_per_step": seconds,
                "peak_memory_gib": peak_memory_gib(device),
            }
            if flops is None and settings.fits(2 * seconds + 10):
                flops = count_flops(trainer, batch)
                forward = forward_flops(policy, n)
                rec.add(
                    "flops",
                    {
                        "step_tflop": flops / 1e12,
                        "forward_tflop": forward / 1e12,
                        "step_over_forward": flops / forward,
                        "flop_model_step_over_forward": 4 * timesteps,
                        "counted_with_checkpointing": checkpointing,
                        "peak_tflops": peak / 1e12,
                    },
                )
            if flops is not None:
                row["achieved_tflops"] = flops / seconds / 1e12
                row["mfu"] = None if settings.dry_run else flops / seconds / peak
            rec.add(key, row)
            if not settings.fits(2 * seconds):
                break


def main() -> None:
    """Run the part named on the command line."""

    def extra(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("part", choices=["sample", "train"])

    settings, args = parse_settings(__doc__.split("\n")[0], extra)
    torch.manual_seed(0)
    rec = Recorder(settings, f"sd3-{args.part}")
    {"sample": sample_part, "train": train_part}[args.part](settings, rec)


if __name__ == "__main__":
    main()
