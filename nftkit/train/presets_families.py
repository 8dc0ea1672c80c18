"""Presets of the larger model families (imported by ``nftkit.train.presets`` into PRESETS).

Settings are DiffusionNFT's SD3.5-Medium reference defaults (``_SD35M_NFT``: 48 prompts x 24
images, LoRA r 32 / alpha 64, AdamW 3e-4, ref weight 1e-4, 10 dpm2 steps, CFG-free), scaled for
the bigger transformers: per-GPU batch 4 (sampling) / 2 (training) instead of 9, gradient
checkpointing on, 512-pixel images (the resolution of the Medium recipe and of flow_grpo's FLUX
runs). Qwen-Image keeps its 7B text encoder on the CPU (prompts are encoded once and cached).
SANA-1.6B is smaller than SD3.5-Medium and at its native 1024 px sees the same 1,024 image tokens
(DC-AE factor 32, patch 1) as SD3.5-Medium at 512 px, so ``sana-pickscore`` keeps the reference
per-GPU batch 9 / 9 at 1024 px (gradient checkpointing on, as for the other large families).
FLUX.1-dev keeps its guidance embedding at 3.5 (flow_grpo's FLUX setting) instead of
classifier-free guidance. No preset sets ``shift``: each trains and samples on its policy's own
scheduler grid (``time_grid``: the dynamic shift mu from the image size for FLUX and Qwen-Image,
Qwen-Image's terminal stretch included).
"""

from __future__ import annotations

from typing import Any

from nftkit.train.presets import _SD35M_NFT, PRESETS, Preset

SD35L_MODEL = "stabilityai/stable-diffusion-3.5-large"
FLUX_DEV_MODEL = "black-forest-labs/FLUX.1-dev"
QWEN_IMAGE_MODEL = "Qwen/Qwen-Image"
SANA_1600M_MODEL = "Efficient-Large-Model/Sana_1600M_1024px_diffusers"


_LARGE: dict[str, Any] = {**_SD35M_NFT, "sample_batch_size": 4, "train_batch_size": 2}
_LARGE_POLICY: dict[str, Any] = {"resolution": 512, "gradient_checkpointing": True}


def _preset(
    name: str,
    model: str,
    rewards: str,
    prompts: str,
    suite: str,
    description: str,
    policy: dict[str, Any] | None = None,
    **nft: Any,
) -> Preset:
    return Preset(
        name=name,
        model=model,
        rewards=rewards,
        prompts=prompts,
        config={**_LARGE, **nft},
        eval_suite=suite,
        description=description,
        policy={**_LARGE_POLICY, **(policy or {})},
    )


FAMILY_PRESETS: dict[str, Preset] = {
    "sd35l-geneval": _preset(
        "sd35l-geneval",
        SD35L_MODEL,
        "geneval",
        "geneval-train",
        "geneval",
        "SD3.5-Large, GenEval reward, beta 1.0; SD3.5-M reference settings, batch 4/2, 512 px, "
        "gradient checkpointing",
        epochs=1000,
        beta=1.0,
    ),
    "flux-dev-pickscore": _preset(
        "flux-dev-pickscore",
        FLUX_DEV_MODEL,
        "pickscore",
        "pickscore-train",
        "drawbench",
        "FLUX.1-dev, PickScore reward, beta 1.0, guidance embedding 3.5, 512 px, batch 4/2",
        policy={"guidance": 3.5},
        epochs=1000,
        beta=1.0,
    ),
    "flux-dev-ocr": _preset(
        "flux-dev-ocr",
        FLUX_DEV_MODEL,
        "ocr",
        "ocr-train",
        "ocr",
        "FLUX.1-dev, OCR reward, beta 0.1, OCR old-policy schedule, guidance 3.5, 512 px",
        policy={"guidance": 3.5},
        epochs=1000,
        beta=0.1,
        eta_schedule="ocr",
    ),
    "qwen-image-ocr": _preset(
        "qwen-image-ocr",
        QWEN_IMAGE_MODEL,
        "ocr",
        "ocr-train",
        "ocr",
        "Qwen-Image, OCR reward, beta 0.1, OCR old-policy schedule, 512 px, batch 4/2, "
        "text encoder kept on the CPU",
        policy={"text_encoder_device": "cpu"},
        epochs=1000,
        beta=0.1,
        eta_schedule="ocr",
    ),
    "sana-pickscore": _preset(
        "sana-pickscore",
        SANA_1600M_MODEL,
        "pickscore",
        "pickscore-train",
        "drawbench",
        "SANA-1.6B, PickScore reward, beta 1.0, 1024 px (native), SD3.5-M reference batch 9/9 "
        "(1,024 image tokens as SD3.5-M at 512 px), gradient checkpointing",
        policy={"resolution": 1024},
        epochs=1000,
        beta=1.0,
        sample_batch_size=9,
        train_batch_size=9,
    ),
}
PRESETS.update(FAMILY_PRESETS)
