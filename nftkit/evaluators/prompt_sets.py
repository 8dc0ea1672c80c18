"""Where a suite's prompts come from: ``--prompts PATH``, or a public URL pinned by sha256.

Downloads land in ``$NFTKIT_CACHE/prompts/<suite>/<sha256>/<file>`` (default cache
``~/.cache/nftkit``, see ``nftkit_cache_dir``) and are checked against the pinned digest; a
cached file is used without any network access. Sources with ``dedupe`` (DrawBench, whose
public file repeats each prompt 5 times) are reduced to their distinct lines in first-seen
order before the check, and the digest pins that reduced text.
"""

from __future__ import annotations

import hashlib
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from nftkit.errors import InputError, NftkitError, UsageError
from nftkit.rewards._sources import hub_offline, nftkit_cache_dir


@dataclass(frozen=True)
class PromptSource:
    """A public prompt file: its URL, the sha256 of its (reduced) content and its file name."""

    suite: str
    url: str
    sha256: str
    filename: str
    origin: str
    dedupe: bool = False


PROMPT_SOURCES: dict[str, PromptSource] = {
    "geneval": PromptSource(
        "geneval",
        "https://raw.githubusercontent.com/djghosh13/geneval/main/prompts/evaluation_metadata.jsonl",
        "5c48e0813e812e3c373fa5c8ed07a8f0a483be30272b4427b0559c8048e67c13",
        "evaluation_metadata.jsonl",
        "djghosh13/geneval: prompts/evaluation_metadata.jsonl",
    ),
    "ocr": PromptSource(
        "ocr",
        "https://raw.githubusercontent.com/yifan123/flow_grpo/main/dataset/ocr/test.txt",
        "4dd8caf3ab6ade73bd376c7d14c6ca49b6eacfb1bd321e22c40714ae4a98d4dc",
        "test.txt",
        "yifan123/flow_grpo: dataset/ocr/test.txt",
    ),
    "pickscore": PromptSource(
        "pickscore",
        "https://raw.githubusercontent.com/yifan123/flow_grpo/main/dataset/pickscore/test.txt",
        "d75c025fa451866e70f7e36243f7cdd93095523cb51f5f9651f2ce3236d20262",
        "test.txt",
        "yifan123/flow_grpo: dataset/pickscore/test.txt",
    ),
    "drawbench": PromptSource(
        "drawbench",
        "https://raw.githubusercontent.com/NVlabs/DiffusionNFT/main/dataset/drawbench/test.txt",
        "7c4d2518b7642eef86637001fea3f826a950d3c2fdfab70cd7cb45e6f10fdbea",
        "prompts.txt",
        "NVlabs/DiffusionNFT: dataset/drawbench/test.txt",
        dedupe=True,
    ),
}
"""The pinned public prompt sets of the built-in suites (see ../shared/data/SOURCES.md)."""


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def distinct_lines(data: bytes) -> bytes:
    """Non-empty stripped lines, first occurrence kept, newline-terminated (UTF-8)."""
    lines = [line.strip() for line in data.decode("utf-8").splitlines() if line.strip()]
    return ("\n".join(dict.fromkeys(lines)) + "\n").encode("utf-8")


def cached_path(source: PromptSource) -> Path:
    """Where the verified copy of ``source`` lives in the cache."""
    return nftkit_cache_dir() / "prompts" / source.suite / source.sha256 / source.filename


def _how_to_pass(source: PromptSource) -> str:
    return (
        f"pass --prompts PATH with a copy of {source.filename} ({source.origin}), "
        f"or fetch {source.url} where the network is reachable"
    )


def download_prompt_set(source: PromptSource, timeout: float = 60.0) -> Path:
    """Fetch ``source`` into the cache and verify its digest; NftkitError when that fails."""
    target = cached_path(source)
    if hub_offline():
        raise NftkitError(
            f"the {source.suite} prompt set is not cached at {target} and HF_HUB_OFFLINE is set: "
            + _how_to_pass(source)
        )
    try:
        with urllib.request.urlopen(source.url, timeout=timeout) as response:
            data = response.read()
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise NftkitError(
            f"cannot download the {source.suite} prompt set ({reason}): " + _how_to_pass(source)
        ) from None
    if source.dedupe:
        data = distinct_lines(data)
    digest = sha256_bytes(data)
    if digest != source.sha256:
        raise NftkitError(
            f"the {source.suite} prompt set from {source.url} has sha256 {digest}, expected "
            f"{source.sha256} (the file changed upstream): " + _how_to_pass(source)
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    partial.write_bytes(data)
    partial.replace(target)
    return target


def resolve_prompt_file(source: PromptSource | None, explicit: str | Path | None = None) -> Path:
    """``explicit`` when given (it must exist), else the verified cached or downloaded file."""
    if explicit is not None:
        path = Path(explicit).expanduser()
        if not path.is_file():
            raise InputError(f"prompt file not found: {path}")
        return path
    if source is None:
        raise UsageError("this suite has no public prompt set: pass --prompts PATH")
    target = cached_path(source)
    if target.is_file() and sha256_bytes(target.read_bytes()) == source.sha256:
        return target
    return download_prompt_set(source)
