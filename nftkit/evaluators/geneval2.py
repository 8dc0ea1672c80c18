"""The ``geneval2`` suite: GenEval 2's 800 prompts (6,012 atoms), scored by Soft-TIFA.

One image per prompt, as the official evaluation.py. Rows hold each image's atom
probabilities (``atoms``), its Soft-TIFA GM and AM. Summary (all x100, means over images):
``overall`` = Soft-TIFA GM (the prompt-level number), ``soft_tifa_am`` (atom-level), per-skill
AM pooled over atoms (``skill_<name>``, as soft_tifa_analysis.py) and per-atomicity GM
(``atoms_<k>``). The VQA model is an OpenAI-compatible server (NFTKIT_VLM_URL,
NFTKIT_VLM_MODEL; default Qwen/Qwen3-VL-8B-Instruct), recorded in the run's settings.
The data is CC BY-NC 4.0 and never bundled: the pinned file is downloaded, or ``--prompts``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from nftkit.errors import InputError, NftkitError
from nftkit.evaluators.base import PromptSpec, SuiteResult
from nftkit.evaluators.prompt_file import PromptFileEvaluator
from nftkit.evaluators.prompt_sets import PromptSource
from nftkit.prompt_files import read_jsonl
from nftkit.rewards.geneval2 import (
    arithmetic_mean,
    geometric_mean,
    soft_tifa,
    validate_record,
    vqa_backend_from_env,
)

GENEVAL2_SOURCE = PromptSource(
    "geneval2",
    "https://raw.githubusercontent.com/facebookresearch/GenEval2/"
    "a6e82d2289e8d418f27f0adee77908b07060eea3/geneval2_data.jsonl",
    "09233adbc9f877fba205f1a20efa4a8640e7e62a91dfd55893562bed8a928e43",
    "geneval2_data.jsonl",
    "facebookresearch/GenEval2: geneval2_data.jsonl",
)
LICENCE = "GenEval 2 data is CC BY-NC 4.0 (non-commercial use only) and is not bundled with nftkit"


def geneval2_summary(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """overall (GM), soft_tifa_am, per-skill pooled AM and per-atom-count GM, all x100."""
    if not rows:
        return {}
    metrics = {
        "overall": 100.0 * float(np.mean([r["scores"]["soft_tifa_gm"] for r in rows])),
        "soft_tifa_am": 100.0 * float(np.mean([r["scores"]["soft_tifa_am"] for r in rows])),
    }
    by_skill: dict[str, list[float]] = defaultdict(list)
    by_count: dict[int, list[float]] = defaultdict(list)
    for row in rows:
        for skill, p in zip(row.get("skills") or [], row.get("atoms") or [], strict=False):
            by_skill[skill].append(p)
        if row.get("atom_count") is not None:
            by_count[int(row["atom_count"])].append(row["scores"]["soft_tifa_gm"])
    for skill in sorted(by_skill):
        metrics[f"skill_{skill}"] = 100.0 * float(np.mean(by_skill[skill]))
    for count in sorted(by_count):
        metrics[f"atoms_{count}"] = 100.0 * float(np.mean(by_count[count]))
    return metrics


class Geneval2Evaluator(PromptFileEvaluator):
    """GenEval 2 (Meta 2025): compositional prompts judged atom by atom with Soft-TIFA."""

    name = "geneval2"
    description = "GenEval 2: 800 prompts, 6,012 VQA atoms, Soft-TIFA (Qwen3-VL judge)"
    n_samples = 1
    default_steps = 40
    primary_metric = "overall"
    row_info_keys = ("atoms", "skills", "atom_count")

    def __init__(
        self, vlm_url: str | None = None, vlm_model: str | None = None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.backend = vqa_backend_from_env(vlm_url, vlm_model, device=self.device)

    @property
    def source(self) -> PromptSource:
        """The pinned GenEval 2 data file."""
        return GENEVAL2_SOURCE

    def settings(self) -> dict[str, Any]:
        """The VQA backend and model change scores."""
        return {"vqa": self.backend.describe(), "method": "soft_tifa"}

    def prompt_file(self) -> Path:
        """The data file; the error that asks for it states the licence."""
        try:
            return super().prompt_file()
        except NftkitError as exc:
            raise type(exc)(f"{exc} ({LICENCE})") from None

    def read_prompts(self, path: Path) -> list[PromptSpec]:
        """geneval2_data.jsonl lines (prompt, atom_count, vqa_list, skills), validated."""
        specs = []
        for i, line in enumerate(read_jsonl(path)):
            if not isinstance(line.get("prompt"), str):
                raise InputError(f"{path}: line {i + 1} has no 'prompt' (a GenEval 2 data line)")
            validate_record(line, f"{path}: line {i + 1}")
            specs.append(
                PromptSpec(
                    f"{i:05d}", line["prompt"], {k: v for k, v in line.items() if k != "prompt"}
                )
            )
        return specs

    def score_samples(
        self, images: Sequence[Image.Image], specs: Sequence[PromptSpec]
    ) -> list[dict[str, Any]]:
        """Soft-TIFA atom probabilities of each image, with its GM and AM."""
        atom_lists = [validate_record(s.metadata, f"prompt {s.id}") for s in specs]
        probs = soft_tifa(self.backend, list(images), atom_lists)
        rows = []
        for spec, p in zip(specs, probs, strict=True):
            rows.append(
                {
                    "prompt_id": spec.id,
                    "atoms": p,
                    "skills": spec.metadata.get("skills"),
                    "atom_count": spec.metadata.get("atom_count"),
                    "scores": {
                        "soft_tifa_gm": geometric_mean(p),
                        "soft_tifa_am": arithmetic_mean(p),
                    },
                }
            )
        return rows

    def summarize(self, rows: Sequence[dict[str, Any]]) -> SuiteResult:
        """GenEval 2's summary (see the module docstring)."""
        metrics = geneval2_summary(rows)
        return SuiteResult(list(rows), metrics, {k: True for k in metrics})
