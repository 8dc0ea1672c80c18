"""GenEval 2's Soft-TIFA (facebookresearch/GenEval2 evaluation.py, facts in SCORING_2026-12.md).

Each [question, answer] atom of a prompt is asked as "{question} Answer in one word." with one
generated token; the atom's score is the probability mass on the first token of each accepted
answer: for "How many…" questions [ans, Ans, " ans", " Ans", digit, " digit"] (digit from the
number word one..ten, else "other"), for all others ['Yes', 'yes', ' yes', ' Yes']. Per prompt
the geometric mean (``soft_tifa_gm``, the prompt-level metric) and the arithmetic mean
(``soft_tifa_am``, the atom-level metric) of its atom scores; a suite reports 100 x the mean
over prompts. Official VQA model: Qwen/Qwen3-VL-8B-Instruct (transformers 4.57.0).

Over an OpenAI-compatible server the first-token distribution is the server's
``top_logprobs`` (20 tokens); each accepted answer contributes the probability of the token
whose text equals it (the official sums ``probs[tokenizer.encode(a)[0]]``; the two differ
only where an answer string is not one token, e.g. " 4" may tokenise as " " + "4", which the
official counts as P(" ")). The ``geneval2`` reward scores one image per call with a GenEval 2
record (``vqa_list``) as its metadata; the score is ``soft_tifa_gm`` in [0, 1].
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import torch
from PIL import Image

from nftkit.errors import InputError, NftkitError
from nftkit.rewards.base import Reward, RewardOutput
from nftkit.rewards.vlm_backends import VlmAnswer, VlmQuery, make_backend

QUESTION_SUFFIX = " Answer in one word."
YES_ANSWERS = ("Yes", "yes", " yes", " Yes")
NUMBER_WORDS = ("one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")
DEFAULT_VQA_MODEL = "Qwen/Qwen3-VL-8B-Instruct"
URL_ENV, MODEL_ENV, KEY_ENV = "NFTKIT_VLM_URL", "NFTKIT_VLM_MODEL", "NFTKIT_VLM_API_KEY"
BACKEND_ENV = "NFTKIT_VLM_BACKEND"
DEFAULT_URL = "http://127.0.0.1:17140/v1"
TOP_LOGPROBS = 20


def numeric_string(word: str) -> str:
    """The digit string of a number word one..ten ("four" -> "4"), else "other"."""
    lowered = word.strip().lower()
    return str(NUMBER_WORDS.index(lowered) + 1) if lowered in NUMBER_WORDS else "other"


def accepted_answers(question: str, answer: str) -> list[str]:
    """The answer strings whose first token counts for this atom (evaluation.py's lists)."""
    if question.startswith("How many"):
        digit = numeric_string(answer)
        return [
            answer,
            answer.capitalize(),
            " " + answer,
            " " + answer.capitalize(),
            digit,
            " " + digit,
        ]
    return list(YES_ANSWERS)


def atom_text(question: str) -> str:
    """The text sent with the image for one atom."""
    return question + QUESTION_SUFFIX


def atom_probability(probs: dict[str, float], question: str, answer: str) -> float:
    """Sum over the accepted answers of P(first token == answer text), as evaluation.py sums."""
    return float(sum(probs.get(a, 0.0) for a in accepted_answers(question, answer)))


def geometric_mean(values: Sequence[float]) -> float:
    """scipy.stats.gmean: exp(mean(log v)); 0 when any value is 0."""
    if not values:
        raise ValueError("geometric mean of no values")
    if any(v <= 0.0 for v in values):
        return 0.0
    return float(math.exp(sum(math.log(v) for v in values) / len(values)))


def arithmetic_mean(values: Sequence[float]) -> float:
    """The plain mean."""
    if not values:
        raise ValueError("mean of no values")
    return float(sum(values) / len(values))


def validate_record(record: dict[str, Any], where: str = "record") -> list[tuple[str, str]]:
    """The record's [question, answer] atoms; InputError when it is not a GenEval 2 record."""
    atoms = record.get("vqa_list")
    if (
        not isinstance(atoms, list)
        or not atoms
        or not all(
            isinstance(a, (list, tuple)) and len(a) == 2 and all(isinstance(x, str) for x in a)
            for a in atoms
        )
    ):
        raise InputError(
            f"{where}: needs a non-empty 'vqa_list' of [question, answer] pairs "
            "(a GenEval 2 geneval2_data.jsonl line)"
        )
    skills = record.get("skills")
    if skills is not None and (not isinstance(skills, list) or len(skills) != len(atoms)):
        raise InputError(f"{where}: 'skills' must list one skill per vqa_list pair")
    return [(str(q), str(a)) for q, a in atoms]


def vqa_backend_from_env(
    url: str | None = None,
    model: str | None = None,
    backend: str | None = None,
    device: str = "cpu",
    **kwargs: Any,
) -> Any:
    """The VQA backend from arguments or NFTKIT_VLM_BACKEND (openai | transformers),
    NFTKIT_VLM_URL, NFTKIT_VLM_MODEL (for transformers: a checkpoint folder) and _API_KEY."""
    return make_backend(
        backend or os.environ.get(BACKEND_ENV) or "openai",
        url or os.environ.get(URL_ENV) or DEFAULT_URL,
        model or os.environ.get(MODEL_ENV) or DEFAULT_VQA_MODEL,
        os.environ.get(KEY_ENV, ""),
        device=device,
        **kwargs,
    )


def soft_tifa(
    backend: Any, images: Sequence[Image.Image], atom_lists: Sequence[list[tuple[str, str]]]
) -> list[list[float]]:
    """Atom probabilities of each image (all atoms asked concurrently); NftkitError on failure."""
    queries, owners = [], []
    for index, (image, atoms) in enumerate(zip(images, atom_lists, strict=True)):
        image = image.convert("RGB")  # decoded once, before the worker threads share it
        for question, answer in atoms:
            queries.append(
                VlmQuery(
                    image,
                    atom_text(question),
                    max_tokens=1,
                    top_logprobs=TOP_LOGPROBS,
                    candidates=tuple(accepted_answers(question, answer)),
                )
            )
            owners.append(index)
    answers: list[VlmAnswer] = backend.ask_many(queries)
    for answer in answers:
        if answer.text is None or not answer.first_token_probs:
            raise NftkitError(
                f"Soft-TIFA needs first-token logprobs from the VQA server "
                f"{backend.describe().get('url')}: {answer.error or 'the answer had none'} "
                "(start an OpenAI-compatible server with logprobs, e.g. vLLM, and set "
                f"{URL_ENV})"
            )
    result: list[list[float]] = [[] for _ in images]
    cursor = 0
    for index, atoms in enumerate(atom_lists):
        for question, answer in atoms:
            result[index].append(
                atom_probability(answers[cursor].first_token_probs, question, answer)
            )
            cursor += 1
    assert cursor == len(owners)
    return result


class Geneval2Reward(Reward):
    """GenEval 2 Soft-TIFA of one image against its record (metadata ``vqa_list``), GM in [0, 1]."""

    name = "geneval2"
    higher_is_better = True
    score_range = (0.0, 1.0)
    version = "1"
    input_format = "pil"
    needs_metadata = True

    def __init__(
        self,
        url: str | None = None,
        model: str | None = None,
        backend: str | None = None,
        timeout: float = 120.0,
        retries: int = 2,
        concurrency: int = 16,
        **kwargs: Any,
    ) -> None:
        """``url``/``model``: the VQA server (default NFTKIT_VLM_URL, Qwen3-VL-8B-Instruct);
        ``backend="transformers"``: ``model`` is a local checkpoint run on ``device``."""
        super().__init__(**kwargs)
        extra = (
            {}
            if (backend or os.environ.get(BACKEND_ENV)) == "transformers"
            else {"timeout": timeout, "retries": retries, "concurrency": concurrency}
        )
        self.backend = vqa_backend_from_env(url, model, backend, str(self.device), **extra)

    def score_batch(
        self, images: list[Image.Image], prompts: list[str], metadata: list[dict[str, Any]]
    ) -> RewardOutput:
        """Soft-TIFA GM per image; details: atom probabilities, AM, skills."""
        atom_lists = [
            validate_record(m, f"geneval2 metadata of {p!r}")
            for m, p in zip(metadata, prompts, strict=True)
        ]
        probs = soft_tifa(self.backend, images, atom_lists)
        details = [
            {
                "atoms": p,
                "soft_tifa_am": arithmetic_mean(p),
                "soft_tifa_gm": geometric_mean(p),
                "skills": m.get("skills"),
            }
            for p, m in zip(probs, metadata, strict=True)
        ]
        scores = torch.tensor([d["soft_tifa_gm"] for d in details], dtype=torch.float32)
        return RewardOutput(scores, details)
