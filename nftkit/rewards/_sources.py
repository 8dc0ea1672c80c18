"""Where a reward's weights come from: DIR/<reward>/ (``--weights-dir``) or the Hugging Face hub.

Each model reward declares its sources as ``WeightSource`` values. Loading resolves a source
either to ``DIR/<reward>/<subdir>`` (when a weights directory is configured) or to its hub
repository, read through the usual Hugging Face cache (HF_HOME / HF_HUB_CACHE, HF_HUB_OFFLINE
respected). ``download_sources`` pre-fetches the same sources, into the hub cache or laid out as
``--weights-dir`` expects. Every failure becomes one MissingWeightsError that says where we
looked and how to provide the files.
"""

from __future__ import annotations

import os
import shutil
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from nftkit.errors import MissingWeightsError
from nftkit.weights import WEIGHTS_DIR_ENV, weights_root

T = TypeVar("T")

# Non-PyTorch formats that hub repositories often carry beside the weights we load.
_FOREIGN_FORMATS = (
    "*.msgpack",
    "*.h5",
    "*.ot",
    "*.onnx",
    "*.onnx_data",
    "flax_model*",
    "tf_model*",
)


@dataclass(frozen=True)
class WeightSource:
    """One thing a reward loads: a hub repository (or a URL) and its place under DIR/<reward>/.

    repo_id: hub repository; files: exact file names to fetch; patterns: glob patterns to fetch
    (e.g. processor files only); neither: the whole model folder with its weights in one PyTorch
    format; subdir: folder under DIR/<reward>/ that holds it ("" = the folder itself); url: a
    plain download URL instead of a hub repository (files[0] names the file).
    """

    repo_id: str
    files: tuple[str, ...] | None = None
    patterns: tuple[str, ...] | None = None
    subdir: str = ""
    url: str | None = None

    def describe(self) -> str:
        """Human-readable origin, e.g. ``xswu/HPSv2:HPS_v2.1_compressed.pt``."""
        if self.url is not None:
            return self.url
        return f"{self.repo_id}:{','.join(self.files)}" if self.files else self.repo_id


def hub_offline() -> bool:
    """True when HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) asks for no network access."""
    return any(
        os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on")
        for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def hub_cache_dir() -> str:
    """The Hugging Face hub cache in use (HF_HUB_CACHE, else HF_HOME/hub, else ~/.cache/...)."""
    try:
        from huggingface_hub import constants

        return str(constants.HF_HUB_CACHE)
    except Exception:  # pragma: no cover - huggingface_hub is a dependency of transformers
        return os.path.expanduser("~/.cache/huggingface/hub")


def nftkit_cache_dir() -> Path:
    """Cache for plain-URL downloads: $NFTKIT_CACHE, else $XDG_CACHE_HOME/nftkit, else ~/.cache."""
    if os.environ.get("NFTKIT_CACHE"):
        return Path(os.environ["NFTKIT_CACHE"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "nftkit"


def _how_to_provide(reward_name: str) -> str:
    return (
        f"Pre-fetch with `nftkit rewards download {reward_name}` where the hub is reachable, or "
        f"put the files in DIR/{reward_name}/ and pass --weights-dir DIR (env {WEIGHTS_DIR_ENV})."
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def hub_error(reward_name: str, source: WeightSource, exc: BaseException) -> MissingWeightsError:
    """The MissingWeightsError for a source that the hub (or its cache) could not provide."""
    where = (
        f"the download cache {nftkit_cache_dir()}"
        if source.url is not None
        else f"the Hugging Face cache {hub_cache_dir()}"
    )
    offline = " (HF_HUB_OFFLINE is set)" if hub_offline() else ""
    return MissingWeightsError(
        f"weights for reward '{reward_name}' not available: could not get {source.describe()} "
        f"from the hub or {where}{offline} ({_first_line(exc)}). {_how_to_provide(reward_name)}"
    )


def local_error(reward_name: str, folder: Path, exc: BaseException) -> MissingWeightsError:
    """The MissingWeightsError for a weights-dir folder that exists but cannot be loaded."""
    return MissingWeightsError(
        f"weights for reward '{reward_name}' in {folder} could not be loaded ({_first_line(exc)}). "
        f"The folder must hold the model in its original on-disk format "
        f"(see `nftkit debug make-tiny-weights` for the layout)."
    )


@dataclass(frozen=True)
class Resolved:
    """A source resolved for loading: ``location`` is a local folder or a hub repo id."""

    reward_name: str
    source: WeightSource
    location: str
    is_local: bool

    def load(self, fn: Callable[[str], T]) -> T:
        """Run ``fn(location)`` (e.g. ``CLIPModel.from_pretrained``); failures explain themselves."""
        try:
            return fn(self.location)
        except MissingWeightsError:
            raise
        except (OSError, ValueError) as exc:
            if self.is_local:
                raise local_error(self.reward_name, Path(self.location), exc) from exc
            raise hub_error(self.reward_name, self.source, exc) from exc

    def file(self, name: str, hint: str = "") -> Path:
        """Local path of one file of this source: from the weights dir, the hub cache or a URL."""
        if self.is_local:
            path = Path(self.location) / name
            if not path.is_file():
                raise MissingWeightsError(
                    f"weights for reward '{self.reward_name}' are incomplete: expected {path}"
                    + (f" ({hint})" if hint else "")
                    + f". {_how_to_provide(self.reward_name)}"
                )
            return path
        if self.source.url is not None:
            return _url_file(self.reward_name, self.source)
        try:
            from huggingface_hub import hf_hub_download

            return Path(hf_hub_download(self.source.repo_id, name, local_files_only=hub_offline()))
        except Exception as exc:
            raise hub_error(self.reward_name, self.source, exc) from exc


def resolve(reward_name: str, source: WeightSource, weights_dir: str | Path | None) -> Resolved:
    """Resolve ``source`` to DIR/<reward>/<subdir> when a weights dir is set, else to the hub."""
    root = weights_root(weights_dir)
    if root is None:
        return Resolved(reward_name, source, source.repo_id, is_local=False)
    path = root / reward_name / source.subdir if source.subdir else root / reward_name
    if not path.is_dir():
        raise MissingWeightsError(
            f"weights for reward '{reward_name}' not found: looked in {path} "
            f"(from --weights-dir / {WEIGHTS_DIR_ENV}={root}); it should hold "
            f"{source.describe()} in its original format. Fetch it with `nftkit rewards "
            f"download {reward_name} --to {root}` where the hub is reachable, or unset the "
            "weights dir to read the Hugging Face cache."
        )
    return Resolved(reward_name, source, str(path), is_local=True)


def _url_file(reward_name: str, source: WeightSource) -> Path:
    """A plain-URL file, cached under nftkit_cache_dir()/<reward>/ (downloaded once)."""
    assert source.url is not None and source.files
    target = nftkit_cache_dir() / reward_name / source.files[0]
    if target.is_file():
        return target
    if hub_offline():
        raise hub_error(reward_name, source, FileNotFoundError(f"{target} is not cached"))
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(target.suffix + ".part")
        with urllib.request.urlopen(source.url, timeout=60) as response, open(partial, "wb") as f:
            shutil.copyfileobj(response, f)
        partial.replace(target)
    except Exception as exc:
        raise hub_error(reward_name, source, exc) from exc
    return target


PROCESSOR_PATTERNS: tuple[str, ...] = (
    "preprocessor_config.json",
    "processor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
)
"""Image-processor and tokenizer files of a hub model folder (no config.json, no weights)."""


def _model_patterns(repo_id: str) -> list[str]:
    """File patterns for a model folder: configs, tokenizer files and ONE PyTorch weight format."""
    from huggingface_hub import list_repo_files

    files = list_repo_files(repo_id)
    has_safetensors = any(f.endswith(".safetensors") for f in files)
    weights = (
        ["*.safetensors", "*.safetensors.index.json"]
        if has_safetensors
        else ["*.bin", "*.bin.index.json"]
    )
    return ["*.json", "*.txt", "*.model", *weights]


def download_sources(
    reward_name: str, sources: Sequence[WeightSource], target: Path | None = None
) -> list[Path]:
    """Fetch every source into the hub cache, or into ``target/<reward>/<subdir>`` when given.

    Returns the folders (or files) written. Raises MissingWeightsError, one line, offline.
    """
    if hub_offline():
        raise MissingWeightsError(
            f"cannot download weights for reward '{reward_name}': HF_HUB_OFFLINE is set. "
            "Run the download where the hub is reachable, then copy the cache or the folder."
        )
    from huggingface_hub import hf_hub_download, snapshot_download

    written: list[Path] = []
    for source in sources:
        dest = None
        if target is not None:
            dest = target / reward_name / source.subdir if source.subdir else target / reward_name
            dest.mkdir(parents=True, exist_ok=True)
        try:
            if source.url is not None:
                cached = _url_file(reward_name, source)
                if dest is not None:
                    shutil.copy2(cached, dest / cached.name)
                written.append(dest / cached.name if dest is not None else cached)
            elif source.files is not None:
                for name in source.files:
                    path = hf_hub_download(
                        source.repo_id, name, local_dir=str(dest) if dest is not None else None
                    )
                    written.append(Path(path))
            else:
                patterns = (
                    list(source.patterns)
                    if source.patterns is not None
                    else _model_patterns(source.repo_id)
                )
                path = snapshot_download(
                    source.repo_id,
                    allow_patterns=patterns,
                    ignore_patterns=list(_FOREIGN_FORMATS),
                    local_dir=str(dest) if dest is not None else None,
                )
                written.append(Path(path))
        except MissingWeightsError:
            raise
        except Exception as exc:
            raise hub_error(reward_name, source, exc) from exc
    return written
