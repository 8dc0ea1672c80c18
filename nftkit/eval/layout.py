"""GenEval's folder layout for generated images, and manifests of images made elsewhere.

Layout: ``<root>/<prompt index:05d>/metadata.jsonl`` (the prompt's JSON line) and
``<root>/<prompt index:05d>/samples/<sample index:04d>.png``. Every suite writes it, so
GenEval's own evaluate_images.py can read a ``geneval`` output folder. Files are written to a
temporary name and renamed, so an interrupted run never leaves a half-written image behind;
``remove_temporaries`` lets a rerun delete the temporary files a killed run left.
A manifest is a JSONL file with one image per line: ``image`` (path, relative to the
manifest's folder), ``prompt``, and optionally ``metadata`` (object or JSON string), ``id``
(groups images of one prompt) and ``sample_index``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from nftkit.errors import InputError
from nftkit.images import has_alpha
from nftkit.prompt_files import read_jsonl

METADATA_FILE = "metadata.jsonl"
SAMPLES_DIR = "samples"
RESULTS_FILE = "results.jsonl"
MANIFEST_FILE = "manifest.jsonl"
_PROMPT_DIR = re.compile(r"\d{5,}")
_SAMPLE_FILE = re.compile(r"(\d+)\.png", re.IGNORECASE)
_TEMP_FILE = re.compile(r"\..+\.(\d+)\.tmp")


def prompt_dir(root: Path, prompt_index: int) -> Path:
    """``root/<index:05d>``."""
    return root / f"{prompt_index:05d}"


def image_path(root: Path, prompt_index: int, sample_index: int) -> Path:
    """``root/<index:05d>/samples/<sample:04d>.png``."""
    return prompt_dir(root, prompt_index) / SAMPLES_DIR / f"{sample_index:04d}.png"


def _temp_name(path: Path) -> Path:
    """The temporary name ``path`` is written under before the rename (``.<name>.<pid>.tmp``)."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def remove_temporaries(folders: Iterable[Path]) -> int:
    """Delete the temporary files that killed writers left in ``folders``; returns how many.

    Files of this process are kept. Only call it on folders no other live process writes to.
    """
    removed = 0
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            match = _TEMP_FILE.fullmatch(path.name)
            if match and int(match.group(1)) != os.getpid() and path.is_file():
                path.unlink(missing_ok=True)
                removed += 1
    return removed


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(path)
    tmp.write_bytes(data)
    tmp.replace(path)


def write_prompt_metadata(root: Path, prompt_index: int, line: dict[str, Any]) -> None:
    """Write the prompt's ``metadata.jsonl`` (unchanged files are left alone)."""
    path = prompt_dir(root, prompt_index) / METADATA_FILE
    data = (json.dumps(line, ensure_ascii=False) + "\n").encode("utf-8")
    if not (path.is_file() and path.read_bytes() == data):
        _write_atomic(path, data)


def save_png(
    image: Image.Image, path: Path, before_rename: Callable[[], None] | None = None
) -> None:
    """Save ``image`` as PNG at ``path`` atomically (``before_rename``: a crash-test hook)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(path)
    image.save(tmp, format="PNG")
    if before_rename is not None:
        before_rename()
    tmp.replace(path)


def load_png(path: Path) -> Image.Image | None:
    """The image at ``path`` (RGB, or translucent as stored: each reward converts those as its
    reference does), or None when it is missing or unreadable."""
    try:
        with Image.open(path) as image:
            if has_alpha(image):
                image.load()
                return image
            return image.convert("RGB")
    except (OSError, ValueError):
        return None


def write_results(path: Path, lines: list[dict[str, Any]]) -> None:
    """Write result lines as JSONL (atomically)."""
    text = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
    _write_atomic(path, text.encode("utf-8"))


@dataclass
class ImageGroup:
    """The images of one prompt found on disk: the prompt's line and (sample index, path)."""

    prompt_id: str
    line: dict[str, Any]
    images: list[tuple[int, Path]] = field(default_factory=list)


def read_geneval_layout(root: Path) -> list[ImageGroup]:
    """Prompt folders of a GenEval layout, in index order; InputError when malformed."""
    groups = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and _PROMPT_DIR.fullmatch(p.name)):
        meta = folder / METADATA_FILE
        if not meta.is_file():
            raise InputError(f"{folder}: no {METADATA_FILE} (GenEval layout expected)")
        lines = read_jsonl(meta)
        if len(lines) != 1 or not isinstance(lines[0].get("prompt"), str):
            raise InputError(f"{meta}: expected one JSON line with a 'prompt' key")
        images = []
        for png in sorted((folder / SAMPLES_DIR).glob("*")):
            match = _SAMPLE_FILE.fullmatch(png.name)
            if match and png.is_file():
                images.append((int(match.group(1)), png))
        groups.append(ImageGroup(folder.name, lines[0], images))
    return groups


def read_manifest(path: Path) -> list[ImageGroup]:
    """Images of a JSONL manifest grouped by prompt (``id`` or the prompt text), first-seen order."""
    groups: dict[str, ImageGroup] = {}
    for number, row in enumerate(read_jsonl(path), start=1):
        where = f"{path}:{number}"
        image, prompt = row.get("image"), row.get("prompt")
        if not isinstance(image, str) or not isinstance(prompt, str):
            raise InputError(f"{where}: a manifest line needs string 'image' and 'prompt' keys")
        metadata = row.get("metadata") or {}
        if isinstance(metadata, str):
            try:
                metadata = json.loads(metadata)
            except json.JSONDecodeError:
                raise InputError(f"{where}: 'metadata' is not valid JSON") from None
        if not isinstance(metadata, dict):
            raise InputError(f"{where}: 'metadata' must be an object")
        key = str(row.get("id", prompt))
        group = groups.setdefault(key, ImageGroup(key, {**metadata, "prompt": prompt}))
        sample = row.get("sample_index", len(group.images))
        if not isinstance(sample, int) or isinstance(sample, bool) or sample < 0:
            raise InputError(f"{where}: 'sample_index' must be a non-negative integer")
        file = Path(image) if Path(image).is_absolute() else path.parent / image
        if not file.is_file():
            raise InputError(f"{where}: image not found: {file}")
        group.images.append((sample, file))
    return list(groups.values())


def read_image_source(path: Path) -> list[ImageGroup]:
    """Images to score: a GenEval layout folder, a folder with manifest.jsonl, or a manifest."""
    if path.is_file():
        return read_manifest(path)
    if not path.is_dir():
        raise InputError(f"--images: no such file or folder: {path}")
    if (path / MANIFEST_FILE).is_file():
        return read_manifest(path / MANIFEST_FILE)
    groups = read_geneval_layout(path)
    if not groups or not any(g.images for g in groups):
        raise InputError(
            f"--images {path}: no images found; expected GenEval's layout (<index>/metadata.jsonl "
            f"+ samples/<n>.png) or a {MANIFEST_FILE} with 'image' and 'prompt' per line"
        )
    return groups
