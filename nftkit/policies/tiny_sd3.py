"""An offline, random-init Stable Diffusion 3 pipeline for tests and local runs.

Every component of ``StableDiffusion3Pipeline`` is present (two CLIP text encoders with
projection, a T5 encoder, their tokenizers, an SD3.5-style transformer with dual attention and
RMS q/k norm, a 16-channel AutoencoderKL and the flow-matching Euler scheduler), only tiny. The
tokenizers are trained here, offline, with the ``tokenizers`` library on a few sentences, so
nothing is downloaded. ``save_tiny_sd3(DIR)`` writes the real diffusers layout
(model_index.json + one folder per component) that ``StableDiffusion3Pipeline.from_pretrained``
loads.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

# A small corpus for the tokenizers: the words of typical training prompts.
_CORPUS = [
    "a photo of a red cube and a blue sphere",
    "a photo of two cats sitting on a green sofa",
    "a photo of three dogs left of a yellow car",
    "a black bicycle right of a white horse above a brown table",
    "an orange umbrella below a purple pizza next to a pink bowl",
    'a sign that says "hello world" in bold letters',
    "a cinematic painting of a mountain lake at sunset, highly detailed",
    "a cute robot reading a book in a cozy library",
    "four apples, one banana and a cup of coffee on a wooden desk",
    "the quick brown fox jumps over the lazy dog",
    "a close-up portrait of an old man with a hat, 4k, sharp focus",
    "an astronaut riding a horse on the moon",
]
CLIP_BOS, CLIP_EOS = "<|startoftext|>", "<|endoftext|>"


@dataclass
class TinySD3Config:
    """Sizes of the tiny pipeline (images are ``image_size`` pixels square)."""

    image_size: int = 64
    vae_channels: tuple[int, ...] = (8, 8, 8, 8)
    latent_channels: int = 16
    num_layers: int = 2
    heads: int = 2
    head_dim: int = 8
    clip_dim: int = 16
    clip_projection_dim: int = 16
    t5_dim: int = 32
    vocab_size: int = 300
    shift: float = 3.0
    seed: int = 0
    transformer: dict[str, Any] = field(default_factory=dict)  # SD3Transformer2DModel overrides
    vae: dict[str, Any] = field(default_factory=dict)  # AutoencoderKL overrides


def train_clip_tokenizer(vocab_size: int) -> Any:
    """A CLIP BPE tokenizer trained offline on the built-in corpus (transformers class)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import CLIPTokenizer

    bpe = Tokenizer(models.BPE(unk_token=CLIP_EOS, end_of_word_suffix="</w>"))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[CLIP_BOS, CLIP_EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        end_of_word_suffix="</w>",
        show_progress=False,
    )
    bpe.train_from_iterator([s.lower() for s in _CORPUS], trainer)
    vocab = bpe.get_vocab()
    return CLIPTokenizer(vocab=vocab, merges=_bpe_merges(bpe), model_max_length=77)


def _bpe_merges(tokenizer: Any) -> list[tuple[str, str]]:
    import json

    raw = json.loads(tokenizer.to_str())["model"]["merges"]
    return [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in raw]


def train_t5_tokenizer(vocab_size: int) -> Any:
    """A T5 Unigram tokenizer trained offline on the built-in corpus (transformers class)."""
    import json

    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import T5TokenizerFast

    unigram = Tokenizer(models.Unigram())
    unigram.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size,
        special_tokens=["<pad>", "</s>", "<unk>"],
        unk_token="<unk>",
        show_progress=False,
    )
    unigram.train_from_iterator(_CORPUS, trainer)
    vocab = [tuple(item) for item in json.loads(unigram.to_str())["model"]["vocab"]]
    return T5TokenizerFast(vocab=vocab, extra_ids=0, model_max_length=512)


def build_tiny_sd3(config: TinySD3Config | None = None) -> Any:
    """A random-init ``StableDiffusion3Pipeline`` (float32, CPU) with every component."""
    from diffusers import (
        AutoencoderKL,
        FlowMatchEulerDiscreteScheduler,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, T5Config, T5EncoderModel

    cfg = config or TinySD3Config()
    vae_channels = tuple(cfg.vae.get("block_out_channels", cfg.vae_channels))
    factor = 2 ** (len(vae_channels) - 1)
    if cfg.image_size % (factor * 2):
        raise ValueError(f"image_size must be a multiple of {factor * 2}, got {cfg.image_size}")
    torch.manual_seed(cfg.seed)
    tokenizer = train_clip_tokenizer(cfg.vocab_size)
    tokenizer_3 = train_t5_tokenizer(cfg.vocab_size)

    def clip_encoder() -> Any:
        text_config = CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=cfg.clip_dim,
            intermediate_size=2 * cfg.clip_dim,
            projection_dim=cfg.clip_projection_dim,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=77,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            hidden_act="gelu",
        )
        return CLIPTextModelWithProjection(text_config).eval()

    text_encoder, text_encoder_2 = clip_encoder(), clip_encoder()
    t5_config = T5Config(
        vocab_size=len(tokenizer_3),
        d_model=cfg.t5_dim,
        d_kv=8,
        d_ff=2 * cfg.t5_dim,
        num_layers=1,
        num_heads=2,
        relative_attention_num_buckets=8,
        dropout_rate=0.0,
        feed_forward_proj="gated-gelu",
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
    )
    text_encoder_3 = T5EncoderModel(t5_config).eval()
    latent_size = cfg.image_size // factor
    transformer_kwargs: dict[str, Any] = dict(
        sample_size=latent_size,
        patch_size=2,
        in_channels=cfg.latent_channels,
        num_layers=cfg.num_layers,
        attention_head_dim=cfg.head_dim,
        num_attention_heads=cfg.heads,
        joint_attention_dim=cfg.t5_dim,
        caption_projection_dim=cfg.heads * cfg.head_dim,
        pooled_projection_dim=2 * cfg.clip_projection_dim,
        out_channels=cfg.latent_channels,
        pos_embed_max_size=max(latent_size // 2, 8),
        dual_attention_layers=(0,),
        qk_norm="rms_norm",
    )
    transformer = SD3Transformer2DModel(**{**transformer_kwargs, **cfg.transformer}).eval()
    blocks = len(vae_channels)
    vae_kwargs: dict[str, Any] = dict(
        in_channels=3,
        out_channels=3,
        block_out_channels=vae_channels,
        down_block_types=("DownEncoderBlock2D",) * blocks,
        up_block_types=("UpDecoderBlock2D",) * blocks,
        layers_per_block=1,
        latent_channels=cfg.latent_channels,
        norm_num_groups=min(vae_channels),
        sample_size=cfg.image_size,
        scaling_factor=1.5305,
        shift_factor=0.0609,
        use_quant_conv=False,
        use_post_quant_conv=False,
        mid_block_add_attention=False,
    )
    vae = AutoencoderKL(**{**vae_kwargs, **cfg.vae}).eval()
    scheduler = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=cfg.shift)
    return StableDiffusion3Pipeline(
        transformer=transformer,
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        text_encoder_2=text_encoder_2,
        tokenizer_2=tokenizer,
        text_encoder_3=text_encoder_3,
        tokenizer_3=tokenizer_3,
    )


def save_tiny_sd3(path: str | Path, config: TinySD3Config | None = None) -> Path:
    """Build the tiny pipeline and write it in the diffusers layout (safetensors)."""
    path = Path(path)
    pipe = build_tiny_sd3(config)
    pipe.save_pretrained(str(path), safe_serialization=True)
    return path
