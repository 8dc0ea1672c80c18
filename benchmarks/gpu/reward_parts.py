"""Reward throughput at real size: the plugin's public call against its bare model forward.

For one reward: write its real-size random-init checkpoint (real_weights.py; tiny in a dry
run), load it through the registry (``create_reward(name, weights_dir=...)``) on the GPU in
bf16, and time at batch 32 and 128 (2 and 4 in a dry run) on 512 px images given as a float
tensor on the CPU, as the trainer passes them:
- ``toolkit``: ``reward(images, prompts, metadata)`` (checks, conversion to PIL, preprocessing,
  forward, output checks);
- ``score_batch``: the plugin's preprocessing + forward on PIL images, without the toolkit layer;
- ``model``: the bare model forward on already preprocessed inputs on the device.

    python benchmarks/gpu/reward_parts.py NAME [NAME ...] --out DIR [--dry-run] [--budget S]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from common import (
    Recorder,
    Settings,
    free_memory,
    is_oom,
    parse_settings,
    peak_memory_gib,
    reset_peak,
    timed,
)
from PIL import Image, ImageDraw, ImageFont
from real_weights import write_weights

from nftkit.images import to_pil
from nftkit.registry import create_reward
from nftkit.rewards._clip import l2_normalize

NAMES = ("pickscore", "clipscore", "hpsv2", "aesthetic", "imagereward", "geneval", "ocr")
PROMPT = 'a photo of a purple wine glass and a black apple by a sign that says "nftkit"'
GENEVAL_LINE: dict[str, Any] = {
    "tag": "color_attr",
    "include": [
        {"class": "wine glass", "count": 1, "color": "purple"},
        {"class": "apple", "count": 1, "color": "black"},
    ],
    "prompt": "a photo of a purple wine glass and a black apple",
}
WEIGHTS_ENV = "NFTKIT_GPU_WEIGHTS"


def make_images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """[n, 3, size, size] float in [0, 1]: smooth random colour fields with a line of text."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand((n, 3, 8, 8), generator=generator)
    fields = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear")
    try:
        font: Any = ImageFont.load_default(size=max(size // 10, 10))
    except TypeError:  # Pillow < 10.1
        font = ImageFont.load_default()
    out = []
    for image in to_pil(fields):
        ImageDraw.Draw(image).text((size // 8, size // 2), "nftkit", fill=(0, 0, 0), font=font)
        out.append(torch.from_numpy(np.asarray(image).copy()).permute(2, 0, 1).float() / 255)
    return torch.stack(out)


def bare_forward(
    reward: Any, name: str, pil: list[Image.Image], prompts: list[str]
) -> tuple[Callable[[], Any], str]:
    """The model forward on preprocessed device inputs, and what it covers."""
    if name in ("pickscore", "clipscore", "aesthetic"):
        clip = reward._clip
        pixels, text = clip.pixel_values(pil), clip.text_inputs(prompts)
        if name == "aesthetic":
            return (
                lambda: reward._head(l2_normalize(clip.image_embeds(pixels))),
                "CLIP image tower + MLP",
            )
        return (
            lambda: (clip.image_embeds(pixels), clip.text_embeds(text))
        ), "CLIP image + text towers"
    if name == "hpsv2":
        from nftkit.rewards.hpsv2 import hps_pixels

        model = reward._model
        pixels = hps_pixels(pil, reward._image_size).to(reward.device, reward.dtype)
        tokens = reward._tokenizer(prompts).to(reward.device)
        return (
            lambda: (model.encode_image(pixels), model.encode_text(tokens))
        ), "open_clip image + text"
    if name == "imagereward":
        pixels, tokens = reward.pixels(pil), reward.tokens(prompts)
        return (
            lambda: reward._head(
                reward._blip.text_features(
                    pixels, tokens["input_ids"], tokens["attention_mask"]
                ).float()
            )
        ), "BLIP ViT + BERT + MLP"
    if name == "geneval":
        detector, clip = reward._detector, reward._colors.clip
        inputs = detector.processor(images=pil, return_tensors="pt")
        pixels = inputs["pixel_values"].to(reward.device, reward.dtype)
        crops = clip.pixel_values(pil)
        return (
            lambda: (detector.model(pixel_values=pixels), clip.image_embeds(crops))
        ), "Mask2Former forward + CLIP-L image tower on one crop per image"
    if name == "ocr":
        arrays = [np.asarray(p) for p in pil]
        return (
            lambda: [reward._engine(a) for a in arrays]
        ), "RapidOCR engine per image (no scoring)"
    raise ValueError(f"no bare forward for {name}")


def ocr_device() -> dict[str, Any]:
    """Where RapidOCR runs: onnxruntime's providers (the plugin uses the CPU provider)."""
    import onnxruntime

    providers = onnxruntime.get_available_providers()
    return {
        "onnxruntime": onnxruntime.__version__,
        "providers": providers,
        "ocr_runs_on": "cpu",
        "note": "onnxruntime-gpu (244 MiB) does not fit the 64 MiB "
        "carry limit; RapidOCR runs on the CPU cores",
    }


def time_batch(reward: Any, name: str, images: torch.Tensor) -> tuple[dict[str, Any], float]:
    """Toolkit call, score_batch and bare forward on one batch; the row and its total cost (s)."""
    device, batch = reward.device, images.shape[0]
    prompts, meta = [PROMPT] * batch, [dict(GENEVAL_LINE) for _ in range(batch)]
    pil = to_pil(images)
    first = time.perf_counter()
    out = reward(images, prompts, meta)  # warm-up, and the figures' sanity
    reps = 2 if time.perf_counter() - first < 3.0 else 1  # slow parts (OCR): one run each
    toolkit = timed(lambda: reward(images, prompts, meta), device, reps, warmup=0)
    scored = timed(lambda: reward.score_batch(pil, prompts, meta), device, reps, warmup=reps - 1)
    forward, covers = bare_forward(reward, name, pil, prompts)
    with torch.inference_mode():
        model = timed(forward, device, reps + 1, warmup=reps - 1)
    row: dict[str, Any] = {
        "batch": batch,
        "images_per_s": batch / toolkit,
        "score_batch_images_per_s": batch / scored,
        "model_images_per_s": batch / model,
        "toolkit_over_model": toolkit / model,
        "model_forward": covers,
        "score_mean": float(out.scores.mean()),
        "scores_finite": bool(torch.isfinite(out.scores).all()),
    }
    if name == "geneval":
        kept = [
            sum(len(v) for v in d["details"].values()) if isinstance(d.get("details"), dict) else 0
            for d in out.details
        ]
        row["kept_detections_per_image"] = float(np.mean(kept))
    return row, 3 * toolkit + 3 * scored + 4 * model


def measure(settings: Settings, rec: Recorder, name: str) -> None:
    """Build, load and time one reward at the two batch sizes."""
    device, dry = settings.device, settings.dry_run
    batches = (2, 4) if dry else (32, 128)
    size = 64 if dry else 512
    default_root = settings.out / "tiny-weights" if dry else Path("/tmp/nftkit-gpu-weights")
    root = Path(os.environ.get(WEIGHTS_ENV, default_root))
    start = time.perf_counter()
    write_weights(root, name, device, dry)
    build_s = time.perf_counter() - start
    reward = create_reward(
        name, weights_dir=root, device=device, dtype=settings.dtype, batch_size=max(batches)
    )
    start = time.perf_counter()
    reward.ensure_loaded()
    load_s = time.perf_counter() - start
    params = sum(p.numel() for m in _modules(reward) for p in m.parameters())
    info: dict[str, Any] = {
        "checkpoint_build_s": build_s,
        "load_s": load_s,
        "params": params,
        "image_size": size,
        "dtype": str(settings.dtype).replace("torch.", ""),
        "real_size": not dry,
    }
    if name == "ocr":
        info.update(ocr_device())
    rec.add("model", info)
    images_all = make_images(max(batches), size)
    last: tuple[int, float] | None = None
    for batch in batches:
        if last is not None and not settings.fits(last[1] * batch / last[0] * 1.2):
            rec.add(f"batch_{batch}", {"batch": batch, "skipped": "does not fit the time box"})
            continue
        reset_peak(device)
        try:
            row, cost = time_batch(reward, name, images_all[:batch])
        except (RuntimeError, torch.cuda.OutOfMemoryError) as exc:
            if not is_oom(exc):
                raise
            free_memory(device)
            rec.add(f"batch_{batch}", {"batch": batch, "oom": True})
            break
        row["peak_memory_gib"] = peak_memory_gib(device) if name != "ocr" else None
        rec.add(f"batch_{batch}", row)
        last = (batch, cost)


def _modules(reward: Any) -> list[torch.nn.Module]:
    found = []
    for value in vars(reward).values():
        if isinstance(value, torch.nn.Module):
            found.append(value)
        for inner in ("model",):
            sub = getattr(value, inner, None)
            if isinstance(sub, torch.nn.Module):
                found.append(sub)
    if getattr(reward, "_colors", None) is not None:
        found.append(reward._colors.clip.model)
    return found


def main() -> None:
    """Measure the reward named on the command line."""

    def extra(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("names", nargs="+", choices=NAMES)

    settings, args = parse_settings(__doc__.split("\n")[0], extra)
    failed = []
    for name in args.names:  # run.sh gives one name per process; a dry run gives them all
        torch.manual_seed(0)
        rec = Recorder(settings, f"reward-{name}")
        start = time.perf_counter()
        try:
            measure(settings, rec, name)
            status = "ok"
        except Exception as exc:  # one broken reward must not hide the others' figures
            failed.append(name)
            status = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
            traceback.print_exc()
        if len(args.names) > 1:
            rec.add("_status", {"status": status, "seconds": time.perf_counter() - start})
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
