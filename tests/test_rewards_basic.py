"""The two rewards that ship with the foundation: OCR (RapidOCR engine) and JPEG size."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw, ImageFont

from nftkit.errors import InputError, InvalidScoreError
from nftkit.rewards.base import Reward, RewardOutput
from nftkit.rewards.jpeg import JpegCompressibility
from nftkit.rewards.ocr import OcrReward, levenshtein, ocr_score, ocr_target


def render_text(text: str, size: tuple[int, int] = (512, 256)) -> Image.Image:
    """Black text on white, as a text-rendering model would ideally draw it."""
    image = Image.new("RGB", size, "white")
    font = ImageFont.load_default(size=44)
    ImageDraw.Draw(image).text((24, 100), text, fill="black", font=font)
    return image


@pytest.fixture(scope="module")
def ocr() -> OcrReward:
    return OcrReward(batch_size=4)


def test_levenshtein_and_metric_by_hand() -> None:
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("", "abc") == 3
    assert ocr_score("xx Hello World yy", "hello world") == 1.0  # substring -> distance 0
    assert ocr_score("hallo world", "Hello World") == pytest.approx(1 - 1 / 10)
    assert ocr_score("", "hello") == 0.0  # capped at len(target)
    assert ocr_score("completely different text", "abc") == 0.0


def test_target_extraction() -> None:
    assert ocr_target('A neon sign that reads "Open Late" and "x"') == "Open Late"
    with pytest.raises(InputError, match="no quoted target"):
        ocr_target("a sign with no quotes")


def test_ocr_correct_blank_and_typo(ocr: OcrReward) -> None:
    target = "Morning Coffee"
    prompt = f'a chalkboard that says "{target}"'
    images = [
        render_text(target),
        Image.new("RGB", (512, 256), "white"),
        render_text("Morning Toffee"),
    ]
    out = ocr(images, [prompt] * 3)
    assert out.scores.dtype == torch.float32 and out.scores.shape == (3,)
    correct, blank, typo = out.scores.tolist()
    assert correct >= 0.9
    assert blank <= 0.1
    recognized = out.details[2]["recognized"].replace(" ", "").lower()
    assert recognized == "morningtoffee"
    assert typo == pytest.approx(1 - 1 / len("morningcoffee"))
    assert blank < typo < correct


def test_ocr_accepts_tensor_batches(ocr: OcrReward) -> None:
    image = render_text("Hello")
    tensor = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float() / 255
    out = ocr(tensor, ['"Hello"'])
    assert out.scores.item() >= 0.9


def test_jpeg_reward_matches_encoded_size() -> None:
    rng = np.random.default_rng(0)
    noisy = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    flat = Image.new("RGB", (64, 64), (10, 20, 30))
    out = JpegCompressibility()([noisy, flat], ["", ""])
    for image, score in zip([noisy, flat], out.scores.tolist(), strict=True):
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=95)
        assert score == pytest.approx(-(buffer.tell() / 1000) / 500, rel=1e-6)
    assert out.scores[1] > out.scores[0]


def test_batching_gives_identical_scores() -> None:
    rng = np.random.default_rng(1)
    images = [Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)) for _ in range(5)]
    one = JpegCompressibility(batch_size=1)(images, [""] * 5).scores
    four = JpegCompressibility(batch_size=4)(images, [""] * 5).scores
    assert torch.equal(one, four)


def test_contract_violations_are_clear() -> None:
    class WrongShape(Reward):
        name = "wrong"

        def score_batch(self, images, prompts, metadata):  # type: ignore[no-untyped-def]
            return RewardOutput(torch.zeros(len(images) + 1))

    with pytest.raises(InvalidScoreError, match=r"shape \(3,\), expected \(2,\)"):
        WrongShape()([Image.new("RGB", (4, 4))] * 2, ["a", "b"])
    with pytest.raises(InputError, match="2 images but 1 prompts"):
        JpegCompressibility()([Image.new("RGB", (4, 4))] * 2, ["a"])
