"""The NFT-vs-GRPO benchmark's bookkeeping: threshold crossings and GRPO/NFT ratios."""

from __future__ import annotations

import pytest

from tests.script_loading import load_benchmark


@pytest.fixture(scope="module")
def bench():
    return load_benchmark("nft_vs_grpo")


def _curve(points: list[tuple[int, float, float]]) -> list[dict[str, float]]:
    """(step, seconds, overall) triples; 8 images per step."""
    return [
        {"epoch": i, "step": s, "images": 8 * s, "seconds": sec, "overall": o}
        for i, (s, sec, o) in enumerate(points)
    ]


def test_exact_ratio_when_grpo_reaches_nfts_top_threshold(bench) -> None:
    nft = _curve([(0, 0, 0.3), (10, 100, 0.65), (20, 200, 0.82)])
    grpo = _curve([(0, 0, 0.3), (10, 150, 0.5), (20, 300, 0.61), (40, 900, 0.81)])
    ratio = bench.seed_ratio(nft, grpo, [0.6, 0.8, 0.9])
    assert ratio["threshold"] == 0.8 and ratio["grpo_reached"] is True
    assert ratio["seconds"] == pytest.approx(900 / 200)
    assert ratio["steps"] == pytest.approx(40 / 20)


def test_lower_bound_when_grpo_runs_out_of_budget(bench) -> None:
    nft = _curve([(0, 0, 0.3), (10, 100, 0.85)])
    grpo = _curve([(0, 0, 0.3), (10, 150, 0.4), (20, 310, 0.55)])
    ratio = bench.seed_ratio(nft, grpo, [0.6, 0.8, 0.9])
    assert ratio["threshold"] == 0.8 and ratio["grpo_reached"] is False
    assert ratio["seconds"] == pytest.approx(3.1)
    summary = bench.summarize({"nft": [nft], "grpo": [grpo]}, [0.6, 0.8, 0.9])
    assert summary["reach"]["grpo"]["0.6"] == [None]
    assert summary["grpo_over_nft"]["grpo_reached_on_every_seed"] is False


def test_no_ratio_when_nft_reaches_no_threshold(bench) -> None:
    nft = _curve([(0, 0, 0.3), (10, 100, 0.55)])
    grpo = _curve([(0, 0, 0.3), (10, 100, 0.65)])
    assert bench.seed_ratio(nft, grpo, [0.6]) is None
    assert bench.summarize({"nft": [nft], "grpo": [grpo]}, [0.6])["grpo_over_nft"] is None


def test_common_threshold_is_the_lowest_top_over_seeds(bench) -> None:
    nfts = [_curve([(0, 0, 0.3), (10, 100, 0.92)]), _curve([(0, 0, 0.3), (10, 120, 0.81)])]
    grpos = [_curve([(0, 0, 0.3), (30, 400, 0.83)]), _curve([(0, 0, 0.3), (30, 480, 0.85)])]
    common = bench.summarize({"nft": nfts, "grpo": grpos}, [0.6, 0.8, 0.9])["grpo_over_nft"]
    assert common["threshold"] == 0.8 and common["grpo_reached_on_every_seed"] is True
    assert common["seconds_min"] == pytest.approx(4.0)
    assert common["seconds_mean"] == pytest.approx(4.0)
