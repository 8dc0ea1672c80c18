"""Find and load a ``StableDiffusion3Pipeline``: a local diffusers folder or a hub id.

Hub ids follow the Hugging Face cache conventions (``HF_HOME`` / ``HF_HUB_CACHE``): the local
cache is tried first without any network access; only when the weights are not cached and
``HF_HUB_OFFLINE`` is not set is a download attempted. A missing model raises
MissingWeightsError saying where we looked and how to provide the weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from nftkit.errors import MissingWeightsError

DEFAULT_SD3_MODEL = "stabilityai/stable-diffusion-3.5-medium"
PIPELINE_INDEX = "model_index.json"


def is_sd3_dir(path: str | Path) -> bool:
    """True for a diffusers folder whose model_index.json names a Stable Diffusion 3 pipeline."""
    index = Path(path) / PIPELINE_INDEX
    if not index.is_file():
        return False
    try:
        name = json.loads(index.read_text()).get("_class_name", "")
    except (json.JSONDecodeError, AttributeError):
        return False
    return isinstance(name, str) and name.startswith("StableDiffusion3")


def looks_like_hub_id(name: str) -> bool:
    """``owner/name`` with no further path parts and not an existing local path."""
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not Path(name).exists() and ".." not in name


def _dtype_kwargs(dtype: torch.dtype) -> dict[str, torch.dtype]:
    """Recent diffusers name the argument ``dtype`` (``torch_dtype`` is deprecated)."""
    from diffusers.pipelines import pipeline_utils

    key = "dtype" if hasattr(pipeline_utils, "_resolve_dtype") else "torch_dtype"
    return {key: dtype}


def _hub_offline() -> bool:
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def _missing(name: str, reason: str) -> MissingWeightsError:
    from huggingface_hub import constants

    return MissingWeightsError(
        f"Stable Diffusion 3 weights for '{name}' not found ({reason}). Looked in the Hugging "
        f"Face cache {constants.HF_HUB_CACHE} (set HF_HOME or HF_HUB_CACHE to use another). "
        f"Download them with `huggingface-cli download {name}` (gated: accept the licence and "
        "log in first), or pass --model DIR with a diffusers pipeline folder; for an offline "
        "test model run `nftkit debug make-tiny-sd3 DIR`."
    )


def load_sd3_pipeline(name_or_path: str | Path, dtype: torch.dtype = torch.float32) -> Any:
    """Load all pipeline components in ``dtype`` on CPU (the caller moves them)."""
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    try:
        return _load(name_or_path, dtype)
    finally:
        diffusers_logging.enable_progress_bar()
        transformers_logging.enable_progress_bar()


def _load(name_or_path: str | Path, dtype: torch.dtype) -> Any:
    from diffusers import StableDiffusion3Pipeline

    source = str(name_or_path)
    if Path(source).is_dir():
        if not is_sd3_dir(source):
            raise MissingWeightsError(
                f"{source} is not a Stable Diffusion 3 diffusers folder ({PIPELINE_INDEX} with a "
                "StableDiffusion3Pipeline is expected)"
            )
        return StableDiffusion3Pipeline.from_pretrained(source, **_dtype_kwargs(dtype))
    if not looks_like_hub_id(source):
        raise MissingWeightsError(f"{source}: no such folder and not a hub id (owner/name)")
    try:
        return StableDiffusion3Pipeline.from_pretrained(
            source, local_files_only=True, **_dtype_kwargs(dtype)
        )
    except (OSError, ValueError) as exc:
        if _hub_offline():
            raise _missing(source, "not in the local cache and HF_HUB_OFFLINE is set") from exc
    try:
        return StableDiffusion3Pipeline.from_pretrained(source, **_dtype_kwargs(dtype))
    except Exception as exc:  # network, auth (gated repo) or missing files
        raise _missing(source, f"download failed: {type(exc).__name__}") from exc
