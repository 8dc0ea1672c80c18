"""GenEval 2 Soft-TIFA: accepted answers, aggregation against hand computations, the suite."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from PIL import Image

from nftkit.errors import NftkitError
from nftkit.evaluators.geneval2 import GENEVAL2_SOURCE, Geneval2Evaluator
from nftkit.evaluators.prompt_sets import sha256_bytes
from nftkit.registry import create_reward
from nftkit.rewards.geneval2 import accepted_answers, geometric_mean, numeric_string
from tests.vlm_fake_server import FakeChatServer, Reply, question_of

YES = {"Yes": 0.6, "yes": 0.1, "No": 0.3}


def responder(body: dict) -> Reply:
    q = question_of(body)
    assert q.endswith(" Answer in one word.") and body["max_tokens"] == 1 and body["logprobs"]
    if q.startswith("How many backpacks") or q.startswith("How many pigs"):
        return Reply("one", {"one": 0.5, " one": 0.1, "1": 0.2, "two": 0.2})
    if q.startswith("How many croissants"):
        return Reply("seven", {"seven": 0.3, "Seven": 0.1, "7": 0.1, "six": 0.5})
    if q.startswith("Are the croissants green"):
        return Reply("No", {"No": 1.0})
    return Reply("Yes", YES)


def test_accepted_answers_follow_evaluation_py() -> None:
    assert accepted_answers("How many cats are in the image?", "four") == [
        "four",
        "Four",
        " four",
        " Four",
        "4",
        " 4",
    ]
    assert accepted_answers("Is the cat red?", "Yes") == ["Yes", "yes", " yes", " Yes"]
    assert numeric_string("ten") == "10" and numeric_string("eleven") == "other"
    assert geometric_mean([0.5, 0.0, 1.0]) == 0.0
    assert geometric_mean([0.25, 1.0]) == pytest.approx(0.5)


def two_records(shared_data: Path, tmp_path: Path) -> Path:
    lines = (shared_data / "geneval2" / "geneval2_data.jsonl").read_text().splitlines()[:2]
    assert json.loads(lines[0])["prompt"] == "a green backpack and a pig"
    path = tmp_path / "two.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_suite_summary_equals_hand_computation(shared_data: Path, tmp_path: Path) -> None:
    with FakeChatServer(responder) as server:
        suite = Geneval2Evaluator(
            prompts_path=two_records(shared_data, tmp_path),
            vlm_url=server.url,
            vlm_model="qwen3-vl-test",
        )
        specs = suite.prompts()
        images = [Image.new("RGB", (64, 48)), Image.new("RGB", (32, 32))]
        result = suite.score(images, specs)
    # record 1: count backpack .5+.1+.2, green .7, any backpack .7, count pig .8, any pig .7
    # record 2: count croissants .3+.1+.1 ("seven","Seven","7"), green 0, any croissants .7
    gm1 = math.exp((2 * math.log(0.8) + 3 * math.log(0.7)) / 5)
    am1, am2 = (0.8 + 0.7 + 0.7 + 0.8 + 0.7) / 5, (0.5 + 0.0 + 0.7) / 3
    assert result.rows[0]["atoms"] == pytest.approx([0.8, 0.7, 0.7, 0.8, 0.7])
    assert result.metrics["overall"] == pytest.approx(100 * (gm1 + 0.0) / 2)
    assert result.metrics["soft_tifa_am"] == pytest.approx(100 * (am1 + am2) / 2)
    assert result.metrics["skill_count"] == pytest.approx(100 * (0.8 + 0.8 + 0.5) / 3)
    assert result.metrics["skill_attribute"] == pytest.approx(100 * (0.7 + 0.0) / 2)
    assert result.metrics["atoms_3"] == pytest.approx(100 * gm1 / 2)
    assert suite.settings()["vqa"]["model"] == "qwen3-vl-test"


def test_reward_uses_the_record_and_fails_without_logprobs(shared_data: Path) -> None:
    record = json.loads(
        (shared_data / "geneval2" / "geneval2_data.jsonl").read_text().splitlines()[0]
    )
    meta = {k: v for k, v in record.items() if k != "prompt"}
    with FakeChatServer(responder) as server:
        reward = create_reward("geneval2", url=server.url, timeout=2.0)
        out = reward([Image.new("RGB", (20, 30))], [record["prompt"]], [meta])
    gm = math.exp((2 * math.log(0.8) + 3 * math.log(0.7)) / 5)
    assert out.scores.tolist() == [pytest.approx(gm)]
    assert out.details[0]["soft_tifa_am"] == pytest.approx(3.7 / 5)
    with (
        FakeChatServer(lambda body: Reply("Yes")) as server,
        pytest.raises(NftkitError, match="logprobs"),
    ):
        create_reward("geneval2", url=server.url, timeout=2.0)(
            [Image.new("RGB", (8, 8))], [record["prompt"]], [meta]
        )


def test_pinned_file_and_licence_in_the_error(
    shared_data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = (shared_data / "geneval2" / "geneval2_data.jsonl").read_bytes()
    assert sha256_bytes(data) == GENEVAL2_SOURCE.sha256
    monkeypatch.setenv("NFTKIT_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(NftkitError, match=r"CC BY-NC 4\.0.*not bundled"):
        Geneval2Evaluator().prompts()
    specs = Geneval2Evaluator(
        prompts_path=shared_data / "geneval2" / "geneval2_data.jsonl"
    ).prompts()
    assert len(specs) == 800 and sum(len(s.metadata["vqa_list"]) for s in specs) == 6012
