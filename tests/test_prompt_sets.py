"""Prompt-set resolution: explicit paths, the sha256-pinned download cache, offline errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from nftkit.errors import InputError, NftkitError
from nftkit.evaluators.prompt_sets import (
    PROMPT_SOURCES,
    cached_path,
    distinct_lines,
    resolve_prompt_file,
    sha256_bytes,
)

SHARED_FILES = {
    "geneval": "geneval/evaluation_metadata.jsonl",
    "ocr": "ocr/test.txt",
    "pickscore": "pickscore/test.txt",
    "drawbench": "drawbench/prompts.txt",
}


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("NFTKIT_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    return tmp_path / "cache"


def test_pins_match_the_public_files(shared_data: Path) -> None:
    for suite, rel in SHARED_FILES.items():
        data = (shared_data / rel).read_bytes()
        source = PROMPT_SOURCES[suite]
        assert sha256_bytes(distinct_lines(data) if source.dedupe else data) == source.sha256


def test_explicit_path_wins_and_must_exist(tmp_path: Path) -> None:
    path = tmp_path / "p.txt"
    path.write_text("a\n")
    assert resolve_prompt_file(PROMPT_SOURCES["ocr"], path) == path
    with pytest.raises(InputError, match="prompt file not found"):
        resolve_prompt_file(PROMPT_SOURCES["ocr"], tmp_path / "missing.txt")


def test_download_is_verified_cached_and_then_used_offline(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    upstream = tmp_path / "upstream.txt"
    upstream.write_text("b\na\nb\n\na\n")  # DrawBench-style repeats
    reduced = b"b\na\n"
    source = dataclasses.replace(
        PROMPT_SOURCES["drawbench"], url=upstream.as_uri(), sha256=sha256_bytes(reduced)
    )
    path = resolve_prompt_file(source)
    assert path == cached_path(source) and path.read_bytes() == reduced
    assert str(path).startswith(str(cache / "prompts" / "drawbench"))
    upstream.unlink()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_prompt_file(source) == path  # no network needed once cached


def test_changed_upstream_file_is_refused(cache: Path, tmp_path: Path) -> None:
    upstream = tmp_path / "upstream.jsonl"
    upstream.write_text('{"prompt": "x"}\n')
    source = dataclasses.replace(PROMPT_SOURCES["geneval"], url=upstream.as_uri())
    with pytest.raises(NftkitError, match=r"has sha256 .* expected 5c48e08"):
        resolve_prompt_file(source)
    assert not cached_path(source).exists()


def test_offline_error_says_to_pass_prompts(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(NftkitError, match="pass --prompts PATH") as info:
        resolve_prompt_file(PROMPT_SOURCES["ocr"])
    assert "\n" not in str(info.value) and "flow_grpo" in str(info.value)
    monkeypatch.delenv("HF_HUB_OFFLINE")
    unreachable = dataclasses.replace(PROMPT_SOURCES["ocr"], url=(cache / "nope.txt").as_uri())
    with pytest.raises(NftkitError, match=r"cannot download the ocr prompt set .*--prompts PATH"):
        resolve_prompt_file(unreachable)
