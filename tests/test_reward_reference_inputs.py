"""CLIPScore with DiffusionNFT's ClipScorer transform, and translucent inputs converted as each
reward's reference package converts them; expected values built from the reference steps.

References: DiffusionNFT flow_grpo/clip_scorer.py (T.Resize(224) on the float tensor: bilinear,
antialias on in torchvision 0.21; T.CenterCrop(224); T.Normalize; logits_per_image.diagonal()
/ 100). transformers 4.40 convert_to_rgb and open_clip: image.convert("RGB"). image-reward:
Resize(bicubic) -> CenterCrop -> convert("RGB") -> ToTensor -> Normalize.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nftkit.errors import UsageError
from nftkit.eval.layout import load_png
from nftkit.evaluators.drawbench import DrawBenchEvaluator
from nftkit.images import ensure_rgb, load_image
from nftkit.registry import create_reward

MEAN = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
STD = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)


def translucent(width: int, height: int, seed: int = 0) -> Image.Image:
    """Random colors with random alpha (some fully transparent pixels)."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (height, width, 4), dtype=np.uint8)
    pixels[::3, ::2, 3] = 0
    return Image.fromarray(pixels, "RGBA")


def white_composite(image: Image.Image) -> Image.Image:
    background = Image.new("RGBA", image.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, image).convert("RGB")


def clip_scorer_reference(
    folder: Path, images: torch.Tensor, prompts: list[str], logit_scale: float | None = None
) -> torch.Tensor:
    """DiffusionNFT's ClipScorer steps, written out with torch and transformers directly."""
    from transformers import CLIPModel, CLIPTokenizer

    model = CLIPModel.from_pretrained(folder).eval()
    if logit_scale is not None:
        model.logit_scale.data.fill_(logit_scale)
    _, _, h, w = images.shape
    short, long = min(h, w), max(h, w)
    size = (224, int(224 * long / short)) if h <= w else (int(224 * long / short), 224)
    x = torch.nn.functional.interpolate(images, size=size, mode="bilinear", align_corners=False,
                                        antialias=True)  # fmt: skip
    top, left = round((size[0] - 224) / 2.0), round((size[1] - 224) / 2.0)
    x = (x[:, :, top : top + 224, left : left + 224] - MEAN) / STD
    tokens = CLIPTokenizer.from_pretrained(folder)(prompts, padding="max_length", max_length=77,
                                                   truncation=True, return_tensors="pt")  # fmt: skip
    with torch.no_grad():
        out = model(pixel_values=x, input_ids=tokens["input_ids"],
                    attention_mask=tokens["attention_mask"])  # fmt: skip
    return out.logits_per_image.diagonal() / 100


# ---------------------------------------------------------------- CLIPScore


def test_diffusionnft_clipscore_is_the_clip_scorer(tiny_weights: Path) -> None:
    images = torch.rand(2, 3, 400, 600, generator=torch.Generator().manual_seed(0))  # downsampled
    prompts = ["a red cat", "two dogs on a sofa"]
    expected = clip_scorer_reference(tiny_weights / "clipscore", images, prompts)
    reward = create_reward("clipscore", weights_dir=tiny_weights, preprocess="diffusionnft")
    torch.testing.assert_close(reward(images, prompts).scores, expected, rtol=1e-4, atol=1e-6)
    # exp(logit_scale) / 100 scales the cosine: 1 for the OpenAI checkpoint (scale 100)
    reward._clip.model.logit_scale.data.fill_(math.log(100.0))
    cos = reward(images, prompts).scores
    reference = clip_scorer_reference(tiny_weights / "clipscore", images, prompts, math.log(100.0))
    torch.testing.assert_close(cos, reference, rtol=1e-4, atol=1e-6)
    assert cos.abs().max() <= 1.0 and not torch.allclose(cos, expected)


def test_diffusionnft_path_uses_float_tensors_as_given(tiny_weights: Path) -> None:
    reward = create_reward("clipscore", weights_dir=tiny_weights, preprocess="diffusionnft")
    reward.ensure_loaded()
    reward._clip.model.logit_scale.data.fill_(math.log(100.0))
    images = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(1))
    on_grid = (images * 255).round() / 255
    pil = Image.fromarray((on_grid[0].permute(1, 2, 0) * 255).round().byte().numpy())
    a, b, c = (reward(x, ["a cat"]).scores for x in (images, on_grid, [pil]))
    torch.testing.assert_close(b, c)  # 8-bit images are exactly x / 255
    assert not torch.equal(a, b)  # a float tensor is not quantized first


def test_the_two_clipscore_paths_differ_and_mixed_sizes_work(tiny_weights: Path) -> None:
    rng = np.random.default_rng(2)
    images = [Image.fromarray(rng.integers(0, 256, s, dtype=np.uint8)) for s in
              [(200, 300, 3), (90, 120, 3)]]  # fmt: skip
    ref = create_reward("clipscore", weights_dir=tiny_weights, preprocess="diffusionnft")
    proc = create_reward("clipscore", weights_dir=tiny_weights)
    for reward in (ref, proc):
        reward.ensure_loaded()
        reward._clip.model.logit_scale.data.fill_(math.log(100.0))
    a, b = ref(images, ["x", "y"]).scores, proc(images, ["x", "y"]).scores
    assert a.shape == b.shape == (2,) and not torch.allclose(a, b, atol=1e-6)
    with pytest.raises(Exception, match="preprocess"):
        create_reward("clipscore", preprocess="bicubic")


def test_drawbench_suite_defaults_to_the_reference_clipscore() -> None:
    suite = DrawBenchEvaluator(rewards="clipscore")
    assert suite.settings()["clip_preprocess"] == "diffusionnft"  # recorded in the run config
    assert suite._reward("clipscore").preprocess == "diffusionnft"
    other = DrawBenchEvaluator(rewards="clipscore", clip_preprocess="processor")
    assert other._reward("clipscore").preprocess == "processor"
    assert other.settings() != suite.settings()
    with pytest.raises(UsageError, match="clip-preprocess"):
        DrawBenchEvaluator(clip_preprocess="bilinear")


# ---------------------------------------------------------------- translucent inputs


@pytest.mark.parametrize("name", ["pickscore", "hpsv2", "clipscore", "aesthetic"])
def test_alpha_is_dropped_like_convert_rgb(name: str, tiny_weights: Path) -> None:
    image = translucent(90, 70)
    reward = create_reward(name, weights_dir=tiny_weights)
    got = reward([image], ["a photo of a cat"]).scores
    dropped = reward([image.convert("RGB")], ["a photo of a cat"]).scores
    white = reward([white_composite(image)], ["a photo of a cat"]).scores
    assert torch.equal(got, dropped)
    assert not torch.equal(got, white)


def test_imagereward_resizes_the_translucent_image_then_drops_alpha(tiny_weights: Path) -> None:
    reward = create_reward("imagereward", weights_dir=tiny_weights)
    reward.ensure_loaded()
    image = translucent(300, 200)
    # image-reward's order: bicubic resize of the RGBA image (PIL premultiplies alpha), center
    # crop, then convert("RGB")
    resized = image.resize((336, 224), Image.Resampling.BICUBIC)
    cropped = resized.crop((56, 0, 280, 224)).convert("RGB")
    x = torch.from_numpy(np.asarray(cropped, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    expected = (x - MEAN) / STD
    got = reward.pixels([reward.convert_images([image])[0]])
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    converted_first = reward.pixels([image.convert("RGB")])
    assert (converted_first - got).abs().max() > 0.1  # the order matters on translucent pixels


def test_ensure_rgb_modes() -> None:
    pixel = Image.fromarray(np.array([[[100, 30, 200, 77]]], np.uint8), "RGBA")
    a = 77 / 255
    assert ensure_rgb(pixel, "drop").getpixel((0, 0)) == (100, 30, 200)
    assert ensure_rgb(pixel, "white-floor").getpixel((0, 0)) == tuple(
        int(255 * (1 - a) + c * a) for c in (100, 30, 200)
    )
    assert ensure_rgb(pixel, "keep") is pixel
    assert ensure_rgb(pixel).getpixel((0, 0)) == white_composite(pixel).getpixel((0, 0))
    with pytest.raises(ValueError, match="alpha"):
        ensure_rgb(pixel, "black")


def test_files_keep_their_alpha_until_a_reward_converts_them(tmp_path: Path) -> None:
    image = translucent(8, 6)
    image.save(tmp_path / "a.png")
    Image.new("RGB", (4, 4), (1, 2, 3)).save(tmp_path / "b.png")
    for load in (load_image, load_png):
        loaded = load(tmp_path / "a.png")
        assert loaded is not None and loaded.mode == "RGBA"
        assert np.array_equal(np.asarray(loaded), np.asarray(image))
        plain = load(tmp_path / "b.png")
        assert plain is not None and plain.mode == "RGB"
