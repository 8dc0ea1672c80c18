"""A tiny random-init Qwen2-VL (model + processor) in the Hugging Face on-disk format.

For offline tests of the transformers VLM backend: a byte-level BPE tokenizer trained on a
small corpus with Qwen2-VL's special tokens, Qwen2-VL's image processor and a ChatML chat
template, a 1-layer language model and a 1-block vision tower. Loads with
``AutoProcessor`` / ``AutoModelForImageTextToText`` like the published checkpoints.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
]
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% else %}{{ c['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
_CORPUS = [
    "Yes yes No no one two three four five six seven eight nine ten 1 2 3 4 5 6 7 8 9 10",
    "How many cats are in the image? Answer in one word. Is the dog brown? Are there any",
    "Final Score: Alignment Coherence Style Does this image show a red cat on a table",
]


def tiny_qwen2vl_processor() -> Any:
    """The processor: trained tokenizer, small-pixel image processor, chat template."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (
        Qwen2TokenizerFast,
        Qwen2VLImageProcessor,
        Qwen2VLProcessor,
        Qwen2VLVideoProcessor,
    )

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(_CORPUS * 3, trainer)
    tokenizer = Qwen2TokenizerFast(
        tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    images = Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=112 * 112)
    return Qwen2VLProcessor(
        image_processor=images,
        tokenizer=tokenizer,
        video_processor=Qwen2VLVideoProcessor(),
        chat_template=CHAT_TEMPLATE,
    )


def save_tiny_qwen2vl(path: str | Path, seed: int = 0) -> Path:
    """Write a tiny random-init Qwen2-VL and its processor to ``path``; returns it."""
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    path = Path(path)
    processor = tiny_qwen2vl_processor()
    tok = processor.tokenizer
    ids = {t: tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    config = Qwen2VLConfig(
        text_config={
            "vocab_size": len(tok),
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 1,
            "num_attention_heads": 2,
            "num_key_value_heads": 1,
            "rope_scaling": {"type": "mrope", "mrope_section": [4, 2, 2]},
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": 1,
            "embed_dim": 32,
            "hidden_size": 32,
            "num_heads": 2,
            "mlp_ratio": 2,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "temporal_patch_size": 2,
            "in_channels": 3,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
    )
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config).eval()
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    processor.save_pretrained(path)
    return path


def _old_key(key: str) -> str:
    """This transformers' Qwen2-VL key -> the published (transformers 4.x) naming."""
    for new, old in (("model.language_model.", "model."), ("model.visual.", "visual.")):
        if key.startswith(new):
            return old + key[len(new) :]
    return key


def write_tiny_hpsv3(folder: str | Path, seed: int = 0) -> Path:
    """DIR/hpsv3/: ``HPSv3.safetensors`` (tiny Qwen2-VL + ranknet head, published key names)
    and ``base/`` (its config and processor), the layout of the real checkpoint."""
    from safetensors.torch import save_file
    from transformers import AutoConfig, Qwen2VLForConditionalGeneration

    folder = Path(folder)
    base = save_tiny_qwen2vl(folder / "base", seed=seed)
    (base / "model.safetensors").unlink()  # the base folder holds config + processor only
    config = AutoConfig.from_pretrained(base)
    config.text_config.vocab_size += 1  # room for <|Reward|>, added at load time
    torch.manual_seed(seed + 1)
    model = Qwen2VLForConditionalGeneration(config)
    state = {_old_key(k): v.contiguous() for k, v in model.state_dict().items()}
    hidden = config.text_config.hidden_size
    head = {
        "rm_head.0.weight": (16, hidden),
        "rm_head.0.bias": (16,),
        "rm_head.layer_1.0.weight": (16, 16),
        "rm_head.layer_1.0.bias": (16,),
        "rm_head.output_layer.weight": (2, 16),
    }
    for key, shape in head.items():
        state[key] = torch.randn(shape) * 0.5
    save_file(state, str(folder / "HPSv3.safetensors"))
    return folder
