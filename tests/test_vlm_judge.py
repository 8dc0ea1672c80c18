"""vlm-judge: template rendering and answer parsing against hand-written server answers."""

from __future__ import annotations

import math
import time

import pytest
from PIL import Image

from nftkit.errors import NftkitError, UsageError
from nftkit.registry import create_reward
from nftkit.rewards.vlm_backends import VlmAnswer, parse_first_token_probs
from nftkit.rewards.vlm_templates import TEMPLATES, get_template
from tests.vlm_fake_server import FakeChatServer, Reply, chat_json, question_of

UR2 = "Alignment Score (1-5): 4\nCoherence Score (1-5): 3.5\nStyle Score (1-5): 2"
THINK = "<think>A first guess: Final Score: 2. On reflection better.</think>\nFinal Score: 4"


def answer(text: str | None, top: dict[str, float] | None = None) -> VlmAnswer:
    return VlmAnswer(text, top or {})


def test_templates_render_the_prompt() -> None:
    for template in TEMPLATES.values():
        text = template.render("a red {cat}")
        assert "a red {cat}" in text and "{prompt}" not in text
    assert get_template("yes-prob").render("two dogs") == (
        'Does this image show "two dogs"? Answer the question with Yes or No.'
    )
    assert get_template("unifiedreward").render("x").endswith("Text Caption: [x]")
    with pytest.raises(UsageError, match="choose one of"):
        get_template("nope")


def test_parsers_on_hand_written_answers() -> None:
    ur2 = get_template("unifiedreward-2").parse(answer(UR2))
    assert ur2 is not None and ur2.raw == pytest.approx((4 + 3.5 + 2) / 3)
    assert ur2.score == pytest.approx((4 + 3.5 + 2) / 15)
    assert get_template("unifiedreward-2").parse(answer("Alignment Score (1-5): 4")) is None
    think = get_template("unifiedreward-think").parse(answer(THINK))
    assert think is not None and think.raw == 4.0 and think.score == pytest.approx(0.8)
    assert (
        get_template("unifiedreward-think").parse(answer("<think>Final Score: 3</think>")) is None
    )
    assert get_template("unifiedreward").parse(answer("Final Score: 2.5")).score == 0.5
    likert = get_template("likert")
    assert likert.parse(answer("4")).score == pytest.approx(0.75)
    assert likert.parse(answer("I'd say 5/5")).raw == 5.0
    assert likert.parse(answer("10")) is None and likert.parse(answer("3.5")) is None
    yes = get_template("yes-prob").parse(answer("Yes", {"Yes": 0.5, " yes": 0.2, "No": 0.3}))
    assert yes is not None and yes.score == pytest.approx(0.7)
    assert get_template("yes-prob").parse(answer("Yes")) is None  # no logprobs


def test_first_token_probs_from_openai_choice() -> None:
    choice = chat_json("Yes", {"Yes": 0.7, "No": 0.2})["choices"][0]
    probs = parse_first_token_probs(choice)
    assert probs["Yes"] == pytest.approx(0.7) and probs["No"] == pytest.approx(0.2)
    assert parse_first_token_probs({"message": {"content": "x"}}) == {}


def responder(body: dict) -> Reply:
    q = question_of(body)
    if "slow" in q:
        return Reply("Final Score: 5", delay=1.0)
    if "html" in q:
        return Reply(raw=b"<html>")
    if "down" in q:
        return Reply(status=500)
    if body.get("logprobs"):
        return Reply("Yes", {"Yes": 0.6, "yes": 0.1, "No": 0.25})
    if "Alignment Score" in q:
        return Reply(UR2)
    if "<think>" in q:
        return Reply(THINK)
    return Reply("3")


def judge(url: str, template: str, **kwargs):
    options = {"timeout": 0.4, "retries": 0, "backoff": 0.0, **kwargs}
    return create_reward("vlm-judge", template=template, url=url, model="m", **options)


def test_every_template_through_the_loopback_server() -> None:
    image = Image.new("RGB", (40, 24), (200, 10, 10))
    expected = {
        "unifiedreward-2": 9.5 / 15,
        "unifiedreward-think": 0.8,
        "yes-prob": 0.7,
        "likert": 0.5,
    }
    with FakeChatServer(responder) as server:
        for name, value in expected.items():
            out = judge(server.url, name)([image], ["a red cat"])
            assert out.scores.tolist() == [pytest.approx(value)], name
        bodies = {question_of(b)[:20]: b for b in server.requests}
    yes_body = next(b for b in bodies.values() if b.get("logprobs"))
    assert yes_body["max_tokens"] == 1 and yes_body["top_logprobs"] == 20
    assert yes_body["temperature"] == 0 and yes_body["model"] == "m"


def test_failure_policy_timeouts_and_malformed_answers() -> None:
    image = Image.new("RGB", (8, 8))
    with FakeChatServer(responder) as server:
        start = time.monotonic()
        out = judge(server.url, "likert")([image] * 4, ["slow", "html", "down", "fine"])
        assert time.monotonic() - start < 1.5
        reward = judge(server.url, "likert")
        out = reward([image] * 4, ["slow", "html", "down", "fine"])
        assert out.scores.tolist() == [0.0, 0.0, 0.0, 0.5]
        assert "timed out" in out.details[0]["error"].lower()
        assert "malformed" in out.details[1]["error"] and out.details[2]["error"] == "HTTP 500"
        assert reward.last_failures == 3
        with pytest.raises(NftkitError, match="on_failure='fail'"):
            judge(server.url, "likert", on_failure="fail")([image], ["html"])
    with pytest.raises(UsageError, match="on_failure"):
        judge(server.url, "likert", on_failure="skip")


def test_concurrency_limit_is_respected() -> None:
    active, peak = [0], [0]
    import threading

    lock = threading.Lock()

    def slow(body: dict) -> Reply:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.05)
        with lock:
            active[0] -= 1
        return Reply("2")

    with FakeChatServer(slow) as server:
        out = judge(server.url, "likert", concurrency=2, timeout=2.0)(
            [Image.new("RGB", (4, 4))] * 6, ["p"] * 6
        )
    assert out.scores.tolist() == [0.25] * 6 and peak[0] == 2
    assert not math.isnan(out.scores.sum().item())
