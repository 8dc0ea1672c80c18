"""The OCR metric against Flow-GRPO's ocr.py: values computed by hand from its steps.

Reference steps: target = prompt.split('"')[1]; text = "".join(t for t, conf in lines if conf > 0);
both sides: .replace(' ', '').lower(); dist = 0 if target in text else Levenshtein(text, target);
dist = min(dist, len(target)); reward = 1 - dist / len(target).
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import pytest
from PIL import Image

from nftkit.errors import InputError
from nftkit.rewards.ocr import OcrReward, ocr_score, ocr_target


@pytest.mark.parametrize(
    ("recognized", "target", "expected"),
    [
        ("O p e n  Late", "open late", 1.0),  # plain spaces vanish on both sides
        ("Hello\tWorld", "hello world", 1 - 1 / 10),  # the tab stays: one deletion
        ("OPEN\nLATE", "Open Late", 1 - 1 / 8),  # the newline stays
        ("Open Late", "Open\u00a0Late", 1 - 1 / 9),  # NBSP stays in the target: len 9
        ("ab", "a\tb", 1 - 1 / 3),  # a tab in the target counts in its length
        ("xx open\u00a0late yy", "open\u00a0late", 1.0),  # still a substring
    ],
)
def test_only_plain_spaces_are_removed(recognized: str, target: str, expected: float) -> None:
    assert ocr_score(recognized, target) == pytest.approx(expected, abs=1e-12)


def test_a_single_double_quote_scores_the_text_after_it(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="nftkit.rewards.ocr"):
        assert ocr_target('A storefront sign that says "Fresh Bread daily') == "Fresh Bread daily"
    assert "single double quote" in caplog.text
    assert ocr_target('a "b" c "d"') == "b"  # the first pair, as split('"')[1]
    assert ocr_target('"Hi" there') == "Hi"


@pytest.mark.parametrize("prompt", ["no quotes at all", 'empty "" quotes', 'spaces "   " only'])
def test_prompts_without_a_usable_target_are_one_clear_error(prompt: str) -> None:
    with pytest.raises(InputError, match="OCR prompt") as info:
        ocr_target(prompt)
    assert "\n" not in str(info.value)


def test_a_tab_only_target_is_kept_as_the_reference_keeps_it() -> None:
    assert ocr_target('write "\t" here') == "\t"
    assert ocr_score("x", "\t") == 0.0  # Levenshtein("x", "\t") = 1, len 1


class FakeEngine:
    def __init__(self, lines: list[tuple[str, float]]) -> None:
        self.lines = lines
        self.arrays: list[np.ndarray] = []

    def __call__(self, image: np.ndarray) -> list[tuple[str, float]]:
        self.arrays.append(image)
        return self.lines


def make_reward(lines: list[tuple[str, float]]) -> tuple[OcrReward, FakeEngine]:
    reward, engine = OcrReward(), FakeEngine(lines)
    reward._engine, reward._loaded = engine, True
    return reward, engine


def test_reward_joins_confident_lines_and_reads_single_quote_prompts() -> None:
    reward, _ = make_reward([("Fresh\tBread", 0.9), ("noise", 0.0), (" daily", 0.5)])
    out = reward([Image.new("RGB", (8, 8))], ['sign: "Fresh Bread daily'])
    # text "fresh\tbreaddaily" vs target "freshbreaddaily" (15): one deletion
    assert out.scores.tolist() == [pytest.approx(1 - 1 / 15)]
    assert out.details[0] == {"target": "Fresh Bread daily", "recognized": "Fresh\tBread daily"}


def test_translucent_images_reach_the_engine_as_paddleocr_composites_them() -> None:
    reward, engine = make_reward([("hi", 0.9)])
    pixels = np.array([[[100, 0, 200, 0], [100, 0, 200, 255], [100, 30, 200, 77]]], np.uint8)
    reward([Image.fromarray(pixels, "RGBA")], ['"hi"'])
    got = engine.arrays[0]
    assert got.shape == (1, 3, 3)
    a = 77 / 255  # PaddleOCR alpha_to_color: uint8(255 * (1 - a) + c * a), truncated
    expected = [[255, 255, 255], [100, 0, 200],
                [int(255 * (1 - a) + c * a) for c in (100, 30, 200)]]  # fmt: skip
    assert got[0].tolist() == expected


def test_engine_failure_scores_zero() -> None:
    class Broken:
        def __call__(self, image: Any) -> Any:
            raise RuntimeError("engine crashed")

    reward = OcrReward()
    reward._engine, reward._loaded = Broken(), True
    assert reward([Image.new("RGB", (4, 4))], ['"x"']).scores.tolist() == [0.0]
