"""Plugins are checked against their group's contract when listed or loaded."""

from __future__ import annotations

from importlib.metadata import EntryPoint

import pytest

from nftkit import registry
from nftkit.errors import InvalidPluginError, UsageError
from nftkit.registry import EVALUATOR_CONTRACT, REWARD_CONTRACT, Contract, Registry

SAMPLES = "tests.plugin_samples"
REWARD_ENTRIES = {
    "fine": "Fine",
    "half-done": "HalfDone",
    "misnamed": "Misnamed",
    "bad-metadata": "BadMetadata",
    "not-a-reward": "NotAReward",
}


@pytest.fixture
def rewards(monkeypatch: pytest.MonkeyPatch) -> Registry:
    """A reward registry whose entry points are the sample classes."""
    eps = [
        EntryPoint(name, f"{SAMPLES}:{cls}", "test.rewards") for name, cls in REWARD_ENTRIES.items()
    ]
    eps.append(EntryPoint("bad-suite", f"{SAMPLES}:BadSuite", "test.evaluators"))

    def fake_entry_points(group: str) -> list[EntryPoint]:
        return [ep for ep in eps if ep.group == group]

    monkeypatch.setattr(registry, "entry_points", fake_entry_points)
    return Registry("test.rewards", "reward", REWARD_CONTRACT)


def test_statuses_mark_each_broken_rule_invalid_with_its_reason(rewards: Registry) -> None:
    rows = {s.name: s for s in rewards.statuses()}
    assert rows["fine"].status == "ok" and rows["fine"].error is None
    assert {n: rows[n].status for n in REWARD_ENTRIES if n != "fine"} == dict.fromkeys(
        ["half-done", "misnamed", "bad-metadata", "not-a-reward"], "invalid"
    )
    assert "does not implement score_batch" in rows["half-done"].error
    assert (
        "'something-else'" in rows["misnamed"].error
        and "set name = 'misnamed'" in rows["misnamed"].error
    )
    bad = rows["bad-metadata"].error
    assert "higher_is_better" in bad and "score_range" in bad and "input_format" in bad
    assert "not a subclass of nftkit.rewards.base.Reward" in rows["not-a-reward"].error


def test_loading_an_invalid_plugin_raises_one_line_saying_what_to_implement(
    rewards: Registry,
) -> None:
    for _ in range(2):  # the first import and the cached verdict say the same
        with pytest.raises(InvalidPluginError) as info:
            rewards.load("half-done")
        message = str(info.value)
        assert "\n" not in message
        assert "reward plugin 'half-done'" in message and "define it" in message
    assert rewards.load("fine").name == "fine"


def test_the_evaluator_contract_checks_its_metadata(rewards: Registry) -> None:
    suites = Registry("test.evaluators", "evaluator", EVALUATOR_CONTRACT)
    (status,) = suites.statuses()
    assert status.status == "invalid"
    assert "n_samples must be an integer >= 1, got 0" in status.error
    assert "default_solver must be one of dpm2, euler, sde, got 'rk4'" in status.error


def test_a_contract_per_group_and_none_means_unchecked(rewards: Registry) -> None:
    unchecked = Registry("test.rewards", "reward")
    assert unchecked.load("misnamed").name == "something-else"
    anonymous = Registry(
        "test.rewards", "reward", Contract("nftkit.rewards.base:Reward", named=False)
    )
    assert anonymous.load("misnamed").name == "something-else"
    with pytest.raises(InvalidPluginError, match="score_batch"):
        anonymous.load("half-done")


def test_an_unknown_name_is_still_a_usage_error(rewards: Registry) -> None:
    with pytest.raises(UsageError, match="Did you mean: fine"):
        rewards.load("finee")


def test_every_builtin_plugin_keeps_its_contract() -> None:
    for group in (registry.REWARDS, registry.EVALUATORS):
        assert {s.name: s.status for s in group.statuses()} == dict.fromkeys(group.names(), "ok")
