"""DPG-Bench's question graphs: reading ``dpg_bench.csv`` and fetching the pinned copy.

Columns (compute_dpg_bench.py): item_id, text, keywords, proposition_id, dependency,
category_broad, category_detailed, tuple, question_natural_language. ``dependency`` is a
comma-separated list of parent proposition ids, 0 meaning none. The file is pinned by its git
blob id (the only digest recorded for it) and cached under ``$NFTKIT_CACHE/prompts/dpg/``.
"""

from __future__ import annotations

import csv
import hashlib
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nftkit.errors import InputError, NftkitError
from nftkit.rewards._sources import hub_offline, nftkit_cache_dir

DPG_CSV_URL = (
    "https://raw.githubusercontent.com/TencentQQGYLab/ELLA/"
    "3c228f1dc6c4d3cad0a47493816151a419f14db3/dpg_bench/dpg_bench.csv"
)
DPG_CSV_BLOB = "98457fc9901943f51ff9a30367250fc292533bed"
COLUMNS = ("item_id", "text", "proposition_id", "dependency", "tuple", "question_natural_language")


@dataclass(frozen=True)
class DpgQuestion:
    """One proposition of an item: its id, question, parent ids and DSG tuple."""

    qid: int
    question: str
    parents: tuple[int, ...]
    tuple: str
    skipped_by_official: bool = False

    @property
    def category_l2(self) -> str:
        """ "entity - whole (cat)" -> "entity - whole"."""
        return self.tuple.split("(")[0].strip()

    @property
    def category_l1(self) -> str:
        """ "entity - whole (cat)" -> "entity"."""
        return self.category_l2.split("-")[0].strip()

    def as_json(self) -> dict[str, Any]:
        """A JSON-friendly dict (stored as prompt metadata)."""
        return {
            "qid": self.qid,
            "question": self.question,
            "parents": list(self.parents),
            "tuple": self.tuple,
            "skipped_by_official": self.skipped_by_official,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DpgQuestion:
        """The inverse of ``as_json``."""
        return cls(
            int(data["qid"]),
            str(data["question"]),
            tuple(int(p) for p in data["parents"]),
            str(data["tuple"]),
            bool(data.get("skipped_by_official", False)),
        )


def git_blob_id(data: bytes) -> str:
    """``git hash-object`` of ``data``."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _parents(text: str, where: str) -> tuple[int, ...]:
    try:
        return tuple(int(p) for p in str(text).replace(" ", "").split(",") if p != "")
    except ValueError:
        raise InputError(
            f"{where}: dependency {text!r} is not a comma-separated list of ints"
        ) from None


def read_dpg_csv(path: Path) -> list[tuple[str, str, list[DpgQuestion]]]:
    """(item_id, prompt, questions) per item in first-seen order.

    The first data row is marked ``skipped_by_official``: compute_dpg_bench.py's
    ``if i == 0: continue`` drops it.
    """
    items: dict[str, tuple[str, list[DpgQuestion]]] = {}
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise InputError(f"{path}: not a dpg_bench.csv (missing columns {', '.join(missing)})")
        for i, row in enumerate(reader):
            where = f"{path}: row {i + 2}"
            try:
                qid = int(row["proposition_id"])
            except ValueError:
                raise InputError(
                    f"{where}: proposition_id {row['proposition_id']!r} is not an int"
                ) from None
            question = DpgQuestion(
                qid,
                row["question_natural_language"],
                _parents(row["dependency"], where),
                row["tuple"],
                i == 0,
            )
            _text, questions = items.setdefault(row["item_id"], (row["text"], []))
            questions.append(question)
    if not items:
        raise InputError(f"{path}: no rows")
    return [(item_id, text, qs) for item_id, (text, qs) in items.items()]


def _how_to_pass() -> str:
    return (
        f"pass --prompts PATH with a copy of dpg_bench.csv (TencentQQGYLab/ELLA "
        f"dpg_bench/dpg_bench.csv, Apache-2.0; `git hash-object` must print {DPG_CSV_BLOB}), "
        f"or fetch {DPG_CSV_URL} where the network is reachable"
    )


def resolve_dpg_csv(explicit: str | Path | None = None, timeout: float = 120.0) -> Path:
    """``explicit`` when given, else the cached or downloaded pinned csv (git blob checked)."""
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise InputError(f"prompt file not found: {path}")
        return path
    target = nftkit_cache_dir() / "prompts" / "dpg" / DPG_CSV_BLOB / "dpg_bench.csv"
    if target.is_file() and git_blob_id(target.read_bytes()) == DPG_CSV_BLOB:
        return target
    if hub_offline():
        raise NftkitError(
            f"dpg_bench.csv is not cached at {target} and HF_HUB_OFFLINE is set: " + _how_to_pass()
        )
    try:
        with urllib.request.urlopen(DPG_CSV_URL, timeout=timeout) as response:
            data = response.read()
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise NftkitError(f"cannot download dpg_bench.csv ({reason}): " + _how_to_pass()) from None
    if git_blob_id(data) != DPG_CSV_BLOB:
        raise NftkitError(
            f"dpg_bench.csv from {DPG_CSV_URL} has git blob {git_blob_id(data)}, "
            f"expected {DPG_CSV_BLOB}: " + _how_to_pass()
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    partial.write_bytes(data)
    partial.replace(target)
    return target
