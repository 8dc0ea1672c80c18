"""Turn a ``--model`` argument into a Policy.

Accepted: ``shapes-base`` (ships with nftkit), a shapes model folder (config.json +
model.safetensors), a Stable Diffusion 3 hub id (``stabilityai/stable-diffusion-3.5-medium``)
or diffusers pipeline folder (model_index.json), or an nftkit training output folder
(``nftkit_model.json`` + ``lora/``), whose base model is loaded and whose EMA LoRA adapter is
applied.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import load_file

from nftkit.errors import MissingWeightsError, UsageError
from nftkit.policies.base import Policy
from nftkit.policies.sd3_loading import is_sd3_dir, looks_like_hub_id
from nftkit.policies.shapes import BUILTIN_MODELS, CONFIG_FILE, ShapesPolicy

MODEL_INFO_FILE = "nftkit_model.json"


def describe_model(model: str | Path) -> dict[str, Any]:
    """What kind of model ``model`` names: {"family": ..., "base": ..., "lora": ...}."""
    path = Path(model)
    if (path / MODEL_INFO_FILE).is_file():
        info = json.loads((path / MODEL_INFO_FILE).read_text())
        if not isinstance(info, dict) or "base" not in info:
            raise MissingWeightsError(f"{path / MODEL_INFO_FILE} does not name its base model")
        return info
    if str(model) in BUILTIN_MODELS or (path / CONFIG_FILE).is_file():
        return {"family": "shapes", "base": str(model)}
    if is_sd3_dir(path) or looks_like_hub_id(str(model)):
        return {"family": "sd3", "base": str(model)}
    if path.exists():
        raise MissingWeightsError(
            f"{path} is neither an nftkit training folder ({MODEL_INFO_FILE}) nor a model folder"
        )
    raise UsageError(
        f"model not found: {model}. Give 'shapes-base', a model folder, a Stable Diffusion 3 "
        "hub id or diffusers folder, or a training output folder written by `nftkit train`."
    )


def load_policy(model: str | Path, device: str = "cpu", **kwargs: Any) -> Policy:
    """Load the policy named by ``model`` (a base, or a base + trained LoRA)."""
    info = describe_model(model)
    family = info.get("family", "shapes")
    policy: Policy
    if family == "shapes":
        policy = ShapesPolicy.from_pretrained(info["base"], device=device, **kwargs)
    elif family == "sd3":
        from nftkit.policies.sd3 import SD3Policy

        policy = SD3Policy.from_pretrained(info["base"], device=device, **kwargs)
    else:
        raise UsageError(f"model family '{family}' is not supported by this nftkit build")
    lora = info.get("lora")
    if lora:
        from nftkit.train.lora import add_nft_adapters, load_adapter_parameters

        weights = Path(model) / lora["file"]
        if not weights.is_file():
            raise MissingWeightsError(f"LoRA weights missing: expected {weights}")
        add_nft_adapters(policy.model, lora["targets"], rank=lora["rank"], alpha=lora["alpha"])
        load_adapter_parameters(policy.model, "default", load_file(str(weights)))
        policy.model.requires_grad_(False)
    policy.model.eval()
    return policy
