"""The ``dpg`` suite: DPG-Bench's 1,065 dense prompts scored as compute_dpg_bench.py does.

Each prompt gets 4 images (the official 2x2 grid's tiles, generated as 4 samples); each tile
is asked every question of its item, and a question scores 1 only when the answer is "yes"
and 0 when a question it depends on was answered no (checked on the raw answers, as DSG). Tile
score = mean over the item's questions; image score = mean over its tiles; ``overall`` = 100 x
the mean over images. The official script's quirks, reproduced in ``overall`` and
``official_<L1>``, and corrected in ``overall_corrected`` and ``<L1>``:

- it skips the first data row of the csv (``if i == 0: continue``): that question is lost,
  and an item whose question depends on it raises KeyError and is silently dropped;
- category scores use the last tile only (BR of 4) and the answers *before* the dependency
  rule; the corrected ones use every tile after it.

``dropped_by_official`` counts the images the official number leaves out. The VQA model is
pluggable: any OpenAI-compatible server (NFTKIT_VLM_URL / NFTKIT_VLM_MODEL), recorded in the
run's settings. The official mPLUG-large (``damo/mplug_visual-question-answering_coco_large_en``)
comes from ModelScope, not PyPI, so nftkit does not load it; its answers are lowercase words,
so ``answer_match="normalised"`` (default) strips, lowercases and drops a final "." of a chat
model's answer before the exact "yes" test; ``"exact"`` is the official test.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from nftkit.errors import NftkitError, UsageError
from nftkit.evaluators.base import PromptSpec, SuiteResult
from nftkit.evaluators.dpg_data import DpgQuestion, read_dpg_csv, resolve_dpg_csv
from nftkit.evaluators.prompt_file import PromptFileEvaluator
from nftkit.rewards.geneval2 import vqa_backend_from_env
from nftkit.rewards.vlm_backends import VlmQuery

ANSWER_MATCH = ("normalised", "exact")


def is_yes(answer: str, match: str = "normalised") -> bool:
    """The official ``answer == 'yes'``, after normalising when ``match`` says so."""
    if match == "exact":
        return answer == "yes"
    return answer.strip().lower().rstrip(".!") == "yes"


def apply_dependencies(
    raw: dict[int, float], parents: dict[int, tuple[int, ...]], strict: bool
) -> dict[int, float]:
    """Scores after the rule "0 when a parent scored 0" (on the raw scores, not transitive).

    ``strict``: a parent that is not among the questions raises KeyError (the official
    behaviour); otherwise it is ignored.
    """
    after = dict(raw)
    for qid, ids in parents.items():
        for parent in ids:
            if parent == 0:
                continue
            if parent not in raw and not strict:
                continue
            if raw[parent] == 0:
                after[qid] = 0.0
                break
    return after


def tile_scores(questions: Sequence[DpgQuestion], yes: Sequence[float]) -> dict[str, Any]:
    """One tile: corrected and official scores, the official failure flag, after-rule scores."""
    raw = {q.qid: float(v) for q, v in zip(questions, yes, strict=True)}
    after = apply_dependencies(raw, {q.qid: q.parents for q in questions}, strict=False)
    kept = [q for q in questions if not q.skipped_by_official]
    official, failed = 0.0, False
    try:
        kept_raw = {q.qid: raw[q.qid] for q in kept}
        kept_after = apply_dependencies(kept_raw, {q.qid: q.parents for q in kept}, strict=True)
        official = float(np.mean(list(kept_after.values()))) if kept_after else 0.0
        failed = not kept_after
    except KeyError:
        failed = True
    return {
        "corrected": float(np.mean([after[q.qid] for q in questions])),
        "official": official,
        "official_failed": failed,
        "after": [after[q.qid] for q in questions],
    }


def dpg_summary(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """overall (official), overall_corrected, official_<L1> and <L1> categories, all x100."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        groups[row["prompt_id"]].append(row)
    if not groups:
        return {}
    official, corrected, dropped = [], [], 0
    cat_official: dict[str, list[float]] = defaultdict(list)
    cat_corrected: dict[str, list[float]] = defaultdict(list)
    for tiles in groups.values():
        corrected.append(float(np.mean([t["scores"]["dpg"] for t in tiles])))
        for tile in tiles:
            for l1, v in zip(tile["l1"], tile["after"], strict=True):
                cat_corrected[l1].append(v)
        if any(t["official_failed"] for t in tiles):
            dropped += 1
            continue
        official.append(float(np.mean([t["scores"]["dpg_official"] for t in tiles])))
        last = max(tiles, key=lambda t: t.get("sample_index") or 0)
        for l1, v, skipped in zip(last["l1"], last["yes"], last["skipped"], strict=True):
            if not skipped:
                cat_official[l1].append(v)
    metrics = {
        "overall": 100.0 * float(np.mean(official)) if official else 0.0,
        "overall_corrected": 100.0 * float(np.mean(corrected)),
        "dropped_by_official": float(dropped),
    }
    for l1 in sorted(cat_corrected):
        metrics[l1] = 100.0 * float(np.mean(cat_corrected[l1]))
    for l1 in sorted(cat_official):
        metrics[f"official_{l1}"] = 100.0 * float(np.mean(cat_official[l1]))
    return metrics


class DpgEvaluator(PromptFileEvaluator):
    """DPG-Bench (ELLA, Hu et al. 2024): dense prompts, DSG question graphs, VQA yes/no."""

    name = "dpg"
    description = "DPG-Bench: 1,065 dense prompts x 4 tiles, question graphs, VQA yes/no"
    n_samples = 4
    default_steps = 40
    primary_metric = "overall"
    row_info_keys = ("answers", "yes", "after", "l1", "skipped", "official_failed")

    def __init__(
        self,
        answer_match: str = "normalised",
        vlm_url: str | None = None,
        vlm_model: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if answer_match not in ANSWER_MATCH:
            raise UsageError(f"dpg: answer_match must be one of {', '.join(ANSWER_MATCH)}")
        self.answer_match = answer_match
        self.backend = vqa_backend_from_env(vlm_url, vlm_model, device=self.device)

    def settings(self) -> dict[str, Any]:
        """The VQA backend/model and the answer test change scores."""
        return {"vqa": self.backend.describe(), "answer_match": self.answer_match}

    def prompt_file(self) -> Path:
        """The question csv (``--prompts`` or the pinned dpg_bench.csv)."""
        return resolve_dpg_csv(self.prompts_path)

    def read_prompts(self, path: Path) -> list[PromptSpec]:
        """One spec per item (id = item_id), its questions as metadata."""
        return [
            PromptSpec(item_id, text, {"questions": [q.as_json() for q in qs]})
            for item_id, text, qs in read_dpg_csv(path)
        ]

    def score_samples(
        self, images: Sequence[Image.Image], specs: Sequence[PromptSpec]
    ) -> list[dict[str, Any]]:
        """Ask every question of each tile; rows with both scores and the answers."""
        per_spec = [[DpgQuestion.from_json(q) for q in s.metadata["questions"]] for s in specs]
        rgb = [image.convert("RGB") for image in images]  # decoded once, shared by the threads
        queries = [
            VlmQuery(image, q.question, max_tokens=8)
            for image, qs in zip(rgb, per_spec, strict=True)
            for q in qs
        ]
        answers = self.backend.ask_many(queries)
        failed = next((a for a in answers if a.text is None), None)
        if failed is not None:
            raise NftkitError(
                f"dpg: the VQA server {self.backend.url} failed ({failed.error}); "
                "start an OpenAI-compatible server and set NFTKIT_VLM_URL"
            )
        rows, cursor = [], 0
        for spec, qs in zip(specs, per_spec, strict=True):
            texts = [str(a.text) for a in answers[cursor : cursor + len(qs)]]
            cursor += len(qs)
            yes = [float(is_yes(t, self.answer_match)) for t in texts]
            tile = tile_scores(qs, yes)
            rows.append(
                {
                    "prompt_id": spec.id,
                    "answers": texts,
                    "yes": yes,
                    "after": tile["after"],
                    "l1": [q.category_l1 for q in qs],
                    "skipped": [q.skipped_by_official for q in qs],
                    "official_failed": tile["official_failed"],
                    "scores": {"dpg": tile["corrected"], "dpg_official": tile["official"]},
                }
            )
        return rows

    def summarize(self, rows: Sequence[dict[str, Any]]) -> SuiteResult:
        """DPG-Bench's summary (see the module docstring)."""
        metrics = dpg_summary(rows)
        directions = {k: k != "dropped_by_official" for k in metrics}
        return SuiteResult(list(rows), metrics, directions)
