"""Named training presets: a base model, a reward spec, a prompt source and NFT settings.

The ``sd35m-*`` presets mirror the DiffusionNFT reference settings for Stable Diffusion 3.5
Medium (REFERENCE.md section 1): LoRA r 32 / alpha 64 on the joint-attention projections,
48 prompts x 24 images per epoch, per-GPU batch 9, CFG-free sampling, AdamW 3e-4, beta 1.0 for
single preference/GenEval rewards and 0.1 for OCR and multi-reward, reference weight 1e-4. They
state optimizer steps per epoch (1; OCR 2) as the reference config does, so the gradient
accumulation is derived from the number of processes (``nftkit.train.layout``): the same
experiment on 1, 2, 4 or 8 GPUs (accumulation 128, 64, 32, 16). The time grid is the model's
scheduler's (``SD3Policy.time_grid``), not a preset setting.
Their training prompt sets are not bundled: put them in ``$NFTKIT_PROMPTS_DIR`` (see
``TRAINING_PROMPT_SETS``) or pass ``--prompts FILE``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nftkit.errors import UnknownPluginError, UsageError
from nftkit.train.nft import NFTConfig, PromptItem

if TYPE_CHECKING:
    from nftkit.train.algos import TrainConfig


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
    policy: dict[str, Any] = field(default_factory=dict)
    stages: list[dict[str, Any]] = field(default_factory=list)
    algo: str = "nft"
    eval_settings: dict[str, Any] = field(default_factory=dict)  # EvalSettings keys, if any

    def train_config(self, **overrides: Any) -> TrainConfig:
        """The preset's config for its algorithm (NFTConfig or GRPOConfig), overrides applied.

        None overrides are ignored: they keep the preset's value, not the algorithm's default.
        """
        from nftkit.train.algos import make_config

        given = {k: v for k, v in overrides.items() if v is not None}
        return make_config(self.algo, {**self.config, **given})

    def nft_config(self, **overrides: Any) -> NFTConfig:
        """The preset's NFTConfig with overrides applied (None values ignored)."""
        return NFTConfig.from_dict(
            {**self.config, **{k: v for k, v in overrides.items() if v is not None}}
        )


PRESETS: dict[str, Preset] = {
    "shapes": Preset(
        name="shapes",
        model="shapes-base",
        rewards="shapes-geneval",
        prompts="shapes-train:counting=2",
        eval_suite="shapes",
        description="CPU shapes world: GenEval partial reward, held-out shapes suite",
        # Sized for `make demo` (~390 s of training on 2 CPU cores with bf16, ~2x without): 30
        # epochs of 16 prompts x 8 images, 3 of the 10 sampler timesteps trained per image, 8
        # optimizer steps per epoch (16 samples per step). beta 0.3 (between the paper's 1.0 and
        # 0.1) learned fastest per epoch here. Counting prompts are drawn 2x as often: counting is
        # the task the base draws worst (3 seeds, eval seed 0: min 0.878 -> 0.889 with it).
        config={
            "epochs": 30,
            "prompts_per_epoch": 16,
            "group_size": 8,
            "num_steps": 10,
            "solver": "dpm2",
            "sample_batch_size": 128,
            "train_batch_size": 16,
            "samples_per_step": 16,
            "max_train_timesteps": 3,
            "beta": 0.3,
            "lr": 1e-3,
            "lora_rank": 8,
            "lora_alpha": 16,
            "checkpoint_every": 10,
        },
    ),
}


# FlowGRPO baseline on the shapes world (REFERENCE.md section 2 scaled down): the same base,
# reward, prompt mix, images per epoch (16 x 8) and optimizer steps per epoch (batch 32) as the
# `shapes` preset; 10 SDE steps at noise level 0.7 of which the first 9 are trained; KL 0.04
# to the reference. The clip range is 1e-3 rather than the reference's 1e-4: with lr 1e-3 on
# this small model, 1-10% of ratios already leave a 1e-3 range within an epoch's optimizer steps,
# so 1e-4 would clip most of them.
_SHAPES_GRPO: dict[str, Any] = {
    "epochs": 60,
    "prompts_per_epoch": 16,
    "group_size": 8,
    "num_steps": 10,
    "noise_level": 0.7,
    "sample_batch_size": 128,
    "train_batch_size": 32,
    "timestep_fraction": 0.99,
    "clip_range": 1e-3,
    "adv_clip": 5.0,
    "kl_beta": 0.04,
    "lr": 1e-3,
    "lora_rank": 8,
    "lora_alpha": 16,
    "checkpoint_every": 10,
}
PRESETS.update(
    {
        "shapes-grpo": Preset(
            name="shapes-grpo",
            model="shapes-base",
            rewards="shapes-geneval",
            prompts="shapes-train:counting=2",
            eval_suite="shapes",
            algo="grpo",
            config=dict(_SHAPES_GRPO),
            description="CPU shapes world, FlowGRPO baseline (SDE sampling, PPO clip, KL)",
        ),
        "shapes-grpo-fast": Preset(
            name="shapes-grpo-fast",
            model="shapes-base",
            rewards="shapes-geneval",
            prompts="shapes-train:counting=2",
            eval_suite="shapes",
            algo="grpo",
            config={**_SHAPES_GRPO, "sde_window": 2},
            description="CPU shapes world, FlowGRPO-Fast (SDE inside a random 2-step window)",
        ),
    }
)

SD35M_MODEL = "stabilityai/stable-diffusion-3.5-medium"
# Reference settings shared by every SD3.5-Medium preset (REFERENCE.md section 1).
_SD35M_NFT: dict[str, Any] = {
    "prompts_per_epoch": 48,
    "group_size": 24,
    "num_steps": 10,
    "solver": "dpm2",
    "sample_batch_size": 9,
    "train_batch_size": 9,
    "steps_per_epoch": 1,  # reference gradient_step_per_epoch: 1,152 samples per optimizer step
    "lora_rank": 32,
    "lora_alpha": 64,
    "lora_init": "gaussian",
    "lr": 3e-4,
    "ref_weight": 1e-4,
    "eta_schedule": "default",
    "checkpoint_every": 10,
}
_SD35M_POLICY: dict[str, Any] = {"resolution": 512}


def _sd35m(
    name: str,
    rewards: str,
    prompts: str,
    eval_suite: str | None,
    description: str,
    stages: list[dict[str, Any]] | None = None,
    **nft: Any,
) -> Preset:
    return Preset(
        name=name,
        model=SD35M_MODEL,
        rewards=rewards,
        prompts=prompts,
        config={**_SD35M_NFT, **nft},
        eval_suite=eval_suite,
        description=description,
        policy=dict(_SD35M_POLICY),
        stages=list(stages or []),
    )


# Paper appendix C: PickScore + CLIPScore + HPSv2.1 on Pick-a-Pic prompts (800 it), then + GenEval
# on GenEval prompts (300, 200, 200), then + OCR on OCR prompts (100); 40 sampling steps.
# PickScore enters divided by 26 as in the reference multi-reward sum.
_PREFERENCE = "pickscore=0.038461538461538464,clipscore,hpsv2"
MULTIREWARD_STAGES: list[dict[str, Any]] = [
    {"name": "preference", "epochs": 800, "rewards": _PREFERENCE, "prompts": "pickscore-train"},
    {
        "name": "geneval-1",
        "epochs": 300,
        "rewards": f"{_PREFERENCE},geneval",
        "prompts": "geneval-train",
    },
    {
        "name": "geneval-2",
        "epochs": 200,
        "rewards": f"{_PREFERENCE},geneval",
        "prompts": "geneval-train",
    },
    {
        "name": "geneval-3",
        "epochs": 200,
        "rewards": f"{_PREFERENCE},geneval",
        "prompts": "geneval-train",
    },
    {"name": "ocr", "epochs": 100, "rewards": f"{_PREFERENCE},geneval,ocr", "prompts": "ocr-train"},
]

PRESETS.update(
    {
        "sd35m-geneval": _sd35m(
            "sd35m-geneval",
            "geneval",
            "geneval-train",
            "geneval",
            "SD3.5-Medium, GenEval partial reward, beta 1.0",
            epochs=1000,
            beta=1.0,
        ),
        "sd35m-ocr": _sd35m(
            "sd35m-ocr",
            "ocr",
            "ocr-train",
            "ocr",
            "SD3.5-Medium, OCR reward, beta 0.1, OCR old-policy schedule, 2 optimizer steps per "
            "epoch",
            epochs=1000,
            beta=0.1,
            eta_schedule="ocr",
            steps_per_epoch=2,
        ),
        "sd35m-pickscore": _sd35m(
            "sd35m-pickscore",
            "pickscore",
            "pickscore-train",
            "drawbench",
            "SD3.5-Medium, PickScore reward, beta 1.0",
            epochs=1000,
            beta=1.0,
        ),
        "sd35m-hpsv2": _sd35m(
            "sd35m-hpsv2",
            "hpsv2",
            "pickscore-train",
            "drawbench",
            "SD3.5-Medium, HPSv2.1 reward on Pick-a-Pic prompts, beta 1.0",
            epochs=1000,
            beta=1.0,
        ),
        "sd35m-multireward": _sd35m(
            "sd35m-multireward",
            _PREFERENCE,
            "pickscore-train",
            "drawbench",
            "SD3.5-Medium, staged multi-reward schedule of the paper's appendix C, 40 steps, beta 0.1 "
            "(follows the paper on purpose; the reference code's one-stage config is "
            "sd35m-multireward-ref)",
            stages=MULTIREWARD_STAGES,
            epochs=1600,
            beta=0.1,
            num_steps=40,
        ),
        # The reference code's sd3_multi_reward config: one stage, 25 sampling steps, beta 0.1,
        # PickScore / 26 + HPSv2.1 + CLIPScore on Pick-a-Pic prompts.
        "sd35m-multireward-ref": _sd35m(
            "sd35m-multireward-ref",
            _PREFERENCE,
            "pickscore-train",
            "drawbench",
            "SD3.5-Medium, the reference code's one-stage multi-reward config (PickScore/26 + "
            "HPSv2.1 + CLIPScore), 25 steps, beta 0.1",
            epochs=1000,
            beta=0.1,
            num_steps=25,
        ),
    }
)

# Training prompt sets named by the presets: file name under $NFTKIT_PROMPTS_DIR, public source.
TRAINING_PROMPT_SETS: dict[str, tuple[str, str]] = {
    "pickscore-train": ("pickscore/train.txt", "yifan123/flow_grpo: dataset/pickscore/train.txt"),
    "geneval-train": (
        "geneval/train_metadata.jsonl",
        "yifan123/flow_grpo: dataset/geneval/train_metadata.jsonl",
    ),
    "ocr-train": ("ocr/train.txt", "yifan123/flow_grpo: dataset/ocr/train.txt"),
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
    if source == "shapes-train" or source.startswith("shapes-train:"):
        from nftkit.shapes.prompts import split_prompts, task_balanced

        train, _ = split_prompts(seed=0)
        weights = shapes_task_weights(source)
        return [PromptItem(m["prompt"], m) for m in task_balanced(train, weights)]
    from nftkit.prompt_files import read_prompt_records

    if source in TRAINING_PROMPT_SETS:
        source = str(_named_prompt_file(source))
    return [PromptItem(r.prompt, r.metadata) for r in read_prompt_records(source)]


def shapes_task_weights(source: str) -> dict[str, float]:
    """Task weights of a "shapes-train:counting=2,position=1.5" source ({} for "shapes-train")."""
    _, _, spec = source.partition(":")
    weights: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        task, _, value = item.partition("=")
        try:
            weights[task.strip()] = float(value)
        except ValueError:
            raise ValueError(f"{source}: expected TASK=WEIGHT items, got {item!r}") from None
    return weights


def _named_prompt_file(name: str) -> Path:
    """``$NFTKIT_PROMPTS_DIR/<file>`` for a named training prompt set, or a clear error."""
    relative, origin = TRAINING_PROMPT_SETS[name]
    root = os.environ.get("NFTKIT_PROMPTS_DIR")
    if root and (Path(root) / relative).is_file():
        return Path(root) / relative
    where = f"{root}/{relative}" if root else f"$NFTKIT_PROMPTS_DIR/{relative} (variable unset)"
    raise UsageError(
        f"training prompt set '{name}' not found at {where}. Get it from {origin} and set "
        "NFTKIT_PROMPTS_DIR, or pass --prompts FILE (.txt, or .jsonl with metadata)."
    )


# FlowGRPO baseline on SD3.5-Medium: yifan123/flow_grpo config/grpo.py geneval_sd3 (REFERENCE.md
# sections 2 and 7). 48 prompts x 24 images per epoch, per-GPU sample and train batch 9, two
# optimizer steps per epoch (the reference: 32 GPUs x 4 batches of 9, accumulation 2), 10 SDE
# steps at noise level 0.7 of which the first int(0.99 * 10) = 9 are trained, CFG 4.5 in sampling
# and training, PPO clip 1e-4, advantages clipped to +-5, KL 0.04, LoRA r32/a64, AdamW 3e-4, EMA
# every 8 optimizer steps; evaluation with the EMA weights, 40-step Euler ODE at CFG 4.5. 2,500
# epochs = 5,000 optimizer steps (the paper's GenEval checkpoint trained > 5k iterations; the
# reference itself runs until stopped). Two optimizer steps per epoch on any process count
# (grad accum derived by nftkit.train.layout) on the model scheduler's own sigmas.
_SD35M_GRPO_GENEVAL: dict[str, Any] = {
    "epochs": 2500,
    "prompts_per_epoch": 48,
    "group_size": 24,
    "num_steps": 10,
    "noise_level": 0.7,
    "guidance_scale": 4.5,
    "sample_batch_size": 9,
    "train_batch_size": 9,
    "steps_per_epoch": 2,
    "timestep_fraction": 0.99,
    "clip_range": 1e-4,
    "adv_clip": 5.0,
    "kl_beta": 0.04,
    "std_mode": "global",
    "lr": 3e-4,
    "lora_rank": 32,
    "lora_alpha": 64,
    "lora_init": "gaussian",
    "ema_interval": 8,
    "checkpoint_every": 10,
}
PRESETS.update(
    {
        "sd35m-grpo-geneval": Preset(
            name="sd35m-grpo-geneval",
            model=SD35M_MODEL,
            rewards="geneval",
            prompts="geneval-train",
            eval_suite="geneval",
            algo="grpo",
            config=dict(_SD35M_GRPO_GENEVAL),
            policy=dict(_SD35M_POLICY),
            eval_settings={"steps": 40, "solver": "euler", "cfg": 4.5},
            description="SD3.5-Medium, FlowGRPO baseline (reference geneval_sd3): group 24, CFG 4.5, "
            "10 SDE steps, clip 1e-4, KL 0.04; eval 40-step ODE at CFG 4.5",
        ),
    }
)

import nftkit.train.presets_families  # noqa: E402, F401  (sd35l-*, flux-dev-*: the larger families)
