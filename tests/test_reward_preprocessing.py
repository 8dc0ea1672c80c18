"""Preprocessing and score definitions checked against independent computations in the test."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nftkit.registry import create_reward
from nftkit.rewards.hpsv2 import hps_pixels, resize_longest_and_pad
from nftkit.rewards.imagereward import REWARD_MEAN, REWARD_STD

MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(3, 1, 1)
STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(3, 1, 1)


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def to_normalized(image: Image.Image) -> torch.Tensor:
    x = torch.from_numpy(np.asarray(image, dtype=np.float32) / 255.0).permute(2, 0, 1)
    return (x - MEAN) / STD


def test_pickscore_is_logit_scale_times_cosine(tiny_weights: Path) -> None:
    from transformers import CLIPImageProcessor, CLIPModel, CLIPTokenizer

    folder = tiny_weights / "pickscore"
    model = CLIPModel.from_pretrained(folder).eval()
    model.logit_scale.data.fill_(np.log(50.0))  # make the scale matter: exp -> 50
    images, prompts = [noise(120, 90), noise(64, 100, 1)], ["a red cat", "two dogs"]
    pixels = CLIPImageProcessor.from_pretrained(folder)(images=images, return_tensors="pt")
    tokens = CLIPTokenizer.from_pretrained(folder)(prompts, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model(pixel_values=pixels["pixel_values"], **tokens)
    expected = out.logits_per_image.diagonal()  # exp(logit_scale) * cos, computed by transformers
    reward = create_reward("pickscore", weights_dir=tiny_weights)
    reward.ensure_loaded()
    reward._clip.model.logit_scale.data.fill_(np.log(50.0))
    torch.testing.assert_close(reward(images, prompts).scores, expected, rtol=1e-4, atol=1e-4)
    cos = torch.nn.functional.cosine_similarity(out.image_embeds, out.text_embeds)
    torch.testing.assert_close(expected, 50.0 * cos, rtol=1e-4, atol=1e-4)


def test_clip_processor_is_shortest_side_224_center_crop(tiny_weights: Path) -> None:
    image = noise(300, 200)
    reward = create_reward("clipscore", weights_dir=tiny_weights)
    reward.ensure_loaded()
    got = reward._clip.pixel_values([image])[0]
    resized = image.resize((336, 224), Image.Resampling.BICUBIC)  # shortest side -> 224
    cropped = resized.crop((56, 0, 280, 224))
    expected = to_normalized(cropped)
    assert got.shape == (3, 224, 224)
    assert (got - expected).abs().mean() < 0.02  # PIL bicubic both sides; rounding may differ


@pytest.mark.parametrize(("width", "height"), [(100, 50), (51, 200), (224, 100), (300, 300)])
def test_hps_resizes_longest_side_and_pads_with_black(width: int, height: int) -> None:
    image = noise(width, height)
    scale = 224 / max(width, height)
    new_w, new_h = round(width * scale), round(height * scale)
    canvas = Image.new("RGB", (224, 224), (0, 0, 0))
    resized = (
        image
        if (new_w, new_h) == (width, height)
        else image.resize((new_w, new_h), Image.Resampling.BICUBIC)
    )
    canvas.paste(resized, ((224 - new_w) // 2, (224 - new_h) // 2))
    got = resize_longest_and_pad(image, 224)
    assert got.size == (224, 224)
    assert np.array_equal(np.asarray(got), np.asarray(canvas))
    torch.testing.assert_close(hps_pixels([image], 224)[0], to_normalized(canvas))
    if new_h < 224:  # black rows above and below, normalized to -mean/std
        assert torch.allclose(hps_pixels([image], 224)[0][:, 0, :], (-MEAN / STD).view(3, 1))


def test_hps_score_is_cosine_of_open_clip_features(tiny_weights: Path) -> None:
    import open_clip

    folder = tiny_weights / "hpsv2"
    model = open_clip.create_model(f"local-dir:{folder}", pretrained=None, load_weights=False)
    state = torch.load(folder / "HPS_v2.1_compressed.pt", weights_only=True)["state_dict"]
    model.load_state_dict(state)
    images, prompts = [noise(160, 90)], ["a lighthouse at dusk"]
    tokens = open_clip.get_tokenizer("ViT-H-14")(prompts)
    with torch.no_grad():
        img = model.encode_image(hps_pixels(images, 224))
        txt = model.encode_text(tokens)
    expected = torch.nn.functional.cosine_similarity(img, txt)
    got = create_reward("hpsv2", weights_dir=tiny_weights)(images, prompts).scores
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_aesthetic_is_mlp_of_unit_image_embedding(tiny_weights: Path) -> None:
    from transformers import CLIPImageProcessor, CLIPModel

    folder = tiny_weights / "aesthetic"
    model = CLIPModel.from_pretrained(folder).eval()
    images = [noise(128, 96), noise(96, 128, 2)]
    pixels = CLIPImageProcessor.from_pretrained(folder)(images=images, return_tensors="pt")
    with torch.no_grad():
        embeds = model.get_image_features(pixel_values=pixels["pixel_values"])
    embeds = getattr(embeds, "pooler_output", embeds)
    x = embeds / embeds.norm(dim=-1, keepdim=True)
    head = torch.load(folder / "sac+logos+ava1-l14-linearMSE.pth", weights_only=True)
    for i in (0, 2, 4, 6, 7):  # five linear layers, no activations (dropouts are identity)
        x = x @ head[f"layers.{i}.weight"].T + head[f"layers.{i}.bias"]
    got = create_reward("aesthetic", weights_dir=tiny_weights)(images, ["", ""]).scores
    torch.testing.assert_close(got, x.squeeze(-1), rtol=1e-5, atol=1e-5)


def test_imagereward_preprocessing_and_affine(tiny_weights: Path) -> None:
    reward = create_reward("imagereward", weights_dir=tiny_weights)
    reward.ensure_loaded()
    image = noise(200, 100)
    resized = image.resize((448, 224), Image.Resampling.BICUBIC)  # shortest side 224
    expected = to_normalized(resized.crop((112, 0, 336, 224)))
    assert (reward.pixels([image])[0] - expected).abs().mean() < 0.02
    tokens = reward.tokens(["a cat"])
    assert tokens["input_ids"].shape == (1, 35)  # padded to BLIP's 35 tokens
    assert tokens["attention_mask"][0].sum() == 2 + len("cat") + 1  # [CLS] a c ##a ##t [SEP]
    images, prompts = [image, noise(90, 90, 3)], ["a cat", "a dog on grass"]
    raw = reward.raw_scores(images, prompts)
    got = reward(images, prompts).scores
    torch.testing.assert_close(got, (raw - 0.16717362830052426) / 1.0333394966054072)
    assert (REWARD_MEAN, REWARD_STD) == (0.16717362830052426, 1.0333394966054072)


def test_imagereward_checkpoint_keys_load_strictly(tiny_weights: Path) -> None:
    """All of our BLIP tensors come from the file; a wrong shape is a clear error."""
    state = torch.load(tiny_weights / "imagereward" / "ImageReward.pt", weights_only=True)
    assert any(k.startswith("blip.text_encoder.encoder.layer.0.crossattention.") for k in state)
    assert any(k.startswith("mlp.layers.7.") for k in state)
