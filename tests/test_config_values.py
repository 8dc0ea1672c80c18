"""Typed parsing of --set / --config values from the config dataclasses' declared types."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from nftkit.config_values import convert, option_fields, typed_options, typed_train_options
from nftkit.errors import UsageError
from nftkit.train.grpo import GRPOConfig
from nftkit.train.nft import NFTConfig


@dataclass
class GrownConfig(NFTConfig):
    """A config with fields added later: they must parse with no change to config_values."""

    plan: Literal["auto", "manual"] = "auto"
    processes: int | None = None
    warmup: tuple[int, ...] = ()
    gate: bool = False
    mode: str = field(default="a", metadata={"choices": ("a", "b")})


def test_set_text_becomes_the_declared_type() -> None:
    got = typed_train_options(
        "nft",
        {},
        None,
        [
            "lr=3e-4",
            "num_steps=12",
            "adam_betas=[0.8, 0.99]",
            "max_train_timesteps=null",
            "high_noise_steps=None",
            "solver=euler",
            "policy.dtype=bf16",
            "policy.autocast_dtype=null",
        ],
    )
    assert got == {
        "lr": 3e-4,
        "num_steps": 12,
        "adam_betas": (0.8, 0.99),
        "max_train_timesteps": None,
        "high_noise_steps": None,
        "solver": "euler",
        "policy.dtype": "bf16",
        "policy.autocast_dtype": None,
    }
    assert type(got["lr"]) is float and type(got["num_steps"]) is int


def test_toml_values_are_checked_too() -> None:
    got = typed_train_options(
        "grpo", {"lr": 1, "sde_window": 2, "adam_betas": [0.9, 0.9]}, "run.toml", []
    )
    assert got == {"lr": 1.0, "sde_window": 2, "adam_betas": (0.9, 0.9)}
    assert type(got["lr"]) is float
    with pytest.raises(UsageError, match=r"^run.toml: num_steps = 2.5: expected an integer$"):
        typed_train_options("grpo", {"num_steps": 2.5}, "run.toml", [])
    # --set overrides the file, and only the value actually used is checked
    assert typed_train_options("grpo", {"lr": "x"}, "run.toml", ["lr=2"]) == {"lr": 2.0}


def test_fields_added_later_parse_generically() -> None:
    fields = option_fields(GrownConfig)
    assert fields["plan"].annotation == Literal["auto", "manual"]
    sources = {k: f"--set {k}" for k in ("plan", "processes", "warmup", "gate", "mode")}
    got = typed_options(
        GrownConfig,
        {"plan": "manual", "processes": "4", "warmup": "1,2,3", "gate": "yes", "mode": "b"},
        sources,
        "NFT",
    )
    assert got == {"plan": "manual", "processes": 4, "warmup": (1, 2, 3), "gate": True, "mode": "b"}
    for key, value, message in [
        ("plan", "often", "expected one of: auto, manual"),
        ("processes", "four", "expected an integer or null"),
        ("warmup", "1,x", "expected an integer"),
        ("gate", "maybe", "expected true or false"),
        ("mode", "c", "expected one of: a, b"),
        ("plann", "auto", "did you mean 'plan'?"),
    ]:
        with pytest.raises(UsageError, match=message) as info:
            typed_options(GrownConfig, {key: value}, {key: f"--set {key}={value}"}, "NFT")
        assert str(info.value).startswith(f"--set {key}={value}: ")


@pytest.mark.parametrize(
    ("value", "annotation", "expected"),
    [
        ("1_000", int, 1000),
        (3.0, int, 3),
        ("1e-2", float, 0.01),
        ("off", bool, False),
        (True, bool, True),
        ("x", str, "x"),
        ("none", int | None, None),
        ("7", int | None, 7),
    ],
)
def test_convert_accepts(value: object, annotation: object, expected: object) -> None:
    assert convert(value, annotation) == expected


@pytest.mark.parametrize(
    ("value", "annotation"),
    [
        (True, int),
        ("1.5", int),
        (True, float),
        ("nan", float),
        ("2", bool),
        (3, str),
        ("1,2,3", tuple[float, float]),
        ({"a": 1}, int),
    ],
)
def test_convert_rejects(value: object, annotation: object) -> None:
    with pytest.raises(ValueError, match="expected"):
        convert(value, annotation)


def test_every_field_of_the_shipped_configs_has_a_known_type() -> None:
    for cls in (NFTConfig, GRPOConfig):
        for spec in option_fields(cls).values():
            default = getattr(cls(), spec.name)
            assert convert(default, spec.annotation, spec.choices) == default, spec.name
