"""The parts of BLIP that ImageReward uses, written for nftkit: a ViT image encoder and a BERT
text encoder with cross-attention to the image tokens (BLIP's "multimodal" text encoder).

Module and parameter names follow the BLIP checkpoint layout, so ImageReward.pt's
``blip.visual_encoder.*`` and ``blip.text_encoder.*`` tensors load without renaming.
The ViT's shape (width, depth, patch and image size) is read from the checkpoint; its head
count is width / 64 (BLIP's ViT-B and ViT-L), at least 1.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

VIT_EPS = 1e-6
HEAD_DIM = 64


@dataclass(frozen=True)
class VitShape:
    """Shape of BLIP's ViT: token width, depth, heads, patch size and input size."""

    width: int
    depth: int
    heads: int
    patch: int
    image_size: int

    @classmethod
    def from_state_dict(cls, state: Mapping[str, torch.Tensor], prefix: str) -> VitShape:
        """Infer the shape from ``{prefix}cls_token``, ``pos_embed``, ``patch_embed`` and blocks."""
        width = int(state[f"{prefix}cls_token"].shape[-1])
        patch = int(state[f"{prefix}patch_embed.proj.weight"].shape[-1])
        tokens = int(state[f"{prefix}pos_embed"].shape[1]) - 1
        side = math.isqrt(tokens)
        blocks = {k[len(prefix) :].split(".")[1] for k in state if k.startswith(f"{prefix}blocks.")}
        return cls(width, len(blocks), max(1, width // HEAD_DIM), patch, side * patch)


class _ViTAttention(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        out = F.scaled_dot_product_attention(q, k, v)
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


class _ViTMlp(nn.Module):
    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(width, 4 * width)
        self.fc2 = nn.Linear(4 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class _ViTBlock(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(width, eps=VIT_EPS)
        self.attn = _ViTAttention(width, heads)
        self.norm2 = nn.LayerNorm(width, eps=VIT_EPS)
        self.mlp = _ViTMlp(width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _PatchEmbed(nn.Module):
    def __init__(self, width: int, patch: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, width, kernel_size=patch, stride=patch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)


class BlipVisionEncoder(nn.Module):
    """Pre-norm ViT: [B, 3, S, S] -> all tokens after the final LayerNorm, [B, 1 + N, width]."""

    def __init__(self, shape: VitShape) -> None:
        super().__init__()
        n_patches = (shape.image_size // shape.patch) ** 2
        self.shape = shape
        self.patch_embed = _PatchEmbed(shape.width, shape.patch)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, shape.width))
        self.pos_embed = nn.Parameter(torch.zeros(1, n_patches + 1, shape.width))
        self.blocks = nn.ModuleList(_ViTBlock(shape.width, shape.heads) for _ in range(shape.depth))
        self.norm = nn.LayerNorm(shape.width, eps=VIT_EPS)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.patch_embed(pixels)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


@dataclass(frozen=True)
class BertShape:
    """The fields of BLIP's med_config.json that shape the text encoder."""

    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    layer_norm_eps: float
    pad_token_id: int

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> BertShape:
        """Read a med_config.json dict (BERT fields; BLIP's own keys are ignored)."""
        return cls(
            vocab_size=int(config["vocab_size"]),
            hidden_size=int(config["hidden_size"]),
            num_hidden_layers=int(config["num_hidden_layers"]),
            num_attention_heads=int(config["num_attention_heads"]),
            intermediate_size=int(config["intermediate_size"]),
            max_position_embeddings=int(config.get("max_position_embeddings", 512)),
            layer_norm_eps=float(config.get("layer_norm_eps", 1e-12)),
            pad_token_id=int(config.get("pad_token_id", 0)),
        )


class _BertEmbeddings(nn.Module):
    def __init__(self, s: BertShape) -> None:
        super().__init__()
        self.word_embeddings = nn.Embedding(s.vocab_size, s.hidden_size, padding_idx=s.pad_token_id)
        self.position_embeddings = nn.Embedding(s.max_position_embeddings, s.hidden_size)
        self.LayerNorm = nn.LayerNorm(s.hidden_size, eps=s.layer_norm_eps)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device)
        x = self.word_embeddings(input_ids) + self.position_embeddings(positions)[None]
        return self.LayerNorm(x)


class _BertSelfAttention(nn.Module):
    def __init__(self, s: BertShape, kv_width: int) -> None:
        super().__init__()
        self.heads = s.num_attention_heads
        self.query = nn.Linear(s.hidden_size, s.hidden_size)
        self.key = nn.Linear(kv_width, s.hidden_size)
        self.value = nn.Linear(kv_width, s.hidden_size)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        return x.view(b, n, self.heads, c // self.heads).transpose(1, 2)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        q, k, v = (
            self._split(self.query(x)),
            self._split(self.key(context)),
            self._split(self.value(context)),
        )
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return out.transpose(1, 2).reshape(x.shape)


class _BertSelfOutput(nn.Module):
    def __init__(self, s: BertShape) -> None:
        super().__init__()
        self.dense = nn.Linear(s.hidden_size, s.hidden_size)
        self.LayerNorm = nn.LayerNorm(s.hidden_size, eps=s.layer_norm_eps)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class _BertAttention(nn.Module):
    def __init__(self, s: BertShape, kv_width: int) -> None:
        super().__init__()
        self.self = _BertSelfAttention(s, kv_width)
        self.output = _BertSelfOutput(s)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor, bias: torch.Tensor | None
    ) -> torch.Tensor:
        return self.output(self.self(x, context, bias), x)


class _BertIntermediate(nn.Module):
    def __init__(self, s: BertShape) -> None:
        super().__init__()
        self.dense = nn.Linear(s.hidden_size, s.intermediate_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.dense(x))


class _BertOutput(nn.Module):
    def __init__(self, s: BertShape) -> None:
        super().__init__()
        self.dense = nn.Linear(s.intermediate_size, s.hidden_size)
        self.LayerNorm = nn.LayerNorm(s.hidden_size, eps=s.layer_norm_eps)

    def forward(self, x: torch.Tensor, residual: torch.Tensor) -> torch.Tensor:
        return self.LayerNorm(self.dense(x) + residual)


class _BertLayer(nn.Module):
    def __init__(self, s: BertShape, image_width: int) -> None:
        super().__init__()
        self.attention = _BertAttention(s, s.hidden_size)
        self.crossattention = _BertAttention(s, image_width)
        self.intermediate = _BertIntermediate(s)
        self.output = _BertOutput(s)

    def forward(self, x: torch.Tensor, bias: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        x = self.attention(x, x, bias)
        x = self.crossattention(x, image, None)  # every image token is attended (mask of ones)
        return self.output(self.intermediate(x), x)


class _BertEncoder(nn.Module):
    def __init__(self, s: BertShape, image_width: int) -> None:
        super().__init__()
        self.layer = nn.ModuleList(_BertLayer(s, image_width) for _ in range(s.num_hidden_layers))


class BlipTextEncoder(nn.Module):
    """Bidirectional BERT whose every layer cross-attends to the image tokens (no pooler)."""

    def __init__(self, shape: BertShape, image_width: int) -> None:
        super().__init__()
        self.embeddings = _BertEmbeddings(shape)
        self.encoder = _BertEncoder(shape, image_width)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, image_tokens: torch.Tensor
    ) -> torch.Tensor:
        """Last hidden states [B, T, hidden]; padded positions are masked out of self-attention."""
        x = self.embeddings(input_ids)
        keep = attention_mask[:, None, None, :].bool()
        bias = torch.zeros(keep.shape, dtype=x.dtype, device=x.device)
        bias = bias.masked_fill(~keep, torch.finfo(x.dtype).min)
        for layer in self.encoder.layer:
            x = layer(x, bias, image_tokens)
        return x


class BlipForImageReward(nn.Module):
    """``visual_encoder`` + ``text_encoder``, named as in ImageReward's ``blip.*`` tensors."""

    def __init__(self, vit: VitShape, bert: BertShape) -> None:
        super().__init__()
        self.visual_encoder = BlipVisionEncoder(vit)
        self.text_encoder = BlipTextEncoder(bert, vit.width)

    def text_features(
        self, pixels: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """The first ([CLS]) token of the multimodal text encoder, [B, hidden]."""
        image_tokens = self.visual_encoder(pixels)
        return self.text_encoder(input_ids, attention_mask, image_tokens)[:, 0, :]
