"""The GenEval-protocol prompt generator: templates, articles, plurals, colors, de-duplication."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nftkit.cli.main import app
from nftkit.errors import UsageError
from nftkit.evaluators.geneval_prompts import (
    article,
    generate_geneval_prompts,
    plural,
    prompt_text,
)
from nftkit.geneval_vocab import GENEVAL_CLASSES, GENEVAL_COLORS, GENEVAL_TASKS, RELATIONS

NUMBERS = {"two": 2, "three": 3, "four": 4}
_CLS = "|".join(re.escape(c) for c in sorted(GENEVAL_CLASSES, key=len, reverse=True))
_COL = "|".join(GENEVAL_COLORS)
_REL = "|".join(RELATIONS)
TEMPLATES = {
    "single_object": rf"a photo of an? ({_CLS})",
    "two_object": rf"a photo of an? ({_CLS}) and an? ({_CLS})",
    "counting": r"a photo of (two|three|four) (.+)",
    "colors": rf"a photo of an? ({_COL}) ({_CLS})",
    "position": rf"a photo of an? ({_CLS}) ({_REL}) an? ({_CLS})",
    "color_attr": rf"a photo of an? ({_COL}) ({_CLS}) and an? ({_COL}) ({_CLS})",
}


@pytest.fixture(scope="module")
def lines() -> list[dict]:
    return generate_geneval_prompts(1200, seed=7)


def test_official_prompts_are_reproduced_by_the_templates(shared_data: Path) -> None:
    official = [
        json.loads(x)
        for x in (shared_data / "geneval/evaluation_metadata.jsonl").read_text().splitlines()
    ]
    assert len(official) == 553
    assert [prompt_text(line) for line in official] == [line["prompt"] for line in official]
    names = (shared_data / "geneval/object_names.txt").read_text().split("\n")
    assert tuple(n for n in names if n) == GENEVAL_CLASSES


def test_every_task_follows_its_template_and_metadata(lines: list[dict]) -> None:
    assert {line["tag"] for line in lines} == set(GENEVAL_TASKS)
    for line in lines:
        match = re.fullmatch(TEMPLATES[line["tag"]], line["prompt"])
        assert match, line
        inc = line["include"]
        assert list(line) == (
            ["tag", "include", "exclude", "prompt"]
            if line["tag"] == "counting"
            else ["tag", "include", "prompt"]
        )
        if line["tag"] == "counting":
            count = NUMBERS[match.group(1)]
            assert inc == [{"class": inc[0]["class"], "count": count}]
            assert line["exclude"] == [{"class": inc[0]["class"], "count": count + 1}]
            assert match.group(2) == plural(inc[0]["class"])
        elif line["tag"] == "position":
            a, rel, b = match.groups()
            assert (
                inc == [{"class": b, "count": 1}, {"class": a, "count": 1, "position": [rel, 0]}]
                and a != b
            )
        elif line["tag"] == "color_attr":
            c1, a, c2, b = match.groups()
            assert inc == [
                {"class": a, "count": 1, "color": c1},
                {"class": b, "count": 1, "color": c2},
            ]
            assert a != b and c1 != c2
        elif line["tag"] == "two_object":
            assert inc[0]["class"] != inc[1]["class"]


def test_articles_before_vowels(lines: list[dict]) -> None:
    assert article("apple") == "an" and article("orange") == "an" and article("cat") == "a"
    seen = {"a": 0, "an": 0}
    for line in lines:
        for art, word in re.findall(r"\b(an?) (\w)", line["prompt"].removeprefix("a photo of")):
            assert art == ("an" if word in "aeiou" else "a"), line["prompt"]
            seen[art] += 1
    assert seen["a"] > 0 and seen["an"] > 0


def test_plurals() -> None:
    assert [plural(c) for c in ("bus", "skis", "knife", "hot dog", "person", "glass")] == [
        "buses",
        "skises",
        "knifes",
        "hot dogs",
        "persons",
        "glasses",
    ]


def test_person_never_gets_a_color() -> None:
    many = generate_geneval_prompts(3000, seed=3, tasks="colors,color_attr")
    assert len(many) == 3000
    assert not [
        x for x in many if any(c["class"] == "person" and "color" in c for c in x["include"])
    ]
    assert all("person" not in x["prompt"] for x in many)
    counted = generate_geneval_prompts(300, seed=3, tasks=["counting", "single_object"])
    assert any("person" in x["prompt"] for x in counted)  # only colors exclude it


def test_deduplication_and_exhausted_tasks(lines: list[dict]) -> None:
    assert len({x["prompt"] for x in lines}) == len(lines) == 1200
    singles = generate_geneval_prompts(80, seed=1, tasks="single_object")
    assert sorted(x["include"][0]["class"] for x in singles) == sorted(GENEVAL_CLASSES)
    with pytest.raises(UsageError, match="only 80 distinct prompts"):
        generate_geneval_prompts(81, seed=1, tasks="single_object")
    mixed = generate_geneval_prompts(300, seed=1, tasks="single_object,two_object")
    assert sum(x["tag"] == "single_object" for x in mixed) == 80  # drops out, others fill in


def test_seed_reproducibility_and_bad_input() -> None:
    assert generate_geneval_prompts(60, seed=11) == generate_geneval_prompts(60, seed=11)
    assert generate_geneval_prompts(60, seed=11) != generate_geneval_prompts(60, seed=12)
    first = generate_geneval_prompts(12, seed=11)
    assert [x["tag"] for x in first] == list(GENEVAL_TASKS) * 2  # tasks in turn
    with pytest.raises(UsageError, match="unknown GenEval task"):
        generate_geneval_prompts(5, tasks="colours")
    with pytest.raises(UsageError, match="--n must be >= 1"):
        generate_geneval_prompts(0)


def test_cli_writes_jsonl_that_the_geneval_suite_reads(tmp_path: Path) -> None:
    out = tmp_path / "train.jsonl"
    result = CliRunner().invoke(
        app, ["prompts", "geneval", "--n", "30", "--seed", "5", "--output", str(out)]
    )
    assert result.exit_code == 0, result.output
    written = [json.loads(x) for x in out.read_text().splitlines()]
    assert written == generate_geneval_prompts(30, seed=5)
    from nftkit.evaluators.geneval import GenevalEvaluator

    specs = GenevalEvaluator(prompts_path=out).prompts()
    assert [s.text for s in specs] == [x["prompt"] for x in written]
    assert specs[2].metadata == written[2] and specs[2].id == "00002"
