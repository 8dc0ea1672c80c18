"""Plain-value helpers of the results store: canonical JSON, config hashes, argument checks.

Nothing here touches the database; the runs, metrics and samples modules share these checks so
that every bad argument gets the same one-line UsageError.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

from nftkit.errors import NftkitError, UsageError


def canonical_json(value: Any) -> str:
    """Key-sorted, compact JSON of ``value``; NftkitError when it is not plain JSON data."""
    try:
        return json.dumps(
            value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
        )
    except (TypeError, ValueError) as exc:
        raise NftkitError(f"not storable as JSON: {exc}") from None


def config_hash(config: Mapping[str, Any]) -> str:
    """sha256 hex digest of the canonical JSON of a run configuration."""
    return hashlib.sha256(canonical_json(dict(config)).encode("utf-8")).hexdigest()


def check_choice(what: str, value: object, choices: tuple[str, ...]) -> None:
    """UsageError unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise UsageError(f"unknown {what} {value!r}: choose one of {', '.join(choices)}")


def check_name(what: str, value: object) -> None:
    """UsageError unless ``value`` is a non-empty string."""
    if not isinstance(value, str) or not value.strip():
        raise UsageError(f"{what} must be a non-empty string, got {value!r}")


def plain(value: Any) -> Any:
    """numpy / torch scalars to Python scalars; everything else unchanged."""
    if not isinstance(value, str | bytes | int | float | bool) and callable(
        getattr(value, "item", None)
    ):
        try:
            return value.item()
        except (TypeError, ValueError):
            return value
    return value


def optional_count(what: str, value: Any) -> int | None:
    """``value`` as a non-negative int or None; UsageError otherwise."""
    value = plain(value)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise UsageError(f"{what} must be a non-negative integer or None, got {value!r}")
    return value


def finite(name: str, suite: str, raw: Any) -> float:
    """``raw`` as a finite float; NftkitError naming the metric otherwise."""
    raw = plain(raw)
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise NftkitError(f"metric {name!r} of suite {suite!r} is not a number: {raw!r}") from None
    if not math.isfinite(value):
        raise NftkitError(
            f"metric {name!r} of suite {suite!r} is {value}: only finite values can be stored"
        )
    return value


def json_default(value: Any) -> Any:
    """JSON fallback: numpy/torch scalars and arrays to plain values."""
    scalar = plain(value)
    if scalar is not value:
        return scalar
    if callable(getattr(value, "tolist", None)):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serializable")


def first_line(exc: object) -> str:
    """The first line of an error's text (its type name when empty)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
