"""Composer: spec parsing, weights, normalisations, group advantages and r, by hand."""

from __future__ import annotations

import math

import pytest
import torch

from nftkit.compose import (
    RewardComposer,
    RewardTerm,
    combine,
    group_advantages,
    normalize,
    optimality_probability,
    parse_reward_spec,
)
from nftkit.errors import InvalidScoreError, UnknownPluginError, UsageError


def test_parse_spec() -> None:
    terms = parse_reward_spec("pickscore, ocr=0.5,geneval@http://127.0.0.1:8000=2")
    assert terms == [
        RewardTerm("pickscore", 1.0),
        RewardTerm("ocr", 0.5),
        RewardTerm("geneval", 2.0, "http://127.0.0.1:8000"),
    ]
    assert terms[2].key == "geneval@http://127.0.0.1:8000"
    assert parse_reward_spec("geneval@http://h:1")[0].weight == 1.0
    for bad in ["", "ocr=abc", "ocr,,jpeg", "=1", "ocr,ocr", "x@ftp://h", "ocr=nan"]:
        with pytest.raises(UsageError):
            parse_reward_spec(bad)


def test_group_advantages_global_std_by_hand() -> None:
    rewards = torch.tensor([1.0, 3.0, 0.0, 0.0, 2.0, 4.0])
    groups = ["a", "a", "b", "b", "c", "c"]
    adv = group_advantages(rewards, groups)
    # group means 2, 0, 3; global population std of [1,3,0,0,2,4]
    mean = sum(rewards.tolist()) / 6
    std = math.sqrt(sum((x - mean) ** 2 for x in rewards.tolist()) / 6)
    expected = [-1 / (std + 1e-4), 1 / (std + 1e-4), 0.0, 0.0, -1 / (std + 1e-4), 1 / (std + 1e-4)]
    assert adv.tolist() == pytest.approx(expected, rel=1e-6)


def test_group_advantages_group_std() -> None:
    rewards = torch.tensor([1.0, 3.0, 10.0, 20.0])
    adv = group_advantages(rewards, [0, 0, 1, 1], std_mode="group")
    assert adv.tolist() == pytest.approx([-1 / 1.0001, 1 / 1.0001, -5 / 5.0001, 5 / 5.0001])


def test_optimality_probability_by_hand() -> None:
    adv = torch.tensor([-7.0, -5.0, -2.5, 0.0, 1.0, 5.0, 12.0])
    r = optimality_probability(adv, adv_clip=5.0)
    assert r.tolist() == pytest.approx([0.0, 0.0, 0.25, 0.5, 0.6, 1.0, 1.0])


def test_combine_weights_and_direction() -> None:
    comps = {"a": torch.tensor([1.0, 2.0]), "b": torch.tensor([10.0, 0.0])}
    total = combine(comps, {"a": 2.0, "b": 0.5})
    assert total.tolist() == pytest.approx([2 + 5, 4 + 0])
    flipped = combine(comps, {"a": 1.0, "b": 1.0}, higher_is_better={"b": False})
    assert flipped.tolist() == pytest.approx([1 - 10, 2 - 0])


def test_normalizations() -> None:
    x = torch.tensor([1.0, 2.0, 3.0, 3.0])
    z = normalize(x, "zscore")
    assert float(z.mean()) == pytest.approx(0.0, abs=1e-9)
    std = float(x.std(unbiased=False))
    assert z.tolist() == pytest.approx([(v - 2.25) / (std + 1e-4) for v in x.tolist()])
    assert normalize(x, "rank").tolist() == pytest.approx([0.0, 1 / 3, 5 / 6, 5 / 6])
    with pytest.raises(UsageError):
        normalize(x, "minmax")  # type: ignore[arg-type]


def test_non_finite_component_names_reward_and_sample() -> None:
    comps = {"good": torch.tensor([1.0, 2.0, 3.0]), "pick": torch.tensor([1.0, float("nan"), 2.0])}
    with pytest.raises(InvalidScoreError, match=r"'pick'.*sample 1 \(prompt 'p1'\)"):
        combine(comps, {}, prompts=["p0", "p1", "p2"])
    with pytest.raises(InvalidScoreError, match="sample 0"):
        combine({"x": torch.tensor([float("inf")])}, {})


def test_composer_builds_registered_rewards() -> None:
    from PIL import Image

    composer = RewardComposer("jpeg=2")
    out = composer([Image.new("RGB", (16, 16))], [""])
    assert out.total.item() == pytest.approx(2 * out.components["jpeg"].item())
    with pytest.raises(UnknownPluginError, match="Did you mean: jpeg"):
        RewardComposer("jpg")
