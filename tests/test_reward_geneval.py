"""GenEval judge rules on synthetic detections, the mmdet-style post-processing, the color crop,
and the reward's wiring of detector, colors and modes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from nftkit.errors import InputError
from nftkit.rewards._geneval_color import masked_crop
from nftkit.rewards._geneval_detect import GenevalDetection, instances_from_logits
from nftkit.rewards.geneval import GENEVAL_CLASSES, GENEVAL_COLORS, GenevalReward
from nftkit.rewards.geneval_rules import (
    MAX_OBJECTS,
    judge_detections,
    kept_detections,
    relation_vector,
    relations,
)


def det(cls: str, box: tuple[float, float, float, float] = (0, 0, 10, 10), score: float = 0.95,
        color: str | None = None) -> GenevalDetection:  # fmt: skip
    return GenevalDetection(cls, box, score, np.zeros((1, 1), bool), color)


def judge(meta: dict[str, Any], dets: list[GenevalDetection]) -> Any:
    return judge_detections(meta, dets, GENEVAL_COLORS)


def test_thresholds_are_strict_and_counting_uses_0_9() -> None:
    dets = [det("cat", score=0.5), det("cat", score=0.3), det("dog", score=0.91)]
    assert {k: len(v) for k, v in kept_detections(dets, "single_object").items()} == {
        "cat": 1,
        "dog": 1,
    }
    assert {k: len(v) for k, v in kept_detections(dets, "counting").items()} == {"dog": 1}
    meta = {"tag": "counting", "include": [{"class": "cat", "count": 1}]}
    assert not judge(meta, dets).correct  # 0.5 does not pass the counting threshold


def test_at_most_16_per_class_highest_scores_first() -> None:
    dets = [det("cup", score=0.4 + i * 0.01) for i in range(20)]
    kept = kept_detections(dets, "colors")["cup"]
    assert len(kept) == MAX_OBJECTS and kept[0].score == pytest.approx(0.59)
    meta = {"tag": "counting", "include": [{"class": "cup", "count": 2}],
            "exclude": [{"class": "cup", "count": 17}]}  # fmt: skip
    assert judge({**meta, "tag": "colors"}, dets).correct  # 16 kept < 17: exclusion passes


def test_counting_include_exclude_and_the_three_modes() -> None:
    meta = {"tag": "counting", "include": [{"class": "clock", "count": 2}],
            "exclude": [{"class": "clock", "count": 3}]}  # fmt: skip
    exact = judge(meta, [det("clock"), det("clock")])
    assert (exact.correct, exact.strict, exact.partial) == (True, 1.0, 1.0)
    three = judge(meta, [det("clock")] * 3)
    assert not three.correct and three.reason == "expected clock<3, found 3"
    assert three.strict == 0.0 and three.partial == pytest.approx(0.5)  # 1 - |2 - 3| / 2
    one = judge(meta, [det("clock")])
    assert one.reason == "expected clock>=2, found 1" and one.partial == pytest.approx(0.5)


def test_official_and_strict_differ_where_the_reference_says() -> None:
    two_object = {"tag": "two_object", "include": [{"class": "cat", "count": 1},
                                                  {"class": "dog", "count": 1}]}  # fmt: skip
    extra_cat = judge(two_object, [det("cat"), det("cat"), det("dog")])
    assert extra_cat.correct  # official takes the top `count`: more is fine
    assert extra_cat.strict == 0.0  # strict wants exact counts
    assert extra_cat.partial == pytest.approx(0.5)  # mean(1 - |1 - 2| / 1, 1)
    excluded = {"tag": "single_object", "include": [{"class": "cat", "count": 1}],
                "exclude": [{"class": "dog", "count": 1}]}  # fmt: skip
    verdict = judge(excluded, [det("cat"), det("dog")])
    assert not verdict.correct and verdict.strict == 1.0  # strict ignores exclusions
    assert verdict.partial == 1.0


def test_color_vote_needs_every_counted_object() -> None:
    meta = {"tag": "colors", "include": [{"class": "car", "count": 2, "color": "red"}]}
    mixed = judge(meta, [det("car", color="red"), det("car", color="blue")])
    assert not mixed.correct
    # evaluate_images.py lists every color found, the requested one included
    assert mixed.reason == "expected red car>=2, found 1 red; and 1 red, 1 blue"
    assert mixed.strict == 0.0 and mixed.partial == pytest.approx((1.0 + 0.5) / 2)
    both = judge(meta, [det("car", color="red"), det("car", color="red")])
    assert both.correct and both.strict == 1.0 and both.partial == 1.0


@pytest.mark.parametrize(
    ("box_a", "expected"),
    [
        ((0, 20, 10, 30), {"left of"}),
        ((40, 20, 50, 30), {"right of"}),
        ((20, 0, 30, 10), {"above"}),
        ((20, 40, 30, 50), {"below"}),
        ((21.5, 20, 31.5, 30), set()),  # |offset| 1.5 < 0.1 * (10 + 10): no relation
    ],
)
def test_each_relation_and_the_margin(box_a: tuple, expected: set[str]) -> None:
    assert relations(box_a, (20, 20, 30, 30)) == expected


def test_margin_changes_a_diagonal_verdict() -> None:
    # offset (10, 8), dims (20, 20): revised (8, 6) / 12.81 -> right only; without the margin
    # (10, 8) / 12.81 = (0.78, 0.62) would also be "below".
    dx, dy = relation_vector((10, 8, 20, 18), (0, 0, 10, 10))
    assert dx == pytest.approx(8 / np.hypot(10, 8)) and dy == pytest.approx(6 / np.hypot(10, 8))
    assert relations((10, 8, 20, 18), (0, 0, 10, 10)) == {"right of"}


def test_position_clause_in_all_modes() -> None:
    meta = {"tag": "position", "include": [{"class": "teddy bear", "count": 1},
            {"class": "dog", "count": 1, "position": ["right of", 0]}]}  # fmt: skip
    good = judge(meta, [det("teddy bear", (0, 0, 10, 10)), det("dog", (30, 0, 40, 10))])
    assert (good.correct, good.strict, good.partial) == (True, 1.0, 1.0)
    bad = judge(meta, [det("teddy bear", (30, 0, 40, 10)), det("dog", (0, 0, 10, 10))])
    assert bad.reason == "expected dog right of target, found left of target"
    # DiffusionNFT's evaluate_reward appends 0 and then 1 for a failed position: (1 + 1 + 0 + 1) / 4
    assert bad.strict == 0.0 and bad.partial == pytest.approx(3 / 4)
    alone = judge(meta, [det("dog", (0, 0, 10, 10))])
    assert "expected teddy bear>=1, found 0" in alone.reason
    assert "no target for dog to be right of" in alone.reason


def test_instances_from_logits_follows_mmdet_postprocessing() -> None:
    classes = ["cat", "dog", "cup"]
    class_logits = torch.tensor([[5.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 9.0]])  # q1: no object
    mask_logits = torch.full((2, 4, 4), -5.0)
    mask_logits[0, 1:3, 0:2] = 3.0  # a 2x2 block on the 4x4 grid
    dets = instances_from_logits(class_logits, mask_logits, (8, 8), (8, 8), (8, 8), 0.3, classes)
    assert [d.cls for d in dets] == ["cat"]
    prob = torch.tensor([5.0, 0, 0, 0]).softmax(0)[0]
    up = torch.nn.functional.interpolate(mask_logits[None, :1], size=(8, 8), mode="bilinear")[0, 0]
    binary = up > 0
    mask_score = up.sigmoid()[binary].mean()
    assert dets[0].score == pytest.approx(float(prob * mask_score), rel=1e-5)
    ys, xs = np.nonzero(binary.numpy())
    assert dets[0].box == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    assert (
        instances_from_logits(class_logits, mask_logits, (8, 8), (8, 8), (8, 8), 0.99, classes)
        == []
    )


def test_masked_crop_pastes_on_999999_and_crops() -> None:
    image = Image.new("RGB", (6, 4), (255, 0, 0))
    mask = np.zeros((4, 6), bool)
    mask[1, 2] = True
    crop = np.asarray(masked_crop(image, mask, (1, 1, 4, 3)))
    assert crop.shape == (2, 3, 3)
    assert tuple(crop[0, 1]) == (255, 0, 0) and tuple(crop[0, 0]) == (153, 153, 153)


class FakeDetector:
    def __init__(self, dets: list[GenevalDetection]) -> None:
        self.dets = dets
        self.seen: list[float] = []

    def detect(self, images: list, min_scores: list[float]) -> list[list[GenevalDetection]]:
        self.seen.extend(min_scores)
        return [
            [
                GenevalDetection(d.cls, d.box, d.score, np.ones((im.height, im.width), bool))
                for d in self.dets
            ]
            for im in images
        ]


class FakeColors:
    def classify(self, crops: list, cls: str) -> list[str]:
        return ["red", "blue"][: len(crops)]


@pytest.mark.parametrize(
    ("mode", "expected"), [("partial", 0.75), ("strict", 0.0), ("official", 0.0)]
)
def test_reward_wires_detector_colors_and_modes(mode: str, expected: float) -> None:
    reward = GenevalReward(mode=mode)
    detector = FakeDetector([det("car", (0, 0, 2, 2)), det("car", (2, 2, 4, 4))])
    reward._detector, reward._colors, reward._loaded = detector, FakeColors(), True
    meta = {"tag": "colors", "include": [{"class": "car", "count": 2, "color": "red"}]}
    out = reward([Image.new("RGB", (4, 4))], ["a photo of two red cars"], [meta])
    assert out.scores.tolist() == [expected]
    assert detector.seen == [0.3]
    assert out.details[0]["reason"] == "expected red car>=2, found 1 red; and 1 red, 1 blue"


def test_reward_rejects_bad_metadata_and_needs_it() -> None:
    reward = GenevalReward()
    reward._detector, reward._colors, reward._loaded = FakeDetector([]), FakeColors(), True
    with pytest.raises(InputError, match="unknown class"):
        reward([Image.new("RGB", (4, 4))], ["x"], [{"include": [{"class": "unicorn", "count": 1}]}])
    with pytest.raises(InputError, match="metadata"):
        reward([Image.new("RGB", (4, 4))], ["x"])
    assert "tv remote" in GENEVAL_CLASSES and len(GENEVAL_CLASSES) == 80
