"""The counting breakdown benchmark (benchmarks/shapes_counting.py): its prompts and tallies."""

from __future__ import annotations

import pytest

from nftkit.shapes.prompts import split_prompts
from tests.script_loading import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("shapes_counting")


def test_every_counting_prompt_is_tagged_with_its_split(bench) -> None:
    specs = bench.CountingPrompts().prompts()
    _, held_out = split_prompts(seed=0)
    unseen = {m["prompt"] for m in held_out if m["tag"] == "counting"}
    assert len(specs) == 9  # 3 shapes x the numbers 2-4
    assert {s.text for s in specs if s.metadata["split"] == "held_out"} == unseen
    assert len(unseen) == 3
    assert all(s.metadata["tag"] == "counting" for s in specs)


def test_breakdown_tallies_add_up(bench) -> None:
    result = bench.counting_breakdown("shapes-base", n_samples=2, seed=0)
    images, accuracy = result["images"], result["accuracy"]
    assert images["all"] == 18 and images["held_out"] == 6 and images["train"] == 12
    assert images["n=2"] == images["n=3"] == images["n=4"] == 6
    # the overall accuracy is the image-weighted mean of the two splits
    split_mean = (accuracy["train"] * 12 + accuracy["held_out"] * 6) / 18
    assert accuracy["all"] == pytest.approx(split_mean)
    failures = sum(count for _, count in result["top_failures"])
    assert failures <= round((1 - accuracy["all"]) * 18)
