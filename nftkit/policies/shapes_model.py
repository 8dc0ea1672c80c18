"""A small text-conditioned flow-matching U-Net for the 32x32 shapes world.

Text: word tokens (the shapes grammar is closed, so a word-level vocabulary is exact) are embedded
with learned position embeddings, passed through a small transformer encoder and kept per token
for cross-attention, plus a pooled vector for FiLM conditioning. Image: a three-level U-Net
(32, 16, 8) with FiLM residual blocks and cross-attention to the text tokens at the two lowest
resolutions; with ``text_attention`` (the shipped base) also a text-only cross-attention after
every down and up block, at all three resolutions. ``patch_size=2`` folds 2x2 pixel patches
into channels first (pixel-unshuffle, 12 x 16 x 16) and unfolds the output again: a forward pass
with channels (64, 96, 128) is then about 2.3x cheaper on CPU than the pixel-level default. It
predicts the flow-matching velocity v = eps - x0 for x_t = (1 - t) x0 + t eps.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F


@dataclass(frozen=True)
class ShapesModelConfig:
    """Architecture hyper-parameters (saved next to the weights as JSON)."""

    vocab_size: int
    max_tokens: int = 16
    image_size: int = 32
    channels: tuple[int, ...] = (32, 64, 96)
    text_dim: int = 96
    text_layers: int = 2
    heads: int = 4
    emb_dim: int = 128
    patch_size: int = 1  # pixels per side folded into channels before the first conv
    # A text cross-attention after every down and up block (all resolutions), so that colors and
    # classes reach each object directly; zero-initialised, so that a model grown from one
    # without them starts out identical (shapes_pretrain --init ... --text-attention)
    text_attention: bool = False
    # Two extra input channels holding each pixel's x and y in [-1, 1] ("CoordConv"): convolutions
    # alone barely know where a pixel is, which layouts ("a circle left of a square", the first
    # named object on the left) need. Grown models start with zero weights on them.
    coordinates: bool = False
    # Multiplies the learned text position embeddings. They start at std 0.02 next to token
    # embeddings of norm ~10, so at 1.0 word order barely registers and "a red circle and a blue
    # square" reads like "a blue circle and a red square"; 40 puts them on the tokens' scale.
    position_scale: float = 1.0
    # A small transformer at the lowest resolution (after mid_attn): learned 2D position
    # embeddings, then this many blocks of self + text attention and an MLP, all starting at zero
    # output. Layout and binding are decided there; the convolutions alone barely know where.
    mid_blocks: int = 0

    def to_dict(self) -> dict:
        """JSON-friendly dict."""
        data = asdict(self)
        data["channels"] = list(self.channels)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> ShapesModelConfig:
        """Inverse of to_dict (fields added later take their defaults)."""
        data = dict(data)
        data["channels"] = tuple(data["channels"])
        return cls(**data)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of t in [0, 1] (scaled by 1000, as diffusion models do)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / half)
    angles = (t.float() * 1000.0)[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


def coordinate_channels(x: torch.Tensor) -> torch.Tensor:
    """[B, 2, H, W] channels x and y in [-1, 1] (pixel centers), matching x's dtype and device."""
    b, _, h, w = x.shape
    ys = torch.linspace(-1.0, 1.0, h, device=x.device, dtype=x.dtype)
    xs = torch.linspace(-1.0, 1.0, w, device=x.device, dtype=x.dtype)
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return (
        torch.stack([grid_x, grid_y])[None]
        .expand(b, 2, h, w)
        .contiguous(memory_format=torch.channels_last)
    )


class FiLMResBlock(nn.Module):
    """GroupNorm-SiLU-Conv residual block whose second norm is modulated by the embedding."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(8, in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.film = nn.Linear(emb_dim, 2 * out_ch)
        self.norm2 = nn.GroupNorm(8, out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.film(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(F.silu(h))
        return h + self.skip(x)


class CrossAttention(nn.Module):
    """Image tokens attend to the text tokens and, with ``self_attention``, to each other too;
    pre-norm, residual. Text-only attention stays cheap at any resolution. ``zero_init`` starts
    the output projection at zero, for layers added to a trained model."""

    def __init__(
        self,
        channels: int,
        text_dim: int,
        heads: int,
        self_attention: bool = True,
        zero_init: bool = False,
    ) -> None:
        super().__init__()
        self.heads = heads
        self.norm = nn.GroupNorm(8, channels)
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(text_dim, channels)
        self.to_v = nn.Linear(text_dim, channels)
        self.self_k = nn.Linear(channels, channels) if self_attention else None
        self.self_v = nn.Linear(channels, channels) if self_attention else None
        self.to_out = nn.Linear(channels, channels)
        if zero_init:
            nn.init.zeros_(self.to_out.weight)
            nn.init.zeros_(self.to_out.bias)

    def forward(self, x: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        tokens = self.norm(x).flatten(2).transpose(1, 2)  # [B, HW, C]
        q, k, v, keep = self.to_q(tokens), self.to_k(text), self.to_v(text), text_mask
        if self.self_k is not None and self.self_v is not None:
            k = torch.cat([k, self.self_k(tokens)], dim=1)
            v = torch.cat([v, self.self_v(tokens)], dim=1)
            keep = torch.cat([keep, text_mask.new_ones(b, h * w)], dim=1)

        def split(z: torch.Tensor) -> torch.Tensor:
            return z.view(b, z.shape[1], self.heads, c // self.heads).transpose(1, 2)

        attn_mask = keep[:, None, None, :].bool()
        out = F.scaled_dot_product_attention(split(q), split(k), split(v), attn_mask=attn_mask)
        out = out.transpose(1, 2).reshape(b, h * w, c)
        return x + self.to_out(out).transpose(1, 2).reshape(b, c, h, w)


class MidTransformer(nn.Module):
    """Position-aware attention blocks on the lowest-resolution feature map (zero-initialised)."""

    def __init__(self, channels: int, side: int, text_dim: int, heads: int, blocks: int) -> None:
        super().__init__()
        self.position = nn.Parameter(torch.zeros(1, channels, side, side))
        self.attention = nn.ModuleList(
            CrossAttention(channels, text_dim, heads, zero_init=True) for _ in range(blocks)
        )
        self.mlp = nn.ModuleList(
            nn.Sequential(
                nn.GroupNorm(8, channels),
                nn.Conv2d(channels, 4 * channels, 1),
                nn.GELU(),
                nn.Conv2d(4 * channels, channels, 1),
            )
            for _ in range(blocks)
        )
        for mlp in self.mlp:
            nn.init.zeros_(mlp[-1].weight)
            nn.init.zeros_(mlp[-1].bias)

    def forward(self, h: torch.Tensor, text: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = h + self.position
        for attention, mlp in zip(self.attention, self.mlp, strict=True):
            h = attention(h, text, mask)
            h = h + mlp(h)
        return h


class TextEncoder(nn.Module):
    """Token + position embeddings and a small transformer encoder."""

    def __init__(self, config: ShapesModelConfig) -> None:
        super().__init__()
        self.tokens = nn.Embedding(config.vocab_size, config.text_dim)
        self.positions = nn.Parameter(torch.randn(config.max_tokens, config.text_dim) * 0.02)
        self.position_scale = config.position_scale
        layer = nn.TransformerEncoderLayer(
            config.text_dim,
            config.heads,
            2 * config.text_dim,
            dropout=0.0,
            batch_first=True,
            norm_first=True,
        )
        self.encoder = nn.TransformerEncoder(layer, config.text_layers, enable_nested_tensor=False)
        self.pool = nn.Linear(config.text_dim * config.max_tokens, config.emb_dim)

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.tokens(ids) + self.position_scale * self.positions[None, : ids.shape[1]]
        h = self.encoder(h, src_key_padding_mask=~mask.bool())
        h = h * mask[..., None]
        pooled = self.pool(h.flatten(1))
        return h, pooled


class ShapesFlowModel(nn.Module):
    """Velocity model v(x_t, t, text) for 3 x 32 x 32 images in [-1, 1]."""

    def __init__(self, config: ShapesModelConfig) -> None:
        super().__init__()
        self.config = config
        ch = config.channels
        self.text = TextEncoder(config)
        self.time_mlp = nn.Sequential(
            nn.Linear(config.emb_dim, config.emb_dim),
            nn.SiLU(),
            nn.Linear(config.emb_dim, config.emb_dim),
        )
        self.cond_mlp = nn.Sequential(nn.SiLU(), nn.Linear(config.emb_dim, config.emb_dim))
        pixels_in = 3 * config.patch_size**2
        self.conv_in = nn.Conv2d(pixels_in + 2 * config.coordinates, ch[0], 3, padding=1)
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        for i in range(len(ch)):
            prev = ch[max(i - 1, 0)]
            self.down.append(FiLMResBlock(prev, ch[i], config.emb_dim))
            if i < len(ch) - 1:
                self.downsample.append(nn.Conv2d(ch[i], ch[i], 3, stride=2, padding=1))
        self.mid1 = FiLMResBlock(ch[-1], ch[-1], config.emb_dim)
        self.mid_attn = CrossAttention(ch[-1], config.text_dim, config.heads)
        self.mid2 = FiLMResBlock(ch[-1], ch[-1], config.emb_dim)
        if config.mid_blocks:
            side = config.image_size // config.patch_size // 2 ** (len(ch) - 1)
            self.mid_transformer = MidTransformer(
                ch[-1], side, config.text_dim, config.heads, config.mid_blocks
            )
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        current = ch[-1]
        for i in reversed(range(len(ch))):
            self.up.append(FiLMResBlock(current + ch[i], ch[i], config.emb_dim))
            current = ch[i]
            if i > 0:
                self.upsample.append(nn.Conv2d(current, current, 3, padding=1))
        self.up_attn = CrossAttention(ch[1], config.text_dim, config.heads)
        if config.text_attention:
            self.down_text = nn.ModuleList(
                CrossAttention(
                    c, config.text_dim, config.heads, self_attention=False, zero_init=True
                )
                for c in ch
            )
            self.up_text = nn.ModuleList(
                CrossAttention(
                    c, config.text_dim, config.heads, self_attention=False, zero_init=True
                )
                for c in reversed(ch)
            )
        self.norm_out = nn.GroupNorm(8, ch[0])
        self.conv_out = nn.Conv2d(ch[0], pixels_in, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def forward(
        self, x: torch.Tensor, t: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """Predict the velocity for images x [B, 3, H, W] at times t [B] given token ids."""
        text, pooled = self.text(ids, mask)
        emb = self.time_mlp(timestep_embedding(t, self.config.emb_dim)) + self.cond_mlp(pooled)
        x = x.contiguous(memory_format=torch.channels_last)  # oneDNN's fast conv layout on CPU
        patch = self.config.patch_size
        pixels = F.pixel_unshuffle(x, patch) if patch > 1 else x
        if self.config.coordinates:
            pixels = torch.cat([pixels, coordinate_channels(pixels)], dim=1)
        h = self.conv_in(pixels)
        skips = []
        for i, block in enumerate(self.down):
            h = block(h, emb)
            if self.config.text_attention:
                h = self.down_text[i](h, text, mask)
            skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
        h = self.mid1(h, emb)
        h = self.mid_attn(h, text, mask)
        if self.config.mid_blocks:
            h = self.mid_transformer(h, text, mask)
        h = self.mid2(h, emb)
        n_levels = len(self.config.channels)
        for j, block in enumerate(self.up):
            level = n_levels - 1 - j
            h = block(torch.cat([h, skips[level]], dim=1), emb)
            if self.config.text_attention:
                h = self.up_text[j](h, text, mask)
            if level == 1:
                h = self.up_attn(h, text, mask)
            if j < len(self.upsample):
                h = F.interpolate(h, scale_factor=2.0, mode="nearest")
                h = self.upsample[j](h)
        out = self.conv_out(F.silu(self.norm_out(h)))
        return F.pixel_shuffle(out, patch) if patch > 1 else out
