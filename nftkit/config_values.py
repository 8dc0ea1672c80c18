"""Typed parsing of training options given as ``--set key=value`` or in a ``--config`` file.

Each value is converted to the type its dataclass field declares (int, float, bool, str, tuples,
``Literal[...]``, ``X | None``), read generically from the config class, so that a field added
later needs no change here. A ``str`` field with a fixed set of values lists them in its
``field(metadata={"choices": (...)})`` or in :data:`KNOWN_CHOICES`. Errors are one line naming
where the value came from, the key, and the expected type or the valid values; a misspelt key
gets the closest valid one.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from nftkit.errors import UsageError

NONE_WORDS = ("null", "none")
TRUE_WORDS = ("true", "yes", "on", "1")
FALSE_WORDS = ("false", "no", "off", "0")


def _known_choices() -> dict[str, tuple[str, ...]]:
    """Fixed value sets of the ``str`` fields that predate field metadata."""
    from nftkit.train.nft_loss import WEIGHTINGS
    from nftkit.train.sampling import SOLVERS
    from nftkit.train.schedules import OLD_POLICY_SCHEDULES

    return {
        "solver": tuple(SOLVERS),
        "std_mode": ("global", "group"),
        "weighting": tuple(WEIGHTINGS),
        "eta_schedule": tuple(OLD_POLICY_SCHEDULES),
    }


KNOWN_CHOICES: dict[str, tuple[str, ...]] = {}


class ValueTypeError(ValueError):
    """A value that does not fit a declared type; the message says what was expected."""


@dataclasses.dataclass(frozen=True)
class OptionField:
    """One settable option: its name, declared type and, for fixed sets, the valid values."""

    name: str
    annotation: Any
    choices: tuple[Any, ...] | None = None


def option_fields(config_cls: type) -> dict[str, OptionField]:
    """The settable fields of dataclass ``config_cls`` with their resolved types."""
    if not KNOWN_CHOICES:
        KNOWN_CHOICES.update(_known_choices())
    hints = typing.get_type_hints(config_cls)
    result = {}
    for item in dataclasses.fields(config_cls):
        if not item.init:
            continue
        choices = item.metadata.get("choices") or KNOWN_CHOICES.get(item.name)
        result[item.name] = OptionField(
            item.name, hints.get(item.name, Any), tuple(choices) if choices else None
        )
    return result


def describe_type(annotation: Any) -> str:
    """Human wording of a type: 'an integer', 'a float or null', 'one of: a, b'."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Literal:
        return "one of: " + ", ".join(str(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        text = " or ".join(describe_type(a) for a in inner)
        return f"{text} or null" if len(inner) < len(args) else text
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a comma-separated list of {_plain(args[0])}"
        return f"{len(args)} comma-separated {_plain(args[0]) if args else 'values'}"
    if origin in (list, Sequence):
        return f"a comma-separated list of {_plain(args[0]) if args else 'values'}"
    return {bool: "true or false", int: "an integer", float: "a float", str: "a string"}.get(
        annotation, getattr(annotation, "__name__", str(annotation))
    )


def _plain(annotation: Any) -> str:
    return {int: "integers", float: "floats", str: "strings", bool: "booleans"}.get(
        annotation, "values"
    )


def _fail(annotation: Any, choices: tuple[Any, ...] | None = None) -> ValueTypeError:
    if choices:
        return ValueTypeError("expected one of: " + ", ".join(str(c) for c in choices))
    return ValueTypeError(f"expected {describe_type(annotation)}")


def _split_items(value: Any) -> list[Any] | None:
    """A list from a TOML/JSON list, or from text '0.9,0.999' / '[0.9, 0.999]'."""
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("[") and text.endswith("]"):
            text = text[1:-1]
        return [part.strip() for part in text.split(",")] if text else []
    return None


def convert(value: Any, annotation: Any, choices: tuple[Any, ...] | None = None) -> Any:
    """``value`` (text from --set, or a TOML value) converted to ``annotation``.

    Raises ValueTypeError with the expected type or the valid values.
    """
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if type(None) in args and (
            value is None or (isinstance(value, str) and value.strip().lower() in NONE_WORDS)
        ):
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return convert(value, arg, choices)
            except ValueTypeError:
                continue
        raise _fail(annotation, choices)
    if origin is typing.Literal:
        for arg in args:
            if value == arg or (isinstance(value, str) and value.strip() == str(arg)):
                return arg
        raise _fail(annotation)
    if origin in (tuple, list, Sequence):
        items = _split_items(value)
        if items is None:
            raise _fail(annotation)
        if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
            if len(items) != len(args):
                raise _fail(annotation)
            return tuple(convert(v, a) for v, a in zip(items, args, strict=True))
        inner = args[0] if args else Any
        converted = [convert(v, inner) for v in items]
        return tuple(converted) if origin is tuple else converted
    if annotation is bool:
        return _to_bool(value)
    if annotation is int:
        return _to_int(value)
    if annotation is float:
        return _to_float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise _fail(annotation, choices)
        if choices and value not in choices:
            raise _fail(annotation, choices)
        return value
    return value  # a type this module does not know: passed through unchanged


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        word = value.strip().lower()
        if word in TRUE_WORDS:
            return True
        if word in FALSE_WORDS:
            return False
    raise _fail(bool)


def _to_int(value: Any) -> int:
    if isinstance(value, bool):
        raise _fail(int)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip().replace("_", ""))
        except ValueError:
            pass
    raise _fail(int)


def _to_float(value: Any) -> float:
    if isinstance(value, bool):
        raise _fail(float)
    number: float | None = None
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            number = None
    if number is None:
        raise _fail(float)
    if not math.isfinite(number):
        raise ValueTypeError("expected a finite float")
    return number


def closest_key(key: str, valid: Iterable[str]) -> str | None:
    """The valid key most like ``key`` (difflib), or None."""
    found = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.6)
    return found[0] if found else None


def typed_options(
    config_cls: type,
    options: Mapping[str, Any],
    sources: Mapping[str, str],
    label: str,
    other_fields: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Every option converted to ``config_cls``'s field type; one-line UsageError otherwise.

    ``sources`` gives, per key, how it was given (e.g. "--set lr=abc" or "run.toml: lr"), used
    as the start of the error. ``other_fields`` maps keys of other algorithms' configs to their
    label, for a more helpful unknown-key message.
    """
    known = option_fields(config_cls)
    result: dict[str, Any] = {}
    for key, value in options.items():
        where = sources.get(key, key)
        spec = known.get(key)
        if spec is None:
            raise UsageError(_unknown_key(where, key, known, label, other_fields or {}))
        try:
            result[key] = convert(value, spec.annotation, spec.choices)
        except ValueTypeError as exc:
            raise UsageError(f"{where}: {exc}") from None
    return result


def _unknown_key(
    where: str, key: str, known: Mapping[str, OptionField], label: str, other: Mapping[str, str]
) -> str:
    if key in other:
        return f"{where}: '{key}' is an option of {other[key]}, not of {label}"
    close = closest_key(key, known)
    hint = f"; did you mean '{close}'?" if close else f"; valid: {', '.join(sorted(known))}"
    return f"{where}: unknown {label} option '{key}'{hint}"


def parse_set_items(items: Sequence[str]) -> tuple[dict[str, Any], dict[str, str]]:
    """``key=value`` texts -> (raw values by key, the item each key came from)."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--set expects key=value, got {item!r}")
        values[key] = raw
        sources[key] = f"--set {item}"
    return values, sources


def _json_or_text(raw: str) -> Any:
    import json

    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


POLICY_PREFIX = "policy."


def policy_set_items(items: Sequence[str]) -> dict[str, Any]:
    """``policy.KEY=VALUE`` items (``nftkit eval --set``) -> {KEY: value}, each value parsed as
    JSON where it parses (512, true, 3.5) and kept as text otherwise ("bf16"), as
    ``nftkit train --set policy.KEY=VALUE`` parses them."""
    values, sources = parse_set_items(items)
    options: dict[str, Any] = {}
    for key, raw in values.items():
        name = key[len(POLICY_PREFIX) :] if key.startswith(POLICY_PREFIX) else ""
        if not name:
            raise UsageError(
                f"{sources[key]}: expected policy.KEY=VALUE (e.g. policy.resolution=512); "
                "sampling settings have their own options (--steps, --solver, --cfg, --seed)"
            )
        options[name] = _json_or_text(raw)
    return options


def typed_train_options(
    algo: str, file_options: Mapping[str, Any], config_path: Any, overrides: Sequence[str]
) -> dict[str, Any]:
    """Training options of ``algo`` from a --config file's values and --set items, typed.

    ``policy.KEY`` entries and ``stages`` pass through (--set policy values parsed as JSON);
    every other key must be a field of the algorithm's config class.
    """
    from nftkit.train.algos import ALGOS, check_algo

    config_cls = ALGOS[check_algo(algo)][0]
    set_values, set_sources = parse_set_items(overrides)
    sources = {key: f"{config_path}: {key} = {value!r}" for key, value in file_options.items()}
    sources.update(set_sources)
    merged = {**file_options, **set_values}
    passthrough = {k: v for k, v in merged.items() if k == "stages" or k.startswith("policy.")}
    for key in passthrough:
        if key in set_values:
            passthrough[key] = _json_or_text(set_values[key])
    own = option_fields(config_cls)
    others = {
        name: cls.label
        for other, (cls, _) in ALGOS.items()
        if other != algo
        for name in option_fields(cls)
        if name not in own
    }
    typed = typed_options(
        config_cls,
        {k: v for k, v in merged.items() if k not in passthrough},
        sources,
        getattr(config_cls, "label", algo),
        others,
    )
    return {**typed, **passthrough}
