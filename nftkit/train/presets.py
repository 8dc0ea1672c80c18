"""Named training presets: a base model, a reward spec, a prompt source and NFT settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nftkit.errors import UnknownPluginError
from nftkit.train.nft import NFTConfig, PromptItem


@dataclass
class Preset:
    """Everything `nftkit train --preset NAME` needs."""

    name: str
    model: str
    rewards: str
    prompts: str
    config: dict[str, Any] = field(default_factory=dict)
    eval_suite: str | None = None
    description: str = ""

    def nft_config(self, **overrides: Any) -> NFTConfig:
        """The preset's NFTConfig with overrides applied (None values ignored)."""
        return NFTConfig.from_dict({**self.config, **{k: v for k, v in overrides.items()
                                                      if v is not None}})


PRESETS: dict[str, Preset] = {
    "shapes": Preset(
        name="shapes",
        model="shapes-base",
        rewards="shapes-geneval",
        prompts="shapes-train",
        eval_suite="shapes",
        description="CPU shapes world: GenEval partial reward, held-out shapes suite",
        config={
            "epochs": 60,
            "prompts_per_epoch": 16,
            "group_size": 8,
            "num_steps": 10,
            "solver": "dpm2",
            "sample_batch_size": 128,
            "train_batch_size": 32,
            "max_train_timesteps": 2,
            "beta": 1.0,
            "lr": 1e-3,
            "lora_rank": 8,
            "lora_alpha": 16,
            "checkpoint_every": 10,
        },
    ),
}


def get_preset(name: str) -> Preset:
    """The preset called ``name``; unknown names suggest the closest."""
    if name in PRESETS:
        return PRESETS[name]
    import difflib

    close = difflib.get_close_matches(name, list(PRESETS), n=3, cutoff=0.4)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise UnknownPluginError(f"unknown preset '{name}'.{hint} Available: {', '.join(PRESETS)}.")


def resolve_training_prompts(source: str) -> list[PromptItem]:
    """Training prompts from a named source ("shapes-train") or a prompt file path."""
    if source == "shapes-train":
        from nftkit.shapes.prompts import split_prompts

        train, _ = split_prompts(seed=0)
        return [PromptItem(m["prompt"], m) for m in train]
    from nftkit.prompt_files import read_prompt_records

    return [PromptItem(r.prompt, r.metadata) for r in read_prompt_records(source)]
