"""ImageReward (Xu et al. 2023): BLIP ViT-L + a BERT cross-attention text encoder + MLP head.

Weights: ``ImageReward.pt`` and ``med_config.json`` from the hub repo ``THUDM/ImageReward``
and the ``bert-base-uncased`` tokenizer; with ``--weights-dir`` all of them sit in
DIR/imagereward/ (the .pt state dict, med_config.json, vocab.txt + tokenizer_config.json).
The ``image-reward`` package is not used: it pins old timm/transformers; the checkpoint is
loaded into nftkit's own BLIP modules (``_blip.py``) with torch.load(weights_only=True).
Preprocessing: resize the shortest side to 224 (bicubic), center crop 224, OpenAI mean/std;
text: BERT tokens padded/truncated to 35.
Score: (MLP(text [CLS] feature) - 0.16717362830052426) / 1.0333394966054072, roughly -2..2.
"""

from __future__ import annotations

import json
from typing import Any

import torch
from PIL import Image

from nftkit.errors import MissingWeightsError
from nftkit.rewards._blip import BertShape, BlipForImageReward, VitShape
from nftkit.rewards._clip import OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
from nftkit.rewards._mlp import LinearHead, head_from_state_dict
from nftkit.rewards._sources import WeightSource, download_sources, resolve
from nftkit.rewards.base import Reward, RewardOutput

CHECKPOINT = "ImageReward.pt"
MED_CONFIG = "med_config.json"
TOKENIZER_FILES = ("vocab.txt", "tokenizer_config.json")
MAX_TEXT_TOKENS = 35
REWARD_MEAN = 0.16717362830052426
REWARD_STD = 1.0333394966054072


def normalize_reward(raw: torch.Tensor) -> torch.Tensor:
    """ImageReward's affine: (raw - 0.16717362830052426) / 1.0333394966054072."""
    return (raw - REWARD_MEAN) / REWARD_STD


def _convert_rgb(image: Image.Image) -> Image.Image:
    return image.convert("RGB")


def imagereward_transform(size: int) -> Any:
    """Resize shortest side (bicubic) -> center crop -> RGB -> [0, 1] tensor -> OpenAI mean/std.

    The order of the image-reward package: a translucent image is resized as it is (PIL
    resizes RGBA premultiplied) and only then loses its alpha (``convert("RGB")``).
    """
    from torchvision import transforms as T

    return T.Compose(
        [
            T.Resize(size, interpolation=T.InterpolationMode.BICUBIC),
            T.CenterCrop(size),
            _convert_rgb,
            T.ToTensor(),
            T.Normalize(OPENAI_CLIP_MEAN, OPENAI_CLIP_STD),
        ]
    )


class ImageReward(Reward):
    """ImageReward human-preference score (BLIP-based), normalized, about -2..2."""

    name = "imagereward"
    higher_is_better = True
    score_range = (float("-inf"), float("inf"))
    version = "1.0"
    input_format = "pil"
    alpha = "keep"  # the image-reward package resizes and crops first, then convert("RGB")

    SOURCES = (
        WeightSource("THUDM/ImageReward", files=(CHECKPOINT, MED_CONFIG)),
        WeightSource("google-bert/bert-base-uncased", files=TOKENIZER_FILES),
    )

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._blip: BlipForImageReward | None = None
        self._head: LinearHead | None = None
        self._tokenizer: Any = None
        self._transform: Any = None

    @classmethod
    def download(cls, target: Any = None) -> list[Any]:
        """Pre-fetch ImageReward.pt, med_config.json and the BERT tokenizer files."""
        return download_sources(cls.name, cls.SOURCES, target)

    def load(self) -> None:
        """Build BLIP from med_config.json and the checkpoint's shapes; load the state dict."""
        from transformers import BertTokenizer

        ckpt_source, tok_source = (resolve(self.name, s, self.weights_dir) for s in self.SOURCES)
        path = ckpt_source.file(CHECKPOINT, "ImageReward's state dict")
        config_path = ckpt_source.file(MED_CONFIG, "BLIP's BERT config")
        bert = BertShape.from_config(json.loads(config_path.read_text(encoding="utf-8")))
        state = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or "blip.visual_encoder.cls_token" not in state:
            raise MissingWeightsError(f"{path} is not an ImageReward state dict (no blip.* keys)")
        vit = VitShape.from_state_dict(state, "blip.visual_encoder.")
        blip = BlipForImageReward(vit, bert)
        own = {k[len("blip.") :]: v for k, v in state.items() if k.startswith("blip.")}
        missing = [k for k in blip.state_dict() if k not in own]
        if missing:
            raise MissingWeightsError(
                f"{path} lacks {len(missing)} BLIP tensors, e.g. {missing[0]!r}"
            )
        # The checkpoint also holds BLIP parts ImageReward never runs (e.g. position_ids, the
        # projections); like the reference, only the tensors of our modules are read.
        blip.load_state_dict({k: own[k] for k in blip.state_dict()}, strict=True)
        self._blip = blip.to(device=self.device, dtype=self.dtype).eval()
        self._head = head_from_state_dict(state, "mlp.", str(path)).to(self.device)
        tok_dir = tok_source.file(TOKENIZER_FILES[0], "the bert-base-uncased vocabulary").parent
        self._tokenizer = tok_source.load(lambda _: BertTokenizer.from_pretrained(str(tok_dir)))
        self._transform = imagereward_transform(vit.image_size)

    def pixels(self, images: list[Image.Image]) -> torch.Tensor:
        """Preprocessed images, [B, 3, 224, 224] on the reward's device and dtype."""
        x = torch.stack([self._transform(im) for im in images])
        return x.to(device=self.device, dtype=self.dtype)

    def tokens(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        """BERT ids and attention mask, padded and truncated to 35 tokens."""
        out = self._tokenizer(
            prompts,
            padding="max_length",
            truncation=True,
            max_length=MAX_TEXT_TOKENS,
            return_tensors="pt",
        )
        return {k: out[k].to(self.device) for k in ("input_ids", "attention_mask")}

    @torch.inference_mode()
    def raw_scores(self, images: list[Image.Image], prompts: list[str]) -> torch.Tensor:
        """MLP output before the affine normalization, float32 [B]."""
        assert self._blip is not None and self._head is not None
        tokens = self.tokens(prompts)
        features = self._blip.text_features(
            self.pixels(images), tokens["input_ids"], tokens["attention_mask"]
        )
        return self._head(features.float()).squeeze(-1)

    def score_batch(
        self, images: list[Image.Image], prompts: list[str], metadata: list[dict[str, Any]]
    ) -> RewardOutput:
        """Normalized ImageReward scores."""
        return RewardOutput(normalize_reward(self.raw_scores(images, prompts)).cpu())
