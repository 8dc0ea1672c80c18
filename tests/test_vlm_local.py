"""The transformers VLM backend on a tiny random-init Qwen2-VL (offline)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from PIL import Image

from nftkit.registry import create_reward
from nftkit.rewards.geneval2 import accepted_answers


@pytest.fixture(scope="module")
def tiny_vlm(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from nftkit.debug_tiny.qwen2vl import save_tiny_qwen2vl

    return save_tiny_qwen2vl(tmp_path_factory.mktemp("tiny-qwen2vl") / "model")


def next_token_probs(folder: Path, image: Image.Image, text: str) -> torch.Tensor:
    """Softmax of one forward pass's last-position logits (not generate)."""
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(folder)
    model = AutoModelForImageTextToText.from_pretrained(folder).eval()
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": text}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    inputs = processor(text=[prompt], images=[image], return_tensors="pt")
    with torch.no_grad():
        logits = model(**inputs).logits[0, -1].float()
    return torch.softmax(logits, -1), processor.tokenizer


def test_soft_tifa_atoms_equal_the_official_first_token_rule(
    tiny_vlm: Path, shared_data: Path
) -> None:
    record = json.loads(
        (shared_data / "geneval2" / "geneval2_data.jsonl").read_text().splitlines()[0]
    )
    meta = {k: v for k, v in record.items() if k != "prompt"}
    image = Image.new("RGB", (70, 50), (200, 30, 30))
    reward = create_reward("geneval2", backend="transformers", model=str(tiny_vlm))
    out = reward([image], [record["prompt"]], [meta])
    expected = []
    for question, answer in record["vqa_list"]:
        probs, tok = next_token_probs(tiny_vlm, image, question + " Answer in one word.")
        expected.append(
            sum(
                float(probs[tok.encode(a, add_special_tokens=False)[0]])
                for a in accepted_answers(question, answer)
            )
        )
    assert out.details[0]["atoms"] == pytest.approx(expected, rel=1e-4)
    gm = math.exp(sum(math.log(p) for p in expected) / len(expected))
    assert out.scores.tolist() == [pytest.approx(gm, rel=1e-4)]


def test_yes_prob_is_batch_size_independent_on_mixed_sizes(tiny_vlm: Path) -> None:
    images = [
        Image.new("RGB", s, (30 * i, 90, 160))
        for i, s in enumerate([(56, 56), (90, 40), (33, 77), (112, 60), (60, 60)])
    ]
    prompts = [f"a red cat {i}" for i in range(len(images))]
    outs = [
        create_reward(
            "vlm-judge",
            template="yes-prob",
            backend="transformers",
            model=str(tiny_vlm),
            batch_size=b,
        )(images, prompts)
        for b in (1, 4)
    ]
    assert outs[0].scores.tolist() == pytest.approx(outs[1].scores.tolist(), abs=1e-6)
    assert all(0.0 < s < 1.0 for s in outs[0].scores.tolist())
    probs, tok = next_token_probs(
        tiny_vlm,
        images[0],
        'Does this image show "a red cat 0"? Answer the question with Yes or No.',
    )
    yes = sum(
        float(probs[tok.encode(t, add_special_tokens=False)[0]])
        for t in dict.fromkeys(("Yes", "yes", " Yes", " yes"))
    )
    assert outs[0].scores[0].item() == pytest.approx(yes, rel=1e-4)
