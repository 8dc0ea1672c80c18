"""Load any diffusers pipeline class from a local folder or a hub id (HF cache first).

The same rules as ``sd3_loading``: a folder must hold a ``model_index.json`` whose
``_class_name`` the family accepts; a hub id is read from the local Hugging Face cache without
network access first and downloaded only when ``HF_HUB_OFFLINE`` is unset. A missing model
raises MissingWeightsError saying where we looked and what to run.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from nftkit.errors import MissingWeightsError
from nftkit.policies.families import pipeline_class_name
from nftkit.policies.sd3_loading import looks_like_hub_id


def dtype_kwargs(dtype: torch.dtype) -> dict[str, torch.dtype]:
    """``{"dtype": dtype}`` on recent diffusers, ``{"torch_dtype": dtype}`` on older ones."""
    from diffusers.pipelines import pipeline_utils

    key = "dtype" if hasattr(pipeline_utils, "_resolve_dtype") else "torch_dtype"
    return {key: dtype}


def _missing(name: str, family: str, reason: str) -> MissingWeightsError:
    from huggingface_hub import constants

    return MissingWeightsError(
        f"{family} weights for '{name}' not found ({reason}). Looked in the Hugging Face cache "
        f"{constants.HF_HUB_CACHE} (set HF_HOME or HF_HUB_CACHE to use another). Download them "
        f"with `huggingface-cli download {name}` (gated models: accept the licence and log in), "
        f"or pass --model DIR with a diffusers folder; for an offline test model run "
        f"`nftkit debug make-tiny --family {family} DIR`."
    )


def load_pipeline(
    pipeline_cls: Any,
    name_or_path: str | Path,
    dtype: torch.dtype,
    family: str,
    accepted: tuple[str, ...],
) -> Any:
    """``pipeline_cls.from_pretrained`` in ``dtype`` on CPU, with nftkit's one-line errors."""
    from diffusers.utils import logging as diffusers_logging
    from huggingface_hub import constants

    source = str(name_or_path)
    kwargs = dtype_kwargs(dtype)
    diffusers_logging.disable_progress_bar()
    try:
        if Path(source).is_dir():
            found = pipeline_class_name(source)
            if found not in accepted:
                raise MissingWeightsError(
                    f"{source} is not a {family} diffusers folder (model_index.json names "
                    f"{found or 'nothing'}; expected one of {', '.join(accepted)})"
                )
            return pipeline_cls.from_pretrained(source, **kwargs)
        if not looks_like_hub_id(source):
            raise MissingWeightsError(f"{source}: no such folder and not a hub id (owner/name)")
        try:
            return pipeline_cls.from_pretrained(source, local_files_only=True, **kwargs)
        except (OSError, ValueError) as exc:
            if constants.HF_HUB_OFFLINE:
                raise _missing(source, family, "not cached and HF_HUB_OFFLINE is set") from exc
        try:
            return pipeline_cls.from_pretrained(source, **kwargs)
        except Exception as exc:  # network, auth (gated repo) or missing files
            raise _missing(source, family, f"download failed: {type(exc).__name__}") from exc
    finally:
        diffusers_logging.enable_progress_bar()
