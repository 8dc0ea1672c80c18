"""Reading user prompt files: plain text (one prompt per line) and JSONL manifests.

Malformed input raises InputError with the file name and line number; nothing is guessed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nftkit.errors import InputError


@dataclass
class PromptRecord:
    """One prompt with its optional metadata, image path and id from a manifest."""

    prompt: str
    metadata: dict[str, Any] = field(default_factory=dict)
    image: str | None = None
    id: str | None = None


def read_text_prompts(path: str | Path) -> list[str]:
    """Non-empty lines of a UTF-8 text file, stripped."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"prompt file not found: {path}")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text ({exc})") from exc
    prompts = [line.strip() for line in lines if line.strip()]
    if not prompts:
        raise InputError(f"prompt file is empty: {path}")
    return prompts


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """Parse a JSONL file; a malformed line raises InputError naming its line number."""
    return [row for _, row in read_numbered_jsonl(path)]


def read_numbered_jsonl(path: str | Path) -> list[tuple[int, dict[str, Any]]]:
    """Like read_jsonl, with each record's 1-based line number (blank lines are skipped)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"file not found: {path}")
    rows: list[tuple[int, dict[str, Any]]] = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{number}: invalid JSON ({exc.msg})") from exc
            if not isinstance(row, dict):
                raise InputError(
                    f"{path}:{number}: expected a JSON object, got {type(row).__name__}"
                )
            rows.append((number, row))
    if not rows:
        raise InputError(f"file has no records: {path}")
    return rows


def read_prompt_records(path: str | Path) -> list[PromptRecord]:
    """Prompts from a ``.jsonl`` manifest (keys prompt, metadata?, image?, id?) or a text file.

    GenEval metadata lines (with a "prompt" key and "include" clauses) are accepted as they are:
    the whole line becomes the metadata.
    """
    path = Path(path)
    if path.suffix.lower() not in (".jsonl", ".json"):
        return [PromptRecord(prompt=p) for p in read_text_prompts(path)]
    records = []
    for number, row in read_numbered_jsonl(path):
        prompt = row.get("prompt")
        if not isinstance(prompt, str):
            raise InputError(f"{path}:{number}: no string 'prompt' key")
        metadata = row.get("metadata")
        if metadata is None:
            metadata = {k: v for k, v in row.items() if k not in ("image", "id")}
        if isinstance(metadata, str):
            try:
                metadata = json.loads(metadata)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{number}: 'metadata' is not JSON") from exc
        if not isinstance(metadata, dict):
            raise InputError(f"{path}:{number}: 'metadata' must be an object")
        image = row.get("image")
        if image is not None and not isinstance(image, str):
            raise InputError(f"{path}:{number}: 'image' must be a string path")
        records.append(
            PromptRecord(
                prompt=prompt,
                metadata=metadata,
                image=image,
                id=str(row["id"]) if "id" in row else None,
            )
        )
    return records
