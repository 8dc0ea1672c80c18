"""Real-size random-init reward checkpoints in the on-disk formats the reward plugins load.

The same layout as ``nftkit debug make-tiny-weights`` (DIR/<reward>/...), with the published
architectures of configs.json instead of the tiny ones, so that timing runs the plugins' real
loading and scoring code at real cost. Weights are stored in bf16 (the plugins cast them to
their dtype on load). The CLIP ViT-L/14 folder is written once and linked into clipscore/,
aesthetic/ and geneval/clip/. Tokenizers are the tiny offline ones (the real vocabularies are
not available offline): text lengths differ a little from the real tokenizers'.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from common import build_on

from nftkit.debug_tiny import make_tiny_weights

STORE_DTYPE = torch.bfloat16
CLIP_L_DIR = "_clip_vit_l14"


def _cpu_state(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {
        k: v.detach().to("cpu", STORE_DTYPE).contiguous() for k, v in module.state_dict().items()
    }


def write_clip(folder: Path, cfg: dict[str, Any], device: torch.device, seed: int) -> Path:
    """A transformers CLIPModel folder (safetensors, bf16) + tokenizer + CLIP image processor."""
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    from nftkit.debug_tiny.tokenizers import tiny_clip_tokenizer

    if (folder / "config.json").is_file():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = tiny_clip_tokenizer()
    ids = {
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    config = CLIPConfig(
        text_config={**cfg["text"], "vocab_size": cfg["vocab_size"], **ids},
        vision_config=cfg["vision"],
        projection_dim=cfg["projection_dim"],
    )
    torch.manual_seed(seed)
    model = build_on(device, lambda: CLIPModel(config).eval())
    model.to(STORE_DTYPE).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    size = cfg["vision"]["image_size"]
    CLIPImageProcessor(
        size={"shortest_edge": size}, crop_size={"height": size, "width": size}
    ).save_pretrained(folder)
    return folder


def _link_files(source: Path, target: Path) -> None:
    """Symlink every file of ``source`` into ``target`` (a real folder, for extra files)."""
    target.mkdir(parents=True, exist_ok=True)
    for item in source.iterdir():
        link = target / item.name
        if not link.exists():
            link.symlink_to(item.resolve())


def _clip_l(root: Path, cfg: dict[str, Any], device: torch.device) -> Path:
    return write_clip(root / CLIP_L_DIR, cfg["clip_vit_l14"], device, seed=2)


def write_pickscore(root: Path, cfg: dict[str, Any], device: torch.device) -> None:
    """DIR/pickscore: CLIP ViT-H/14 with its processor."""
    write_clip(root / "pickscore", cfg["clip_vit_h14"], device, seed=1)


def write_clipscore(root: Path, cfg: dict[str, Any], device: torch.device) -> None:
    """DIR/clipscore -> the shared CLIP ViT-L/14 folder."""
    _link_files(_clip_l(root, cfg, device), root / "clipscore")


def write_aesthetic(root: Path, cfg: dict[str, Any], device: torch.device) -> None:
    """DIR/aesthetic: the CLIP ViT-L/14 files + the 768-1024-128-64-16-1 MLP (.pth)."""
    from nftkit.rewards._mlp import LinearHead
    from nftkit.rewards.aesthetic import MLP_FILE

    folder = root / "aesthetic"
    _link_files(_clip_l(root, cfg, device), folder)
    torch.manual_seed(3)
    head = LinearHead(tuple(cfg["aesthetic_mlp"]["widths"]))
    torch.save(head.state_dict(), folder / MLP_FILE)


def write_hpsv2(root: Path, cfg: dict[str, Any], device: torch.device) -> None:
    """DIR/hpsv2/HPS_v2.1_compressed.pt: {"state_dict": open_clip ViT-H-14} (built-in arch)."""
    import open_clip

    from nftkit.rewards.hpsv2 import HPS_FILES

    folder = root / "hpsv2"
    folder.mkdir(parents=True, exist_ok=True)
    arch = open_clip.get_model_config(cfg["hpsv2"]["open_clip_arch"])
    torch.manual_seed(4)
    model = build_on(device, lambda: open_clip.CLIP(**arch))
    torch.save({"state_dict": _cpu_state(model)}, folder / HPS_FILES["v2.1"])


def write_imagereward(root: Path, cfg: dict[str, Any], device: torch.device) -> None:
    """DIR/imagereward: ImageReward.pt (blip.* + mlp.*), med_config.json, a BERT vocabulary."""
    from nftkit.debug_tiny.tokenizers import write_bert_vocab
    from nftkit.rewards._blip import BertShape, BlipForImageReward, VitShape
    from nftkit.rewards._mlp import LinearHead
    from nftkit.rewards.imagereward import CHECKPOINT, MED_CONFIG

    spec = cfg["imagereward"]
    folder = root / "imagereward"
    folder.mkdir(parents=True, exist_ok=True)
    write_bert_vocab(folder)
    (folder / MED_CONFIG).write_text(json.dumps(spec["med_config"], indent=2))
    torch.manual_seed(5)
    blip = build_on(
        device,
        lambda: BlipForImageReward(
            VitShape(**spec["vit"]), BertShape.from_config(spec["med_config"])
        ),
    )
    for name, param in blip.named_parameters():
        if name.endswith(("cls_token", "pos_embed")):
            torch.nn.init.normal_(param, std=0.02)
    head = LinearHead(tuple(spec["mlp"]))
    state = {f"blip.{k}": v for k, v in _cpu_state(blip).items()}
    state |= {f"mlp.{k}": v for k, v in _cpu_state(head).items()}
    torch.save(state, folder / CHECKPOINT)


def write_geneval(root: Path, cfg: dict[str, Any], device: torch.device) -> None:
    """DIR/geneval/detector (Mask2Former Swin-S, 80 classes) and geneval/clip (CLIP ViT-L/14).

    The class head is scaled up (as the tiny builder does) so that random queries pass the
    0.3 threshold and the color classifier and judge run as they do on real images.
    """
    from transformers import (
        Mask2FormerConfig,
        Mask2FormerForUniversalSegmentation,
        Mask2FormerImageProcessor,
        SwinConfig,
    )

    from nftkit.rewards.geneval import CLIP_SUBDIR, DETECTOR_SUBDIR, GENEVAL_CLASSES

    spec = cfg["mask2former_swin_s"]
    detector = root / "geneval" / DETECTOR_SUBDIR
    if not (detector / "config.json").is_file():
        detector.mkdir(parents=True, exist_ok=True)
        names = list(GENEVAL_CLASSES)
        config = Mask2FormerConfig(
            backbone_config=SwinConfig(**spec["backbone"]),
            **spec["model"],
            num_labels=len(names),
            id2label=dict(enumerate(names)),
            label2id={n: i for i, n in enumerate(names)},
        )
        torch.manual_seed(6)
        model = build_on(device, lambda: Mask2FormerForUniversalSegmentation(config).eval())
        with torch.no_grad():
            model.class_predictor.weight.mul_(40.0)
        model.to(STORE_DTYPE).save_pretrained(detector, safe_serialization=True)
        Mask2FormerImageProcessor(**spec["processor"]).save_pretrained(detector)
    clip = root / "geneval" / CLIP_SUBDIR
    if not clip.exists():
        clip.symlink_to(_clip_l(root, cfg, device).resolve())


WRITERS = {
    "pickscore": write_pickscore,
    "clipscore": write_clipscore,
    "aesthetic": write_aesthetic,
    "hpsv2": write_hpsv2,
    "imagereward": write_imagereward,
    "geneval": write_geneval,
}
"""Reward name -> writer of its real-size DIR/<reward>/ (ocr ships its models in its wheel)."""


def write_weights(root: Path, name: str, device: torch.device, dry_run: bool) -> Path:
    """Write DIR/<name>/ (tiny checkpoints in a dry run) and return DIR."""
    from common import load_configs

    root.mkdir(parents=True, exist_ok=True)
    if name not in WRITERS:
        return root
    if dry_run:
        if not (root / name).exists():
            make_tiny_weights(root, [name])
        return root
    WRITERS[name](root, load_configs()["rewards"], device)
    return root
