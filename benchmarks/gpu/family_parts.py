"""The larger families at real size: sampling images/s and seconds per NFT optimizer step.

SD3.5-Large, FLUX.1-dev, Qwen-Image and SANA-1.6B (configs.json "families") are built with
random init from their published transformer, VAE and scheduler configs, on the GPU in bf16
(bf16 as the default dtype while constructing: no float32 copy of 20B parameters), without text
encoders: random prompt embeddings of the real shapes go into the policy's prompt cache, so
``encode_prompts`` returns them as it returns cached embeddings in training. Everything then
runs through nftkit's own family policy (SD3Family, FluxPolicy, QwenImagePolicy, SanaPolicy:
``velocity``, ``time_grid``, ``sample`` with the VAE decode) and ``NFTTrainer`` with the
family preset's settings (presets_families.py: resolution, sampling and training batch, 10
dpm2 steps, 9 trained timesteps, LoRA r32/a64 on the family's ``lora_targets``, gradient
checkpointing on). One NFT optimizer step = one training micro-batch through every trained
timestep (old, reference and trained forwards, backward) plus the AdamW step.

Each family has its own time box (``budget_s``, scaled to the part's box); it records a
reason and is skipped when its box is spent, when a measurement is estimated not to fit, or
when the GPU runs out of memory, and its memory is freed before the next family. A dry run
builds the same way from the tiny builders' component configs (nftkit/policies/tiny_*.py) on
the CPU, with small batches.

    python benchmarks/gpu/family_parts.py [NAME ...] --out DIR [--dry-run] [--budget S]
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import math
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from common import (
    Recorder,
    Settings,
    free_memory,
    is_oom,
    load_configs,
    parse_settings,
    peak_memory_gib,
    reset_peak,
    sync,
)

NAMES = ("sd3.5-large", "flux.1-dev", "qwen-image", "sana-1.6b")
TINY_BUILDERS = {
    "sd3.5-large": ("nftkit.policies.tiny_sd3", "build_tiny_sd3"),
    "flux.1-dev": ("nftkit.policies.tiny_flux", "build_tiny_flux"),
    "qwen-image": ("nftkit.policies.tiny_qwen_image", "build_tiny_qwen_image"),
    "sana-1.6b": ("nftkit.policies.tiny_sana", "build_tiny_sana"),
}
TINY_RESOLUTION = {"sd3.5-large": 64, "flux.1-dev": 32, "qwen-image": 32, "sana-1.6b": 32}
TINY_TEXT_TOKENS = 8
DRY_BATCH, DRY_TIMESTEPS = 2, 2
WARMUP_STEPS = 2


class OverBudget(Exception):
    """A measurement that does not fit the family's time box."""


def _import(target: str) -> Any:
    module, _, attr = target.partition(":")
    return getattr(importlib.import_module(module), attr)


def _component_config(component: Any) -> dict[str, Any]:
    """A diffusers component's config as configs.json writes it (``_class_name`` + keys)."""
    keys = {k: v for k, v in dict(component.config).items() if not k.startswith("_")}
    return {"_class_name": type(component).__name__, **keys}


def tiny_family(name: str, real: dict[str, Any]) -> dict[str, Any]:
    """The dry-run section of family ``name``: the tiny builder's transformer, VAE and scheduler
    configs, and embedding shapes of the same keys with the tiny widths and 8 tokens."""
    module, attr = TINY_BUILDERS[name]
    pipe = getattr(importlib.import_module(module), attr)()
    config = {k: real[k] for k in ("preset", "pipeline", "policy", "budget_s", "source")}
    for section in ("transformer", "vae", "scheduler"):
        config[section] = _component_config(getattr(pipe, section))
    width = {
        "prompt_embeds": _text_width(config["transformer"]),
        "pooled_projections": config["transformer"].get("pooled_projection_dim"),
    }
    config["text_embeddings"] = {
        key: [TINY_TEXT_TOKENS, width[key]] if len(shape) == 2 else [width[key]]
        for key, shape in real["text_embeddings"].items()
    }
    config["masks"] = {key: [TINY_TEXT_TOKENS, TINY_TEXT_TOKENS // 2] for key in real["masks"]}
    config["resolution"] = TINY_RESOLUTION[name]
    return config


def _text_width(transformer: dict[str, Any]) -> int:
    """The prompt-embedding width a transformer config expects."""
    for key in ("joint_attention_dim", "caption_channels"):
        if key in transformer:
            return int(transformer[key])
    raise KeyError(f"{transformer['_class_name']}: no text width key")


@contextmanager
def constructing(device: torch.device, dtype: torch.dtype) -> Iterator[None]:
    """Create modules directly on ``device`` with ``dtype`` as the default dtype."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(previous)


def _from_config(section: dict[str, Any]) -> Any:
    import diffusers

    spec = dict(section)
    return getattr(diffusers, spec.pop("_class_name")).from_config(spec)


def build_pipeline(config: dict[str, Any], settings: Settings) -> tuple[Any, str]:
    """The family's diffusers pipeline with no text encoders; returns it and how it was built."""
    import diffusers

    how = f"{settings.device.type}, {str(settings.dtype).replace('torch.', '')} default dtype"
    try:
        with constructing(settings.device, settings.dtype):
            transformer = _from_config(config["transformer"]).eval()
            vae = _from_config(config["vae"]).eval()
    except Exception as exc:  # a module whose init cannot run in bf16: float32, then cast
        if is_oom(exc):
            raise
        free_memory(settings.device)
        how = f"{settings.device.type}, float32 then cast ({type(exc).__name__}: {exc})"[:200]
        with constructing(settings.device, torch.float32):
            transformer = _from_config(config["transformer"]).eval().to(settings.dtype)
            vae = _from_config(config["vae"]).eval().to(settings.dtype)
    pipeline_cls = getattr(diffusers, config["pipeline"])
    names = [p for p in inspect.signature(pipeline_cls.__init__).parameters if p != "self"]
    parts = {"transformer": transformer, "vae": vae, "scheduler": _from_config(config["scheduler"])}
    pipeline = pipeline_cls(**{n: parts.get(n) for n in names})
    pipeline.set_progress_bar_config(disable=True)
    return pipeline, how


def random_embeddings(config: dict[str, Any], prompts: list[str]) -> dict[str, torch.Tensor]:
    """Random prompt embeddings of the real shapes, and masks with their valid tokens set."""
    generator = torch.Generator().manual_seed(2)
    n = len(prompts)
    out = {
        key: torch.randn((n, *shape), generator=generator)
        for key, shape in config["text_embeddings"].items()
    }
    for key, (length, valid) in config["masks"].items():
        mask = torch.zeros(n, length, dtype=torch.long)
        mask[:, :valid] = 1
        out[key] = mask
    return out


def build_policy(config: dict[str, Any], preset: Any, settings: Settings) -> tuple[Any, dict]:
    """The family's nftkit policy over the text-encoder-free pipeline, prompt cache filled."""
    start = time.perf_counter()
    pipeline, how = build_pipeline(config, settings)
    sync(settings.device)
    built_s = time.perf_counter() - start
    resolution = config.get("resolution") or preset.policy.get("resolution")
    options = {k: v for k, v in preset.policy.items() if k not in ("resolution", "dtype")}
    options.pop("text_encoder_device", None)  # no text encoder here
    policy = _import(config["policy"])(
        pipeline,
        device=settings.device,
        dtype=settings.dtype,
        resolution=resolution,
        autocast_dtype=None if settings.dry_run else torch.bfloat16,
        **options,
    )
    info = {
        "transformer_params": sum(p.numel() for p in policy.model.parameters()),
        "vae_params": sum(p.numel() for p in pipeline.vae.parameters()),
        "built_on": how,
        "build_seconds": built_s,
        "resolution": policy.resolution,
        "latent_shape": list(policy.latent_shape),
        "text_embeddings": {k: list(v) for k, v in config["text_embeddings"].items()},
        "gradient_checkpointing": bool(getattr(policy.model, "gradient_checkpointing", False)),
    }
    return policy, info


def make_trainer(policy: Any, preset: Any, batch: int, timesteps: int | None, out: Path) -> Any:
    """NFTTrainer with the preset's settings; one optimizer step = one micro-batch of ``batch``."""
    from nftkit.compose import RewardComposer
    from nftkit.train.nft import NFTTrainer, PromptItem

    config = preset.nft_config(
        prompts_per_epoch=1,
        group_size=batch,
        sample_batch_size=batch,
        train_batch_size=batch,
        steps_per_epoch=1,
        max_train_timesteps=timesteps,
    )
    return NFTTrainer(policy, RewardComposer("jpeg"), [PromptItem("a red cube")], config, out)


def measure_sampling(
    policy: Any, preset: Any, batch: int, prompts: list[str], box: Settings, rec: Recorder
) -> dict[str, Any]:
    """Images/s of the preset's sampler (old adapter) with the VAE decode, after a warm-up."""
    cfg = preset.config
    steps, solver = cfg["num_steps"], cfg["solver"]

    def run(n_steps: int) -> None:
        generator = torch.Generator().manual_seed(0)
        policy.sample(prompts[:batch], generator, steps=n_steps, solver=solver, adapter="old")

    reset_peak(box.device)
    start = time.perf_counter()
    run(WARMUP_STEPS)
    sync(box.device)
    warm = time.perf_counter() - start
    estimate = warm * steps / WARMUP_STEPS
    if not box.fits(estimate, reserve_s=2.0):
        raise OverBudget(
            f"sampling estimated {estimate:.0f} s (warm-up {warm:.1f} s), "
            f"{box.remaining():.0f} s left"
        )
    start = time.perf_counter()
    run(steps)
    sync(box.device)
    seconds = time.perf_counter() - start
    row = {
        "batch": batch,
        "steps": steps,
        "solver": solver,
        "seconds": seconds,
        "images_per_s": batch / seconds,
        "warmup_seconds": warm,
        "peak_memory_gib": peak_memory_gib(box.device),
    }
    rec.add("sampling", row)
    return row


def measure_step(
    trainer: Any, policy: Any, batch: int, prompts: list[str], box: Settings, rec: Recorder
) -> dict[str, Any]:
    """Seconds and peak memory of one NFT optimizer step, after a one-timestep warm-up."""
    from nftkit.train.nft import EpochBatch

    generator = torch.Generator().manual_seed(1)
    data = EpochBatch(
        x0=torch.randn((batch, *policy.latent_shape), generator=generator),
        cond=policy.encode_prompts(prompts[:batch]),
        prompts=prompts[:batch],
        metadata=[{}] * batch,
        groups=[0] * batch,
        rewards=torch.randn(batch, generator=generator),
        components={},
    )
    full = trainer.config
    timesteps = trainer.layout.trained_timesteps
    reset_peak(box.device)
    start = time.perf_counter()
    trainer.config = replace(full, max_train_timesteps=1)
    try:
        trainer.train_on(data, epoch=1)
    finally:
        trainer.config = full
    sync(box.device)
    warm = time.perf_counter() - start
    estimate = warm * timesteps * 1.1
    if not box.fits(estimate, reserve_s=2.0):
        raise OverBudget(
            f"NFT step estimated {estimate:.0f} s (1-timestep warm-up {warm:.1f} s), "
            f"{box.remaining():.0f} s left"
        )
    reset_peak(box.device)
    start = time.perf_counter()
    stats = trainer.train_on(data, epoch=2)
    sync(box.device)
    seconds = time.perf_counter() - start
    row = {
        "batch": batch,
        "trained_timesteps": timesteps,
        "seconds_per_step": seconds,
        "warmup_seconds": warm,
        "peak_memory_gib": peak_memory_gib(box.device),
        "loss_finite": all(math.isfinite(float(v)) for v in stats.values()),
    }
    rec.add("nft_step", row)
    return row


def run_family(name: str, config: dict[str, Any], box: Settings, rec: Recorder) -> str:
    """Build, sample and train one family inside its time box; returns its status."""
    from nftkit.train.presets import get_preset

    preset = get_preset(config["preset"])
    sample_batch = DRY_BATCH if box.dry_run else int(preset.config["sample_batch_size"])
    train_batch = DRY_BATCH if box.dry_run else int(preset.config["train_batch_size"])
    timesteps = DRY_TIMESTEPS if box.dry_run else None
    prompts = [f"prompt {i}" for i in range(max(sample_batch, train_batch))]
    policy, info = build_policy(config, preset, box)
    policy.cache.get_batch(prompts, lambda missing: random_embeddings(config, missing))
    with tempfile.TemporaryDirectory() as tmp:
        trainer = make_trainer(policy, preset, train_batch, timesteps, Path(tmp))
        info.update(
            preset=preset.name,
            family=getattr(policy, "family", None) or name,
            lora_targets=list(policy.lora_targets),
            lora_rank=trainer.config.lora_rank,
            lora_params=sum(p.numel() for p in trainer.trainable),
            lora_dtype=str(trainer.trainable[0].dtype).replace("torch.", ""),
            dtype=str(box.dtype).replace("torch.", ""),
        )
        rec.add("model", info)
        measure_sampling(policy, preset, sample_batch, prompts, box, rec)
        measure_step(trainer, policy, train_batch, prompts, box, rec)
    return "ok"


def family_box(settings: Settings, share_s: float, later_s: float) -> Settings:
    """A family's own time box: what is left of the part's box less the shares kept for the
    families after it (so a family may use what earlier ones left), at least its own share
    when that much is left. A dry run keeps nothing back (its families are tiny)."""
    left = settings.remaining()
    budget = left if settings.dry_run else max(left - later_s, min(share_s, left))
    return replace(settings, budget_s=max(budget, 0.0), started=time.perf_counter())


def run_all(names: list[str], settings: Settings, families: dict[str, Any]) -> int:
    """Every named family in turn (memory freed between them); the number that failed."""
    failed = 0
    shares = [float(families[n]["budget_s"]) for n in names]
    scale = min(1.0, settings.budget_s / max(sum(shares), 1.0))  # shares past the box shrink
    for i, name in enumerate(names):
        rec = Recorder(settings, f"family-{name}")
        real = families[name]
        start = time.perf_counter()
        box = family_box(settings, shares[i] * scale, sum(shares[i + 1 :]) * scale)
        status: str
        try:
            if box.remaining() < 5:
                raise OverBudget(f"{box.remaining():.0f} s left of the part's time box")
            config = tiny_family(name, real) if settings.dry_run else real
            status = run_family(name, config, box, rec)
        except OverBudget as exc:
            status = f"skipped: {exc}"
        except (RuntimeError, torch.cuda.OutOfMemoryError) as exc:
            if not is_oom(exc):
                traceback.print_exc()
                failed += 1
                status = f"failed: {type(exc).__name__}: {exc}"[:300]
            else:
                status = f"skipped: out of memory ({str(exc).splitlines()[0][:120]})"
        except Exception as exc:  # one family's failure leaves the others' figures
            traceback.print_exc()
            failed += 1
            status = f"failed: {type(exc).__name__}: {exc}"[:300]
        free_memory(settings.device)
        rec.add("_status", {"status": status, "seconds": time.perf_counter() - start})
    return failed


def main() -> None:
    """Run the families named on the command line (default: all four)."""

    def extra(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("names", nargs="*", help=f"families (default: {' '.join(NAMES)})")

    settings, args = parse_settings(__doc__.split("\n")[0], extra)
    unknown = [n for n in args.names if n not in NAMES]
    if unknown:
        sys.exit(f"unknown family {unknown[0]!r}; choose from {', '.join(NAMES)}")
    torch.manual_seed(0)
    families = load_configs()["families"]
    names: list[str] = list(args.names or NAMES)
    sys.exit(1 if run_all(names, settings, families) else 0)


if __name__ == "__main__":
    main()
