"""HPSv3 (Ma et al. 2025): a Qwen2-VL-7B-Instruct preference model with a reward head.

Facts from the published inference code (MizzenAI/HPSv3 ``hpsv3/inference.py``):
the checkpoint ``MizzenAI/HPSv3:HPSv3.safetensors`` is the whole model's state dict (Qwen2-VL
weights + ``rm_head``), loaded strictly on a Qwen2-VL-7B-Instruct built from its config, with
the special token ``<|Reward|>`` added to the tokenizer. One user turn [image, text]; the image
is resized as qwen-vl-utils does with min_pixels = max_pixels = 256*28*28 (so every image
becomes ~200k pixels, sides multiples of 28); the text is ``INSTRUCTION`` with the prompt,
followed by ``REWARD_SUFFIX``. The head (float32) reads the last hidden state at the
``<|Reward|>`` token and outputs (mu, sigma); the score is mu, sigma goes in the details.
Its MLP shape is read from the checkpoint's ``rm_head.*`` keys.

Layout under ``--weights-dir``: ``DIR/hpsv3/HPSv3.safetensors`` and ``DIR/hpsv3/base/`` (the
Qwen2-VL-7B-Instruct config, tokenizer and preprocessor files, no weights needed).
``nftkit debug make-tiny-weights`` writes a tiny random-init one in the same format. The real
model is 7B: serve it with ``nftkit serve`` on its own GPU and use it as ``hpsv3@URL``.
Images are scored one at a time (no padding), so scores do not depend on batching.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from PIL import Image

from nftkit.errors import MissingWeightsError
from nftkit.rewards._sources import WeightSource, download_sources, resolve
from nftkit.rewards.base import Reward, RewardOutput

CHECKPOINT = WeightSource("MizzenAI/HPSv3", files=("HPSv3.safetensors",))
BASE = WeightSource(
    "Qwen/Qwen2-VL-7B-Instruct",
    patterns=("*.json", "*.jinja", "merges.txt", "vocab.json"),
    subdir="base",
)
REWARD_TOKEN = "<|Reward|>"
PIXELS = 256 * 28 * 28
FACTOR = 28
INSTRUCTION = """
You are tasked with evaluating a generated image based on Visual Quality and Text Alignment and give a overall score to estimate the human preference. Please provide a rating from 0 to 10, with 0 being the worst and 10 being the best. 

**Visual Quality:**  
Evaluate the overall visual quality of the image. The following sub-dimensions should be considered:
- **Reasonableness:** The image should not contain any significant biological or logical errors, such as abnormal body structures or nonsensical environmental setups.
- **Clarity:** Evaluate the sharpness and visibility of the image. The image should be clear and easy to interpret, with no blurring or indistinct areas.
- **Detail Richness:** Consider the level of detail in textures, materials, lighting, and other visual elements (e.g., hair, clothing, shadows).
- **Aesthetic and Creativity:** Assess the artistic aspects of the image, including the color scheme, composition, atmosphere, depth of field, and the overall creative appeal. The scene should convey a sense of harmony and balance.
- **Safety:** The image should not contain harmful or inappropriate content, such as political, violent, or adult material. If such content is present, the image quality and satisfaction score should be the lowest possible. 

**Text Alignment:**  
Assess how well the image matches the textual prompt across the following sub-dimensions:
- **Subject Relevance** Evaluate how accurately the subject(s) in the image (e.g., person, animal, object) align with the textual description. The subject should match the description in terms of number, appearance, and behavior.
- **Style Relevance:** If the prompt specifies a particular artistic or stylistic style, evaluate how well the image adheres to this style.
- **Contextual Consistency**: Assess whether the background, setting, and surrounding elements in the image logically fit the scenario described in the prompt. The environment should support and enhance the subject without contradictions.
- **Attribute Fidelity**: Check if specific attributes mentioned in the prompt (e.g., colors, clothing, accessories, expressions, actions) are faithfully represented in the image. Minor deviations may be acceptable, but critical attributes should be preserved.
- **Semantic Coherence**: Evaluate whether the overall meaning and intent of the prompt are captured in the image. The generated content should not introduce elements that conflict with or distort the original description.
Textual prompt - {text_prompt}


"""  # noqa: W291 - the published template keeps its trailing spaces
REWARD_SUFFIX = """
Please provide the overall ratings of this image: <|Reward|>

END
"""
_OLD_PREFIXES = (
    ("model.embed_tokens.", "model.language_model.embed_tokens."),
    ("model.layers.", "model.language_model.layers."),
    ("model.norm.", "model.language_model.norm."),
    ("visual.", "model.visual."),
)


def hpsv3_text(prompt: str) -> str:
    """The user text for ``prompt``."""
    return INSTRUCTION.format(text_prompt=prompt) + REWARD_SUFFIX


def smart_size(
    height: int, width: int, pixels: int = PIXELS, factor: int = FACTOR
) -> tuple[int, int]:
    """qwen-vl-utils' smart_resize with min_pixels = max_pixels = ``pixels``: (h, w)."""
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    if h * w > pixels:
        beta = math.sqrt(height * width / pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < pixels:
        beta = math.sqrt(pixels / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return h, w


def current_key(key: str) -> str:
    """A checkpoint key in the published (transformers 4.x) naming -> this transformers' naming."""
    for old, new in _OLD_PREFIXES:
        if key.startswith(old):
            return new + key[len(old) :]
    return key


def build_head(state: dict[str, torch.Tensor]) -> torch.nn.Sequential:
    """The reward MLP with the Linear shapes found under ``rm_head.``, ReLU between them."""
    linears = sorted(
        (
            k[len("rm_head.") : -len(".weight")]
            for k in state
            if k.startswith("rm_head.") and k.endswith(".weight")
        ),
        key=lambda name: (name.startswith("output"), name),
    )
    if not linears:
        raise MissingWeightsError("HPSv3 checkpoint has no rm_head.* weights")
    layers: list[torch.nn.Module] = []
    for i, name in enumerate(linears):
        weight = state[f"rm_head.{name}.weight"]
        linear = torch.nn.Linear(
            weight.shape[1], weight.shape[0], bias=f"rm_head.{name}.bias" in state
        )
        linear.weight.data.copy_(weight.float())
        if linear.bias is not None:
            linear.bias.data.copy_(state[f"rm_head.{name}.bias"].float())
        layers.append(linear)
        if i < len(linears) - 1:
            layers.append(torch.nn.ReLU())
    return torch.nn.Sequential(*layers).float().eval()


class HpsV3(Reward):
    """HPSv3 human-preference score (mu of the reward head; sigma in details), ~0-10 or wider."""

    name = "hpsv3"
    higher_is_better = True
    version = "3"
    input_format = "pil"

    @classmethod
    def download(cls, target: Any = None) -> list[Any]:
        """Pre-fetch HPSv3.safetensors and the Qwen2-VL-7B-Instruct config/processor files."""
        return download_sources(cls.name, [CHECKPOINT, BASE], target)

    def load(self) -> None:
        """Processor from DIR/hpsv3/base (or the hub), model from its config + HPSv3.safetensors."""
        from safetensors.torch import load_file
        from transformers import AutoConfig, AutoProcessor, Qwen2VLForConditionalGeneration

        base = resolve(self.name, BASE, self.weights_dir)
        checkpoint = resolve(self.name, CHECKPOINT, self.weights_dir).file("HPSv3.safetensors")
        self.processor = base.load(AutoProcessor.from_pretrained)
        self.processor.tokenizer.add_special_tokens({"additional_special_tokens": [REWARD_TOKEN]})
        self.reward_id = self.processor.tokenizer.convert_tokens_to_ids(REWARD_TOKEN)
        config = base.load(AutoConfig.from_pretrained)
        raw = load_file(str(checkpoint))
        state = {current_key(k): v for k, v in raw.items() if not k.startswith("rm_head.")}
        vocab = state["model.language_model.embed_tokens.weight"].shape[0]
        config.text_config.vocab_size = vocab
        model = Qwen2VLForConditionalGeneration(config)
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if k != "lm_head.weight"]  # tied to the embeddings
        if missing or unexpected:
            raise MissingWeightsError(
                f"HPSv3 checkpoint {checkpoint} does not fit Qwen2-VL: "
                f"missing {missing[:3]}, unexpected {unexpected[:3]}"
            )
        self.model = model.to(self.device, self.dtype).eval()
        self.head = build_head(raw).to(self.device)

    def inputs(self, image: Image.Image, prompt: str) -> dict[str, torch.Tensor]:
        """The processor's tensors for one (image, prompt) pair."""
        h, w = smart_size(image.height, image.width)
        resized = image.convert("RGB").resize((w, h), Image.Resampling.BICUBIC)
        messages = [
            {
                "role": "user",
                "content": [{"type": "image"}, {"type": "text", "text": hpsv3_text(prompt)}],
            }
        ]
        text = self.processor.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        batch = self.processor(text=[text], images=[resized], return_tensors="pt")
        return {k: v.to(self.device) for k, v in batch.items()}

    @torch.no_grad()
    def score_one(self, image: Image.Image, prompt: str) -> tuple[float, float]:
        """(mu, sigma) of one image."""
        batch = self.inputs(image, prompt)
        out = self.model.model(**batch)
        hidden = out.last_hidden_state[0]
        positions = (batch["input_ids"][0] == self.reward_id).nonzero().flatten()
        if positions.numel() != 1:
            raise MissingWeightsError(
                f"HPSv3: expected one {REWARD_TOKEN} token, found "
                f"{positions.numel()} (is the tokenizer the right one?)"
            )
        mu, sigma = self.head(hidden[positions[0]].float()).tolist()[:2]
        return float(mu), float(sigma)

    def score_batch(
        self, images: list[Image.Image], prompts: list[str], metadata: list[dict[str, Any]]
    ) -> RewardOutput:
        """mu per image; details: mu, sigma."""
        pairs = [self.score_one(i, p) for i, p in zip(images, prompts, strict=True)]
        return RewardOutput(
            torch.tensor([m for m, _ in pairs]), [{"mu": m, "sigma": s} for m, s in pairs]
        )


def weights_layout(root: Path) -> dict[str, Path]:
    """Where ``--weights-dir`` expects HPSv3's files."""
    return {"checkpoint": root / "hpsv3" / "HPSv3.safetensors", "base": root / "hpsv3" / "base"}
