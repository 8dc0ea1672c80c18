"""Named question templates of the ``vlm-judge`` reward: how to ask, and how to read the answer.

Each template renders the user text for a prompt and turns a ``VlmAnswer`` into a score in
[0, 1] (``raw`` keeps the number on the template's own scale), or None when the answer holds
no score. Templates:

- ``unifiedreward``: the Flow-GRPO / DiffusionNFT UnifiedReward question, "Final Score: X"
  (1-5), the first match, /5.
- ``unifiedreward-2``: UnifiedReward-2.0's point-score form, "Alignment / Coherence / Style
  Score (1-5): X" lines; the mean of the three found (all three required), /5. The wording is
  nftkit's; the answer format is the one UnifiedReward-2.0 was trained to emit.
- ``unifiedreward-think``: the reasoning variant: the score is the *last* "Final Score: X"
  after ``</think>`` (or in the whole answer when there is no ``</think>``), /5, so numbers
  mentioned in the reasoning are ignored.
- ``yes-prob``: VQAScore-style P("Yes") of the first generated token from the server's
  logprobs, question as GenEval 2's vqascore baseline: 'Does this image show "{prompt}"?
  Answer the question with Yes or No.'; the probabilities of the tokens Yes/yes/ Yes/ yes are
  summed.
- ``likert``: "rate 1-5" with a bare number answer; the first integer 1-5 in the answer,
  (x - 1) / 4.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

from nftkit.errors import UsageError
from nftkit.rewards.vlm_backends import VlmAnswer

UNIFIEDREWARD_INSTRUCTION = (
    "<image>\n"
    "You are given a text caption and a generated image based on that caption. Your task is to "
    "evaluate this image based on two key criteria:\n"
    "1. Alignment with the Caption: Assess how well this image aligns with the provided "
    "caption. Consider the accuracy of depicted objects, their relationships, and attributes "
    "as described in the caption.\n"
    "2. Overall Image Quality: Examine the visual quality of this image, including clarity, "
    "detail preservation, color accuracy, and overall aesthetic appeal.\n"
    "Based on the above criteria, assign a score from 1 to 5 after 'Final Score:'.\n"
    "Your task is provided as follows:\n"
    "Text Caption: [{prompt}]"
)
"""The reference's question (Flow-GRPO / DiffusionNFT unifiedreward scorer)."""

UNIFIEDREWARD2_INSTRUCTION = (
    "<image>\n"
    "You are shown an image generated from a text caption. Judge it on three dimensions, each "
    "on a 1 to 5 scale: Alignment (how faithfully it shows the caption's objects, attributes "
    "and relations), Coherence (whether its structure and content are plausible and free of "
    "artifacts) and Style (its visual appeal). Answer with exactly these lines:\n"
    "Alignment Score (1-5): <score>\nCoherence Score (1-5): <score>\nStyle Score (1-5): <score>\n"
    "Caption: [{prompt}]"
)
THINK_INSTRUCTION = (
    "<image>\n"
    "You are given a text caption and an image generated from it. Reason step by step about "
    "how well the image matches the caption and about its visual quality inside <think> and "
    "</think>, then give one overall score from 1 to 5 after 'Final Score:'.\n"
    "Text Caption: [{prompt}]"
)
YES_PROB_QUESTION = 'Does this image show "{prompt}"? Answer the question with Yes or No.'
LIKERT_QUESTION = (
    'How well does this image match the caption "{prompt}", counting both faithfulness and '
    "visual quality? Rate it from 1 (very poorly) to 5 (perfectly). Answer with one number."
)
YES_TOKENS = ("Yes", "yes", " Yes", " yes")
"""Accepted first tokens of a yes answer (GenEval 2's answer list for Yes questions)."""

FINAL_SCORE = re.compile(r"Final Score:\s*([1-5](?:\.\d+)?)")
SUB_SCORE = re.compile(r"(Alignment|Coherence|Style) Score \(1-5\):\s*([0-9]*\.?[0-9]+)")
LIKERT_NUMBER = re.compile(r"(?<![\d.])([1-5])(?![\d.])")


@dataclass(frozen=True)
class Parsed:
    """A parsed answer: the score in [0, 1] and the number on the template's own scale."""

    score: float
    raw: float


@dataclass(frozen=True)
class Template:
    """A named template: the text, generation limits, and the answer parser."""

    name: str
    text: str
    parse: Callable[[VlmAnswer], Parsed | None]
    max_tokens: int | None = None
    top_logprobs: int = 0
    needs_logprobs: bool = False
    missing: str = "no score in the answer"
    candidates: tuple[str, ...] = ()
    """The error of an answer that ``parse`` cannot read."""

    def render(self, prompt: str) -> str:
        """The user text for ``prompt``."""
        return self.text.replace("{prompt}", prompt)


def parse_final_score(text: str) -> float | None:
    """The 1-5 number after the first "Final Score:", or None when there is none."""
    match = FINAL_SCORE.search(text)
    return float(match.group(1)) if match else None


def _parse_unifiedreward(answer: VlmAnswer) -> Parsed | None:
    value = parse_final_score(answer.text or "")
    return None if value is None else Parsed(value / 5.0, value)


def parse_sub_scores(text: str) -> dict[str, float]:
    """{Alignment, Coherence, Style: value} for the "X Score (1-5): v" lines (first of each)."""
    found: dict[str, float] = {}
    for label, value in SUB_SCORE.findall(text):
        found.setdefault(label, float(value))
    return found


def _parse_unifiedreward2(answer: VlmAnswer) -> Parsed | None:
    scores = parse_sub_scores(answer.text or "")
    if len(scores) != 3 or not all(1.0 <= v <= 5.0 for v in scores.values()):
        return None
    mean = sum(scores.values()) / 3.0
    return Parsed(mean / 5.0, mean)


def parse_think_score(text: str) -> float | None:
    """The last "Final Score: X" (1-5) after ``</think>``; the whole text without the tag."""
    tail = text.rsplit("</think>", 1)[1] if "</think>" in text else text
    matches = FINAL_SCORE.findall(tail)
    return float(matches[-1]) if matches else None


def _parse_think(answer: VlmAnswer) -> Parsed | None:
    value = parse_think_score(answer.text or "")
    return None if value is None else Parsed(value / 5.0, value)


def yes_probability(probs: dict[str, float], accepted: tuple[str, ...] = YES_TOKENS) -> float:
    """Sum of the first-token probabilities of the accepted token texts (each counted once)."""
    return float(sum(probs.get(token, 0.0) for token in dict.fromkeys(accepted)))


def _parse_yes_prob(answer: VlmAnswer) -> Parsed | None:
    if not answer.first_token_probs:
        return None
    p = min(1.0, yes_probability(answer.first_token_probs))
    return Parsed(p, p)


def _parse_likert(answer: VlmAnswer) -> Parsed | None:
    match = LIKERT_NUMBER.search(answer.text or "")
    if match is None:
        return None
    value = float(match.group(1))
    return Parsed((value - 1.0) / 4.0, value)


TEMPLATES: dict[str, Template] = {
    "unifiedreward": Template(
        "unifiedreward",
        UNIFIEDREWARD_INSTRUCTION,
        _parse_unifiedreward,
        missing="no 'Final Score:' in the answer",
    ),
    "unifiedreward-2": Template(
        "unifiedreward-2",
        UNIFIEDREWARD2_INSTRUCTION,
        _parse_unifiedreward2,
        missing="no Alignment, Coherence and Style scores (1-5) in the answer",
    ),
    "unifiedreward-think": Template(
        "unifiedreward-think",
        THINK_INSTRUCTION,
        _parse_think,
        missing="no 'Final Score:' after the reasoning",
    ),
    "yes-prob": Template(
        "yes-prob",
        YES_PROB_QUESTION,
        _parse_yes_prob,
        max_tokens=1,
        top_logprobs=20,
        needs_logprobs=True,
        candidates=YES_TOKENS,
        missing="no first-token logprobs in the answer (serve with logprobs on)",
    ),
    "likert": Template(
        "likert",
        LIKERT_QUESTION,
        _parse_likert,
        max_tokens=8,
        missing="no number 1-5 in the answer",
    ),
}
"""The named templates of ``vlm-judge``."""


def get_template(name: str) -> Template:
    """The template called ``name``; UsageError listing the choices otherwise."""
    if name not in TEMPLATES:
        raise UsageError(
            f"unknown VLM-judge template {name!r}; choose one of {', '.join(TEMPLATES)}"
        )
    return TEMPLATES[name]
