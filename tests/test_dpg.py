"""DPG-Bench: csv reading, dependency rule, official quirks vs corrected, hand computations."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
from PIL import Image

from nftkit.errors import InputError, NftkitError
from nftkit.evaluators.dpg import DpgEvaluator, apply_dependencies, is_yes
from nftkit.evaluators.dpg_data import DPG_CSV_BLOB, git_blob_id, read_dpg_csv
from tests.vlm_fake_server import FakeChatServer, Reply, question_of

CSV = """item_id,text,keywords,proposition_id,dependency,category_broad,category_detailed,tuple,question_natural_language
A,a black cat,cat,1,0,entity,whole,entity - whole (cat),Is there a cat?
A,a black cat,cat,2,1,attribute,color,"attribute - color (cat, black)",Is the cat black?
B,a brown dog on a sunny day,dog,1,0,entity,whole,entity - whole (dog),Is there a dog?
B,a brown dog on a sunny day,dog,2,1,attribute,color,"attribute - color (dog, brown)",Is the dog brown?
B,a brown dog on a sunny day,dog,3,0,global,global,global - (sunny),Is it sunny?
C,a car on a road,car,1,0,entity,whole,entity - whole (car),Is there a car?
C,a car on a road,car,2,1,relation,spatial,"relation - spatial (car, road, on)",Is the car on the road?
"""


def tile_of(body: dict) -> int:
    url = body["messages"][0]["content"][0]["image_url"]["url"]
    image = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    return image.convert("RGB").getpixel((0, 0))[0]


def responder(body: dict) -> Reply:
    q, t = question_of(body), tile_of(body)
    answers = {
        "Is there a cat?": "yes",
        "Is the cat black?": "no",
        "Is there a dog?": "no" if t == 3 else "yes",
        "Is the dog brown?": "Yes.",
        "Is it sunny?": "yes" if t < 2 else "no",
        "Is there a car?": "yes",
        "Is the car on the road?": "yes" if t == 0 else "yes, it is",
    }
    return Reply(answers[q])


def csv_file(tmp_path: Path) -> Path:
    path = tmp_path / "dpg_bench.csv"
    path.write_text(CSV)
    return path


def test_csv_reading_and_the_first_row_quirk(tmp_path: Path) -> None:
    items = read_dpg_csv(csv_file(tmp_path))
    assert [i[0] for i in items] == ["A", "B", "C"]
    first = items[0][2][0]
    assert first.skipped_by_official and not any(q.skipped_by_official for q in items[1][2])
    assert items[1][2][2].category_l1 == "global" and items[0][2][1].parents == (1,)
    bad = tmp_path / "bad.csv"
    bad.write_text("item_id,text\nA,x\n")
    with pytest.raises(InputError, match="missing columns"):
        read_dpg_csv(bad)
    assert git_blob_id(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"
    assert len(DPG_CSV_BLOB) == 40


def test_dependency_rule_and_answer_match() -> None:
    raw = {1: 0.0, 2: 1.0, 3: 1.0}
    assert apply_dependencies(raw, {1: (0,), 2: (1,), 3: (2,)}, strict=True) == {
        1: 0.0,
        2: 0.0,
        3: 1.0,
    }  # on raw answers: 3's parent 2 answered yes
    with pytest.raises(KeyError):
        apply_dependencies({2: 1.0}, {2: (1,)}, strict=True)
    assert apply_dependencies({2: 1.0}, {2: (1,)}, strict=False) == {2: 1.0}
    assert is_yes("Yes.") and not is_yes("Yes.", "exact") and is_yes("yes", "exact")
    assert not is_yes("yes, it is")


def run_suite(tmp_path: Path, **kwargs) -> dict[str, float]:
    with FakeChatServer(responder) as server:
        suite = DpgEvaluator(prompts_path=csv_file(tmp_path), vlm_url=server.url, **kwargs)
        specs = suite.prompts()
        images, items = [], []
        for spec in specs:
            for k in range(4):
                images.append(Image.new("RGB", (24, 24), (k, 0, 0)))
                items.append(spec)
        rows = suite.score_samples(images, items)
        for i, row in enumerate(rows):
            row["sample_index"] = i % 4
        return suite.summarize(rows).metrics


def test_summary_equals_hand_computation(tmp_path: Path) -> None:
    m = run_suite(tmp_path)
    # B tiles: 3/3, 3/3, 2/3, 0 (dog no -> brown zeroed, sunny no); C tiles: 1, 1/2, 1/2, 1/2
    # A: 1/2 per tile corrected; official drops A (its question 2 depends on the skipped row)
    b, c, a = (1 + 1 + 2 / 3 + 0) / 4, (1 + 0.5 * 3) / 4, 0.5
    assert m["overall"] == pytest.approx(100 * (b + c) / 2)
    assert m["overall_corrected"] == pytest.approx(100 * (a + b + c) / 3)
    assert m["dropped_by_official"] == 1.0
    # official categories: last tile, before the dependency rule, B and C only
    assert m["official_entity"] == pytest.approx(50.0)  # dog no, car yes
    assert m["official_attribute"] == pytest.approx(100.0)  # brown "Yes." before the rule
    assert m["official_global"] == 0.0 and m["official_relation"] == 0.0
    # corrected: every tile, after the rule, all items
    assert m["entity"] == pytest.approx(100 * 11 / 12)
    assert m["attribute"] == pytest.approx(100 * 3 / 8)
    assert m["global"] == pytest.approx(50.0) and m["relation"] == pytest.approx(25.0)


def test_exact_answer_match_and_server_failure(tmp_path: Path) -> None:
    m = run_suite(tmp_path, answer_match="exact")
    b, c = (2 / 3 + 2 / 3 + 1 / 3 + 0) / 4, (1 + 0.5 * 3) / 4
    assert m["overall"] == pytest.approx(100 * (b + c) / 2)
    suite = DpgEvaluator(prompts_path=csv_file(tmp_path), vlm_url="http://127.0.0.1:9/v1")
    suite.backend.retries = 0
    spec = suite.prompts()[1]
    with pytest.raises(NftkitError, match="VQA server"):
        suite.score_samples([Image.new("RGB", (8, 8))], [spec])
    assert suite.settings()["answer_match"] == "normalised"
