"""Shared CLIP plumbing for the transformers-based rewards (PickScore, CLIPScore, Aesthetic, the
GenEval color classifier): loading a CLIP folder with its processor, preprocessing through the
PIL image processor (the reference pipelines' resize), and the projected embeddings.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from PIL import Image

from nftkit.rewards._sources import Resolved

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CLIP_MAX_TEXT_TOKENS = 77


def load_clip_image_processor(location: str) -> Any:
    """The CLIP image processor of a folder or hub repo, PIL backend (resizes with PIL bicubic)."""
    try:
        from transformers import CLIPImageProcessorPil as Processor  # transformers >= 5
    except ImportError:  # transformers 4.x: the default CLIPImageProcessor is PIL based
        from transformers import CLIPImageProcessor as Processor
    return Processor.from_pretrained(location)


def load_clip_tokenizer(location: str) -> Any:
    """The CLIP tokenizer of a folder or hub repo."""
    from transformers import CLIPTokenizer

    return CLIPTokenizer.from_pretrained(location)


@dataclass
class ClipBundle:
    """A CLIPModel in eval mode on its device and dtype, with its image processor and tokenizer."""

    model: Any
    image_processor: Any
    tokenizer: Any
    device: torch.device
    dtype: torch.dtype

    def pixel_values(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Preprocess PIL images (shortest side, center crop, mean/std) onto the model's device."""
        out = self.image_processor(images=list(images), return_tensors="pt")
        return out["pixel_values"].to(device=self.device, dtype=self.dtype)

    def text_inputs(self, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Tokenize (pad to the longest, truncate at 77 tokens) onto the model's device."""
        out = self.tokenizer(
            list(prompts),
            padding=True,
            truncation=True,
            max_length=CLIP_MAX_TEXT_TOKENS,
            return_tensors="pt",
        )
        return {
            k: v.to(self.device) for k, v in out.items() if k in ("input_ids", "attention_mask")
        }

    @torch.inference_mode()
    def image_embeds(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Projected image embeddings (not normalized), float32."""
        return _features(self.model.get_image_features(pixel_values=pixel_values)).float()

    @torch.inference_mode()
    def text_embeds(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        """Projected text embeddings (not normalized), float32."""
        return _features(self.model.get_text_features(**inputs)).float()

    @torch.inference_mode()
    def paired_cosine(self, images: Sequence[Image.Image], prompts: Sequence[str]) -> torch.Tensor:
        """cos(image_i, prompt_i) of the normalized projected embeddings, float32 [B]."""
        image = l2_normalize(self.image_embeds(self.pixel_values(images)))
        text = l2_normalize(self.text_embeds(self.text_inputs(prompts)))
        return (image * text).sum(dim=-1)


def _features(out: Any) -> torch.Tensor:
    """transformers 4 returns the projected tensor; transformers 5 an output with pooler_output."""
    return out if isinstance(out, torch.Tensor) else out.pooler_output


def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    """x / ||x|| along the last dimension."""
    return x / x.norm(p=2, dim=-1, keepdim=True)


def load_clip(
    model: Resolved, processor: Resolved, device: torch.device, dtype: torch.dtype
) -> ClipBundle:
    """Load a CLIPModel from ``model`` and its processor from ``processor`` (may be the same)."""
    from transformers import CLIPModel

    clip = model.load(CLIPModel.from_pretrained)
    clip = clip.to(device=device, dtype=dtype).eval()
    image_processor = processor.load(load_clip_image_processor)
    tokenizer = processor.load(load_clip_tokenizer)
    return ClipBundle(clip, image_processor, tokenizer, device, dtype)
