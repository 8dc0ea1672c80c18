"""Tiny random-init checkpoints of the non-CLIP reward models, in their real on-disk formats:
an open_clip HPS state dict, ImageReward's BLIP state dict and a Mask2Former folder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from nftkit.debug_tiny.tokenizers import bert_vocab_tokens, write_bert_vocab

TINY_OPEN_CLIP_CONFIG: dict[str, Any] = {
    "model_cfg": {
        "embed_dim": 16,
        "vision_cfg": {
            "image_size": 224,
            "layers": 2,
            "width": 32,
            "head_width": 16,
            "patch_size": 32,
        },
        "text_cfg": {
            "context_length": 77,
            "vocab_size": 49408,
            "width": 32,
            "heads": 2,
            "layers": 2,
        },
    },
    "preprocess_cfg": {
        "mean": [0.48145466, 0.4578275, 0.40821073],
        "std": [0.26862954, 0.26130258, 0.27577711],
    },
}
"""open_clip hub-style config (``open_clip_config.json``) of the tiny HPS architecture; the
text tower keeps CLIP's 49408-token vocabulary so that open_clip's own tokenizer applies."""


def write_tiny_hps(folder: Path, filenames: tuple[str, ...], seed: int = 0) -> Path:
    """open_clip_config.json + one ``{"state_dict": ...}`` .pt per name (torch.save)."""
    import open_clip

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "open_clip_config.json").write_text(json.dumps(TINY_OPEN_CLIP_CONFIG, indent=2))
    for offset, name in enumerate(filenames):
        torch.manual_seed(seed + offset)
        model = open_clip.CLIP(**TINY_OPEN_CLIP_CONFIG["model_cfg"])
        torch.save({"state_dict": model.state_dict()}, folder / name)
    return folder


TINY_MED_CONFIG: dict[str, Any] = {
    "architectures": ["BertModel"],
    "hidden_act": "gelu",
    "hidden_size": 32,
    "intermediate_size": 64,
    "layer_norm_eps": 1e-12,
    "max_position_embeddings": 64,
    "model_type": "bert",
    "num_attention_heads": 2,
    "num_hidden_layers": 2,
    "pad_token_id": 0,
    "add_cross_attention": True,
    "encoder_width": 64,
}


def write_tiny_imagereward(folder: Path, checkpoint: str, seed: int = 0) -> Path:
    """ImageReward-style ``blip.*`` + ``mlp.*`` state dict, med_config.json and a BERT vocab.

    The ViT is 64 wide (one 64-dim head), 2 blocks, 32-px patches at 224; BERT is 32 wide.
    The vocabulary has room for BLIP's two added tokens ([DEC], [ENC]) as in the original.
    """
    from nftkit.rewards._blip import BertShape, BlipForImageReward, VitShape
    from nftkit.rewards._mlp import LinearHead

    folder.mkdir(parents=True, exist_ok=True)
    write_bert_vocab(folder)
    config = {**TINY_MED_CONFIG, "vocab_size": len(bert_vocab_tokens()) + 2}
    (folder / "med_config.json").write_text(json.dumps(config, indent=2))
    torch.manual_seed(seed)
    vit = VitShape(width=64, depth=2, heads=1, patch=32, image_size=224)
    blip = BlipForImageReward(vit, BertShape.from_config(config))
    for name, param in blip.named_parameters():  # BLIP's tokens start at zero: give them values
        if name.endswith(("cls_token", "pos_embed")):
            torch.nn.init.normal_(param, std=0.02)
    head = LinearHead((32, 32, 16, 8, 4, 1))
    state = {f"blip.{k}": v for k, v in blip.state_dict().items()}
    state |= {f"mlp.{k}": v for k, v in head.state_dict().items()}
    torch.save(state, folder / checkpoint)
    return folder


def write_tiny_mask2former(folder: Path, class_names: list[str], seed: int = 0) -> Path:
    """A Mask2Former (tiny Swin backbone, 8 queries) folder with its image processor.

    The processor resizes the shortest side to 64 so that the tiny detector runs fast.
    """
    from transformers import (
        Mask2FormerConfig,
        Mask2FormerForUniversalSegmentation,
        Mask2FormerImageProcessor,
        SwinConfig,
    )

    folder.mkdir(parents=True, exist_ok=True)
    backbone = SwinConfig(
        image_size=64,
        patch_size=4,
        embed_dim=16,
        depths=[1, 1, 1, 1],
        num_heads=[1, 1, 1, 1],
        window_size=4,
        out_features=["stage1", "stage2", "stage3", "stage4"],
    )
    config = Mask2FormerConfig(
        backbone_config=backbone,
        feature_size=32,
        mask_feature_size=32,
        hidden_dim=32,
        encoder_feedforward_dim=64,
        encoder_layers=1,
        decoder_layers=2,
        num_attention_heads=2,
        dim_feedforward=64,
        num_queries=8,
        num_labels=len(class_names),
        id2label=dict(enumerate(class_names)),
        label2id={n: i for i, n in enumerate(class_names)},
    )
    torch.manual_seed(seed)
    model = Mask2FormerForUniversalSegmentation(config).eval()
    with torch.no_grad():  # confident classes, so that some random queries pass 0.3
        model.class_predictor.weight.mul_(40.0)
    model.save_pretrained(folder, safe_serialization=True)
    Mask2FormerImageProcessor(size={"shortest_edge": 64, "longest_edge": 128}).save_pretrained(
        folder
    )
    return folder
