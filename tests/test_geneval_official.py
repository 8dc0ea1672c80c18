"""The GenEval judge against djghosh13/geneval evaluate_images.py, on hand-built detections.

Every expected reason below is written from the official format strings:
  f"expected {classname}>={count}, found {len(found_objects)}"
  f"expected {color} {classname}>={count}, found {n} {color}; and " + ", ".join(
      f"{colors.count(c)} {c}" for c in COLORS if c in colors)
  f"no target for {classname} to be {expected_rel}"
  f"expected {classname} {expected_rel} target, found {' and '.join(true_rels)} target"
  f"expected {classname}<{count}, found {len(objects[classname])}"
joined by newlines, in the order the reference appends them. Detections are kept when
float32(score) > float32(threshold), ordered by numpy 1.23's argsort(scores)[::-1].
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from nftkit.evaluators.base import PromptSpec
from nftkit.evaluators.geneval import GenevalEvaluator
from nftkit.geneval_vocab import GENEVAL_CLASSES, GENEVAL_COLORS
from nftkit.rewards._geneval_detect import GenevalDetection
from nftkit.rewards._reference_sort import argsort_numpy123, descending_order
from nftkit.rewards.geneval import GenevalReward
from nftkit.rewards.geneval_rules import judge_detections, kept_detections

OPPOSITE = {"left of": "right of", "right of": "left of", "above": "below", "below": "above"}
OFFSETS = {"left of": (-40, 0), "right of": (40, 0), "above": (0, -40), "below": (0, 40)}


def det(cls: str, box: tuple[float, ...] = (0, 0, 10, 10), score: float = 0.95,
        color: str | None = None) -> GenevalDetection:  # fmt: skip
    return GenevalDetection(cls, tuple(box), score, np.zeros((1, 1), bool), color)  # type: ignore[arg-type]


def judge(meta: dict[str, Any], dets: list[GenevalDetection]) -> Any:
    return judge_detections(meta, dets, GENEVAL_COLORS, GENEVAL_CLASSES)


def box_at(x: float, y: float) -> tuple[float, float, float, float]:
    return (100 + x, 100 + y, 110 + x, 110 + y)


def other_color(color: str) -> str:
    return "green" if color != "green" else "red"


def passing(meta: dict[str, Any]) -> list[GenevalDetection]:
    """Detections that satisfy every include clause (position: placed at the relation)."""
    dets = []
    for clause in meta["include"]:
        dx, dy = OFFSETS[clause["position"][0]] if "position" in clause else (0, 0)
        for k in range(clause["count"]):
            dets.append(det(clause["class"], box_at(dx + 15 * k, dy), color=clause.get("color")))
    return dets


def official_prompts(shared_data: Path) -> list[dict[str, Any]]:
    path = shared_data / "geneval/evaluation_metadata.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


# ---------------------------------------------------------------- all 553 prompts


def test_every_official_prompt_passes_and_fails_with_the_official_reasons(
    shared_data: Path,
) -> None:
    metas = official_prompts(shared_data)
    assert len(metas) == 553
    for meta in metas:
        include, tag = meta["include"], meta["tag"]
        good = passing(meta)
        verdict = judge(meta, good)
        assert (verdict.correct, verdict.reason) == (True, ""), meta["prompt"]
        # nothing detected: one count line per include clause (position is never reached)
        empty = judge(meta, [])
        assert empty.reason == "\n".join(
            f"expected {c['class']}>={c['count']}, found 0" for c in include
        ), meta["prompt"]
        if tag == "counting":
            cls, n = include[0]["class"], include[0]["count"]
            extra = [*good, det(cls, box_at(-60, 60))]
            assert meta["exclude"] == [{"class": cls, "count": n + 1}]
            assert judge(meta, extra).reason == f"expected {cls}<{n + 1}, found {n + 1}"
            assert judge(meta, good[:-1]).reason == f"expected {cls}>={n}, found {n - 1}"
        if tag in ("colors", "color_attr"):
            recolored = [det(d.cls, d.box, color=other_color(d.color)) for d in good]
            lines = []
            for clause in include:
                c, want, got = clause["class"], clause["color"], other_color(clause["color"])
                lines.append(f"expected {want} {c}>=1, found 0 {want}; and 1 {got}")
            assert judge(meta, recolored).reason == "\n".join(lines), meta["prompt"]
        if tag == "position":
            target, mover = include
            relation = mover["position"][0]
            assert mover["position"][1] == 0
            swapped = [det(target["class"], box_at(0, 0)),
                       det(mover["class"], box_at(*OFFSETS[OPPOSITE[relation]]))]  # fmt: skip
            assert judge(meta, swapped).reason == (
                f"expected {mover['class']} {relation} target, found {OPPOSITE[relation]} target"
            )
            assert judge(meta, swapped[1:]).reason == (
                f"expected {target['class']}>=1, found 0\n"
                f"no target for {mover['class']} to be {relation}"
            )
            on_top = [det(target["class"], box_at(0, 0)), det(mover["class"], box_at(0, 0))]
            assert judge(meta, on_top).reason == (  # an empty set prints as nothing
                f"expected {mover['class']} {relation} target, found  target"
            )


def test_the_metadata_string_is_the_official_line_byte_for_byte(shared_data: Path) -> None:
    lines = (shared_data / "geneval/evaluation_metadata.jsonl").read_text().splitlines()
    evaluator = GenevalEvaluator()
    for i, raw in enumerate(lines[::50]):
        meta = json.loads(raw)
        row = {"image_path": f"out/{i:05d}/samples/0000.png", "correct": False,
               "reason": "r", "details": {}}  # fmt: skip
        line = evaluator.result_line(row, PromptSpec(f"{i:05d}", meta["prompt"], meta))
        assert line["metadata"] == raw  # what summary_scores.py groups prompts by
        assert list(line) == ["filename", "tag", "prompt", "correct", "reason", "metadata",
                              "details"]  # fmt: skip
        assert (line["tag"], line["prompt"], line["details"]) == (meta["tag"], meta["prompt"], "{}")


# ---------------------------------------------------------------- reason details


def test_color_reason_lists_every_found_color_in_classifier_order() -> None:
    meta = {"tag": "colors", "include": [{"class": "car", "count": 3, "color": "red"}]}
    dets = [det("car", color="white"), det("car", color="red"), det("car", color="blue")]
    assert judge(meta, dets).reason == (
        "expected red car>=3, found 1 red; and 1 red, 1 blue, 1 white"
    )
    two = {"tag": "colors", "include": [{"class": "car", "count": 2, "color": "red"}]}
    assert judge(two, [det("car", color="blue")] * 2).reason == (
        "expected red car>=2, found 0 red; and 2 blue"
    )


def test_a_null_color_fails_the_clause_as_the_reference_does() -> None:
    meta = {"tag": "colors", "include": [{"class": "car", "count": 1, "color": None}]}
    verdict = judge(meta, [det("car", color="red")])
    assert not verdict.correct
    assert verdict.reason == "expected None car>=1, found 0 None; and 1 red"
    assert verdict.strict == 0.0


def test_a_failed_color_skips_the_position_check_and_the_target_is_gone() -> None:
    meta = {"tag": "position", "include": [
        {"class": "cup", "count": 1, "color": "red"},
        {"class": "dog", "count": 1, "position": ["left of", 0]},
    ]}  # fmt: skip
    dets = [det("cup", box_at(0, 0), color="blue"), det("dog", box_at(-40, 0))]
    assert judge(meta, dets).reason == (
        "expected red cup>=1, found 0 red; and 1 blue\nno target for dog to be left of"
    )
    meta["include"][1]["color"] = "green"  # color fails first: no position line for the dog
    dets[0].color, dets[1].color = "red", "blue"
    assert judge(meta, dets).reason == "expected green dog>=1, found 0 green; and 1 blue"


def test_two_relations_join_in_the_sets_own_order() -> None:
    meta = {"tag": "position", "include": [{"class": "cup", "count": 1},
            {"class": "dog", "count": 1, "position": ["below", 0]}]}  # fmt: skip
    dets = [det("cup", box_at(0, 0)), det("dog", box_at(-40, -40))]
    true_rels = set()  # the reference builds the set in this order, then joins it
    true_rels.add("left of")
    true_rels.add("above")
    assert (
        judge(meta, dets).reason
        == f"expected dog below target, found {' and '.join(true_rels)} target"
    )


def test_exclusion_counts_every_kept_detection() -> None:
    meta = {"tag": "counting", "include": [{"class": "clock", "count": 2}],
            "exclude": [{"class": "clock", "count": 3}]}  # fmt: skip
    dets = [det("clock", box_at(15 * k, 0), score=0.95) for k in range(20)]
    assert judge(meta, dets).reason == "expected clock<3, found 16"  # at most 16 kept


# ---------------------------------------------------------------- the training score


@pytest.mark.parametrize(
    ("meta", "dets", "expected"),
    [
        # DiffusionNFT gen_eval.py evaluate_reward, its terms written out per case
        ({"tag": "single_object", "include": [{"class": "cat", "count": 1}]},
         [det("cat", box_at(30 * k, 0)) for k in range(3)], 1 - 2 / 1),  # not clamped: -1
        ({"tag": "colors", "include": [{"class": "car", "count": 1, "color": "red"}]},
         [det("car", color="blue")], (1 + 0) / 2),  # count 1, color 1 - |1 - 0| / 1
        ({"tag": "colors", "include": [{"class": "car", "count": 1, "color": "red"}]},
         [det("car", box_at(0, 0), color="red"), det("car", box_at(30, 0), color="red")],
         (0 + 0) / 2),  # wrong count: 1 - 1/1, then one 0 for the color clause
        ({"tag": "position", "include": [{"class": "cup", "count": 1},
          {"class": "dog", "count": 1, "position": ["left of", 0]}]},
         [det("dog", box_at(0, 0))], (0 + 1 + 0) / 3),  # no target: 0
        ({"tag": "position", "include": [{"class": "cup", "count": 1, "color": "red"},
          {"class": "dog", "count": 1, "position": ["left of", 0]}]},
         [det("cup", box_at(0, 0), color="red"), det("dog", box_at(40, 0))],
         (1 + 1 + 1 + 0 + 1) / 5),  # a failed position appends 0 and then 1
        ({"tag": "two_object", "include": []}, [], 0.0),  # no terms: 0
    ],
)  # fmt: skip
def test_partial_is_diffusionnft_evaluate_reward_score(
    meta: dict, dets: list, expected: float
) -> None:
    assert judge(meta, dets).partial == pytest.approx(expected)


# ---------------------------------------------------------------- thresholds and ties


def test_thresholds_compare_in_float32() -> None:
    f32 = lambda x: float(np.float32(x))  # noqa: E731
    dets = [det("cat", score=f32(0.3)), det("dog", score=0.30000000001),
            det("cup", score=f32(0.3000001)), det("bus", score=f32(0.9))]  # fmt: skip
    assert set(kept_detections(dets, "single_object")) == {"cup", "bus"}
    # 0.30000000001 > 0.3 in float64, but float32 rounds it to float32(0.3): dropped
    assert set(kept_detections(dets, "counting")) == set()  # float32(0.9) is not > 0.9


def test_small_ties_come_out_later_index_first() -> None:
    # numpy's argsort below 17 elements is an insertion sort (stable, ascending): reversed,
    # tied scores come out by decreasing index.
    assert descending_order([0.5, 0.5, 0.9]) == [2, 1, 0]
    meta = {"tag": "colors", "include": [{"class": "car", "count": 1, "color": "red"}]}
    tied = [det("car", box_at(0, 0), color="red"), det("car", box_at(30, 0), color="blue")]
    assert judge(meta, tied).reason == "expected red car>=1, found 0 red; and 1 blue"
    assert judge(meta, tied[::-1]).correct


def test_large_ties_follow_numpy_1_23_quicksort() -> None:
    # Expected orders from numpy 1.23.5 (GenEval's environment pins 1.23.1), np.argsort(s)[::-1]
    # on float32: above 16 elements the median-of-three partitions reorder tied scores.
    s = [0.5] * 8 + [0.9] * 4 + [0.5] * 8
    expected = [9, 8, 11, 10, 1, 2, 3, 4, 5, 6, 7, 19, 18, 12, 13, 14, 15, 16, 17, 0]
    assert descending_order(s) == expected
    s2 = [0.7, 0.95, 0.7, 0.2, 0.7, 0.95, 0.1, 0.7, 0.95, 0.7, 0.3, 0.7, 0.95, 0.7, 0.05, 0.7,
          0.95, 0.7]  # fmt: skip
    assert descending_order(s2) == [8, 16, 1, 12, 5, 2, 4, 7, 17, 9, 11, 13, 15, 0, 10, 3, 6, 14]
    dets = [det("cup", box_at(i, 0), score=v) for i, v in enumerate(s)]
    kept = kept_detections(dets, "colors")["cup"]
    assert [d.box[0] - 100 for d in kept] == expected[:16]


def test_argsort_sorts_distinct_values_like_any_numpy() -> None:
    rng = np.random.default_rng(0)
    for n in (1, 2, 16, 17, 100, 300):
        values = rng.permutation(n).astype(np.float32) / 7
        assert argsort_numpy123(values) == np.argsort(values, kind="stable").tolist()


def test_classes_come_in_label_order_and_details_are_float32() -> None:
    dets = [det("dog", (1, 2, 3, 4), score=0.8), det("bench", score=0.7)]
    verdict = judge({"tag": "two_object", "include": [{"class": "dog", "count": 1}]}, dets)
    assert list(verdict.details) == ["bench", "dog"]  # bench is label 13, dog 16
    assert verdict.details["dog"] == [[1.0, 2.0, 3.0, 4.0, float(np.float32(0.8))]]
    row = {"image_path": "x.png", "correct": True, "reason": "", "details": verdict.details}
    meta = {"tag": "two_object", "include": [], "prompt": "p"}
    line = GenevalEvaluator().result_line(row, PromptSpec("0", "p", meta))
    assert line["details"] == (
        '{"bench": [[0.0, 0.0, 10.0, 10.0, 0.699999988079071]], '
        '"dog": [[1.0, 2.0, 3.0, 4.0, 0.800000011920929]]}'
    )


# ---------------------------------------------------------------- reward wiring


class SeeingDetector:
    def __init__(self) -> None:
        self.images: list[Image.Image] = []

    def detect(self, images: list, min_scores: list[float]) -> list[list[GenevalDetection]]:
        self.images.extend(images)
        return [[GenevalDetection("car", (0, 0, 2, 2), 0.95, np.ones((2, 2), bool))]
                for _ in images]  # fmt: skip


class NamedColors:
    def __init__(self) -> None:
        self.asked: list[str] = []

    def classify(self, crops: list, cls: str) -> list[str]:
        self.asked.append(cls)
        return ["red"] * len(crops)


def test_reward_drops_alpha_and_classifies_null_color_clauses() -> None:
    reward = GenevalReward(mode="official")
    detector, colors = SeeingDetector(), NamedColors()
    reward._detector, reward._colors, reward._loaded = detector, colors, True
    rgba = Image.new("RGBA", (2, 2), (200, 10, 20, 0))  # fully transparent red
    meta = {"tag": "colors", "include": [{"class": "car", "count": 1, "color": None}],
            "prompt": "p"}  # fmt: skip
    out = reward([rgba], ["p"], [meta])
    seen = detector.images[0]
    assert seen.mode == "RGB" and seen.getpixel((0, 0)) == (200, 10, 20)  # convert("RGB")
    assert colors.asked == ["car"]
    assert out.details[0]["reason"] == "expected None car>=1, found 0 None; and 1 red"


def test_tie_order_matches_numpy_123_where_introsort_falls_back_to_heapsort() -> None:
    """Arrays deep enough to hit the heapsort branch, ordered as numpy 1.23.5 itself ordered them."""
    import json
    from pathlib import Path

    from nftkit.rewards._reference_sort import argsort_numpy123

    fixture = json.loads(
        (Path(__file__).parent / "data" / "numpy123_argsort_heapsort.json").read_text()
    )
    for case in fixture["cases"]:
        assert argsort_numpy123(case["values"]) == case["argsort"]
