"""Shapes world: grammar, scene sampling and rendering, perturbations and the detector."""

from __future__ import annotations

from collections import Counter, deque
from itertools import pairwise

import numpy as np
import pytest

from nftkit.shapes.components import label_components
from nftkit.shapes.detect import MIN_AREA, detect
from nftkit.shapes.geometry import relation_vector, relations
from nftkit.shapes.judge import judge_image
from nftkit.shapes.metadata import MetadataError
from nftkit.shapes.prompts import (
    ALL_TASKS,
    VOCAB,
    all_prompts,
    generate_prompts,
    plural,
    split_prompts,
    task_balanced,
    token_ids,
    tokenize,
    with_article,
)
from nftkit.shapes.scene import (
    Scene,
    SceneSamplingError,
    ShapeObject,
    count_grid,
    perturb_metadata,
    render,
    sample_scene,
)
from nftkit.shapes.vocab import BACKGROUND, COLORS, RELATIONS, SHAPES

# ---------------------------------------------------------------- grammar


def by_prompt(task: str) -> dict[str, dict]:
    return {m["prompt"]: m for m in all_prompts(task)}


def test_every_template_and_its_metadata() -> None:
    assert by_prompt("single_object")["a photo of a circle"] == {
        "tag": "single_object",
        "include": [{"class": "circle", "count": 1}],
        "prompt": "a photo of a circle",
    }
    assert by_prompt("two_object")["a photo of a square and a triangle"]["include"] == [
        {"class": "square", "count": 1},
        {"class": "triangle", "count": 1},
    ]
    assert by_prompt("counting")["a photo of three triangles"] == {
        "tag": "counting",
        "include": [{"class": "triangle", "count": 3}],
        "exclude": [{"class": "triangle", "count": 4}],
        "prompt": "a photo of three triangles",
    }
    assert by_prompt("colors")["a photo of a blue square"]["include"] == [
        {"class": "square", "count": 1, "color": "blue"}
    ]
    # GenEval order: the reference object first, the positioned one pointing back at it.
    assert by_prompt("position")["a photo of a circle left of a square"]["include"] == [
        {"class": "square", "count": 1},
        {"class": "circle", "count": 1, "position": ["left of", 0]},
    ]
    assert by_prompt("color_attr")["a photo of a red circle and a green triangle"]["include"] == [
        {"class": "circle", "count": 1, "color": "red"},
        {"class": "triangle", "count": 1, "color": "green"},
    ]


def test_task_sizes_and_distinct_prompts() -> None:
    sizes = {task: len(all_prompts(task)) for task in ALL_TASKS}
    assert sizes == {
        "single_object": 3,
        "two_object": 6,
        "counting": 9,
        "colors": 18,
        "position": 24,
        "color_attr": 180,
    }
    for task in ALL_TASKS:
        prompts = [m["prompt"] for m in all_prompts(task)]
        assert len(set(prompts)) == len(prompts)
        assert all(m["tag"] == task for m in all_prompts(task))
    # no "a circle and a circle", no "a red circle and a blue ... circle", no repeated color
    for m in all_prompts("two_object") + all_prompts("position") + all_prompts("color_attr"):
        assert m["include"][0]["class"] != m["include"][1]["class"]
    assert all(
        m["include"][0]["color"] != m["include"][1]["color"] for m in all_prompts("color_attr")
    )
    with pytest.raises(ValueError, match="unknown task"):
        all_prompts("counting_objects")


def test_articles_and_plurals() -> None:
    assert with_article("orange") == "an orange"
    assert with_article("red") == "a red"
    assert "a photo of an orange circle" in by_prompt("colors")
    assert "a photo of an orange square and a blue circle" in by_prompt("color_attr")
    assert "a photo of a red square and an orange circle" in by_prompt("color_attr")
    assert not any(" a orange" in m["prompt"] for t in ALL_TASKS for m in all_prompts(t))
    assert plural("circle") == "circles" and plural("bus") == "buses"
    assert "a photo of four squares" in by_prompt("counting")


def test_counting_excludes_one_more() -> None:
    for m in all_prompts("counting"):
        (inc,) = m["include"]
        assert m["exclude"] == [{"class": inc["class"], "count": inc["count"] + 1}]
        assert inc["count"] in (2, 3, 4)
    assert all("exclude" not in m for t in ALL_TASKS if t != "counting" for m in all_prompts(t))


def test_generate_prompts_dedups_and_is_deterministic() -> None:
    a = generate_prompts(20, seed=43)
    assert a == generate_prompts(20, seed=43)
    assert a != generate_prompts(20, seed=44)
    texts = [m["prompt"] for m in a]
    assert len(texts) == len(set(texts))
    counts = {t: sum(m["tag"] == t for m in a) for t in ALL_TASKS}
    assert counts["single_object"] == 3  # 20 draws over 3 prompts collapse to 3
    assert 10 < counts["color_attr"] <= 20  # 20 draws over 180 prompts: few repeats
    only = generate_prompts(5, seed=0, tasks=("counting",))
    assert {m["tag"] for m in only} == {"counting"} and 1 <= len(only) <= 5


def test_split_is_disjoint_complete_and_deterministic() -> None:
    train, held = split_prompts(seed=0, holdout_fraction=0.3)
    train_t, held_t = {m["prompt"] for m in train}, {m["prompt"] for m in held}
    everything = {m["prompt"] for t in ALL_TASKS for m in all_prompts(t)}
    assert not train_t & held_t
    assert train_t | held_t == everything
    assert len(held) == sum(max(1, round(0.3 * len(all_prompts(t)))) for t in ALL_TASKS)
    assert {m["tag"] for m in held} == set(ALL_TASKS)  # stratified: every task is held out
    assert split_prompts(seed=0) == (train, held)
    small = split_prompts(seed=0, holdout_fraction=0.1)[1]
    assert sum(m["tag"] == "single_object" for m in small) == 1  # round(0.3) -> at least 1
    assert split_prompts(seed=0, holdout_fraction=0.0)[1] == []
    assert {m["prompt"] for m in split_prompts(seed=1)[1]} != held_t


def test_task_balanced_training_prompts_weigh_every_task_equally() -> None:
    from collections import Counter

    from nftkit.train.presets import resolve_training_prompts

    train, _ = split_prompts(seed=0)
    balanced = task_balanced(train)
    counts = Counter(m["tag"] for m in balanced)
    assert set(counts) == {m["tag"] for m in train}
    assert len(set(counts.values())) == 1  # the same number of entries for every task
    assert max(Counter(m["tag"] for m in train).values()) == next(iter(counts.values()))
    assert {m["prompt"] for m in balanced} == {m["prompt"] for m in train}  # nothing new or lost
    items = resolve_training_prompts("shapes-train")
    assert Counter(i.metadata["tag"] for i in items) == counts
    assert task_balanced([]) == []


def test_tokenize_and_vocab() -> None:
    assert tokenize("A photo of an Orange circle LEFT OF a square") == [
        "a", "photo", "of", "an", "orange", "circle", "left", "of", "a", "square",
    ]  # fmt: skip
    assert VOCAB[:2] == ["<pad>", "<unk>"] and len(VOCAB) == len(set(VOCAB))
    words = {w for t in ALL_TASKS for m in all_prompts(t) for w in tokenize(m["prompt"])}
    assert words == set(VOCAB[2:])
    assert {"an", "triangles", "four", "above", "below", "right", "left"} <= words
    ids = token_ids("a photo of a zebra", length=7)
    assert ids[:5] == [VOCAB.index(w) for w in ("a", "photo", "of", "a")] + [1]
    assert ids[5:] == [0, 0]
    assert len(token_ids("a photo of a circle", length=3)) == 3


# ---------------------------------------------------------------- scenes


def test_render_is_hard_edged_on_plain_background() -> None:
    scene = Scene(
        [ShapeObject("square", "red", 5.0, 6.0, 8.0), ShapeObject("circle", "blue", 20, 20, 9)]
    )
    image = render(scene)
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8
    colors = {tuple(int(v) for v in px) for px in image.reshape(-1, 3)}
    assert colors == {BACKGROUND, COLORS["red"], COLORS["blue"]}
    red = (image == COLORS["red"]).all(axis=2)
    assert red.sum() == 64 and red[2:10, 1:9].all()  # the square's box is x 1..9, y 2..10
    assert tuple(image[0, 0]) == BACKGROUND
    with pytest.raises(ValueError, match="unknown shape"):
        render(Scene([ShapeObject("star", "red", 5, 5, 8)]))


def _gap(a: tuple, b: tuple) -> float:
    return max(b[0] - a[2], a[0] - b[2], b[1] - a[3], a[1] - b[3])


@pytest.mark.parametrize("task", ALL_TASKS)
def test_sample_scene_satisfies_metadata(task: str) -> None:
    rng = np.random.default_rng(7)
    for meta in all_prompts(task)[:12]:
        scene = sample_scene(meta, rng)
        for clause in meta["include"]:
            objs = [o for o in scene.objects if o.shape == clause["class"]]
            assert len(objs) == clause["count"]
            if "color" in clause:
                assert {o.color for o in objs} == {clause["color"]}
        assert len(scene.objects) == sum(c["count"] for c in meta["include"])
        for i, o in enumerate(scene.objects):
            x1, y1, x2, y2 = o.box
            assert 7 <= o.size <= 10 and x1 >= 0 and y1 >= 0 and x2 <= 32 and y2 <= 32
            for other in scene.objects[i + 1 :]:
                assert _gap(o.box, other.box) >= 2
        for clause in meta["include"]:
            if "position" in clause:
                relation, ref = clause["position"]
                (a,) = [o for o in scene.objects if o.shape == clause["class"]]
                (b,) = [o for o in scene.objects if o.shape == meta["include"][ref]["class"]]
                dx, dy = relation_vector(a.box, b.box)
                main = {"left of": -dx, "right of": dx, "above": -dy, "below": dy}[relation]
                cross = abs(dy) if relation in ("left of", "right of") else abs(dx)
                assert main >= 0.7 and cross <= 0.3  # clear margins around the judge's 0.5
                assert relations(a.box, b.box) == {relation}


@pytest.mark.parametrize("task", ["two_object", "color_attr"])
def test_sample_scene_reading_order_puts_clauses_left_to_right(task: str) -> None:
    rng = np.random.default_rng(11)
    for meta in all_prompts(task)[:20]:
        scene = sample_scene(meta, rng, reading_order=True)
        first, second = scene.objects  # one object per clause, in clause (= prompt) order
        assert first.shape == meta["include"][0]["class"]
        assert first.box[2] <= 16 <= second.box[0]  # left half, then right half
        for obj, clause in zip(scene.objects, meta["include"], strict=True):
            assert obj.shape == clause["class"] and obj.color == clause.get("color", obj.color)


def test_sample_scene_reading_order_leaves_single_clauses_and_positions_alone() -> None:
    position = all_prompts("position")[0]  # "left of": a relation decides the layout
    counting = all_prompts("counting")[5]
    for meta in (position, counting):
        a = sample_scene(meta, np.random.default_rng(2))
        b = sample_scene(meta, np.random.default_rng(2), reading_order=True)
        assert a == b


@pytest.mark.parametrize("count", [2, 3, 4, 5, 6])
def test_count_grid_cells_tile_the_image_in_reading_order(count: int) -> None:
    cells = count_grid(count, 32)
    assert cells is not None and len(cells) == count
    for x_lo, x_hi, y_lo, y_hi in cells:
        assert 0 <= x_lo < x_hi <= 32 and 0 <= y_lo < y_hi <= 32
        assert x_hi - x_lo >= 9 and y_hi - y_lo >= 9  # room for a 7 px object and its gap
    for a, b in pairwise(cells):
        assert (a[2], a[0]) < (b[2], b[0])  # row by row, left to right
    assert count_grid(1, 32) is None and count_grid(7, 32) is None


def test_sample_scene_count_cells_puts_each_counted_object_in_its_cell() -> None:
    rng = np.random.default_rng(5)
    for meta in all_prompts("counting"):
        n = meta["include"][0]["count"]
        for _ in range(5):
            scene = sample_scene(meta, rng, count_cells=True)
            assert len(scene.objects) == n
            for obj, (x_lo, x_hi, y_lo, y_hi) in zip(scene.objects, count_grid(n), strict=True):
                x1, y1, x2, y2 = obj.box
                assert x_lo <= x1 and x2 <= x_hi and y_lo <= y1 and y2 <= y_hi
            assert judge_image(meta, render(scene)).correct


def test_sample_scene_count_cells_leaves_other_tasks_alone() -> None:
    for task in ("single_object", "two_object", "position", "color_attr"):
        meta = all_prompts(task)[0]
        a = sample_scene(meta, np.random.default_rng(8), reading_order=True)
        b = sample_scene(meta, np.random.default_rng(8), reading_order=True, count_cells=True)
        assert a == b


def test_sample_scene_is_deterministic_and_varied() -> None:
    meta = all_prompts("counting")[2]
    a = sample_scene(meta, np.random.default_rng(3))
    b = sample_scene(meta, np.random.default_rng(3))
    c = sample_scene(meta, np.random.default_rng(4))
    assert a == b and a != c


def test_sample_scene_errors_are_clear() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(SceneSamplingError, match="do not fit"):
        sample_scene({"include": [{"class": "circle", "count": 30}]}, rng)
    with pytest.raises(SceneSamplingError, match="excludes"):
        sample_scene(
            {
                "include": [{"class": "circle", "count": 3}],
                "exclude": [{"class": "circle", "count": 3}],
            },
            rng,
        )
    side_by_side = by_prompt("position")["a photo of a circle left of a square"]
    with pytest.raises(SceneSamplingError, match="no 15x15 scene"):  # needs 7 + 2 + 7 px
        sample_scene(side_by_side, rng, size=15, max_tries=50)
    with pytest.raises(MetadataError, match="unknown class"):
        sample_scene({"include": [{"class": "dog", "count": 1}]}, rng)
    with pytest.raises(MetadataError, match="unknown color"):
        sample_scene({"include": [{"class": "circle", "count": 1, "color": "pink"}]}, rng)
    with pytest.raises(MetadataError, match="position index"):
        sample_scene({"include": [{"class": "circle", "count": 1, "position": ["above", 0]}]}, rng)
    assert sample_scene({"include": []}, rng).objects == []


# ---------------------------------------------------------------- perturbations


def test_perturbed_scenes_fail_the_original_prompt() -> None:
    rng = np.random.default_rng(11)
    kinds: set[str] = set()
    n = failures = 0
    for task in ALL_TASKS:
        for meta in all_prompts(task)[:40]:
            for _ in range(3):
                wrong = perturb_metadata(meta, rng)
                assert wrong["prompt"] == meta["prompt"] and wrong["tag"] == meta["tag"]
                assert "exclude" not in wrong and wrong["include"] != meta["include"]
                kinds.add(wrong["perturbation"].split(" of ")[0].split(" ")[0])
                n += 1
                failures += not judge_image(meta, render(sample_scene(wrong, rng))).correct
    print(f"perturbed scenes judged wrong: {failures}/{n}")
    assert failures == n
    assert kinds >= {"class", "color", "count", "missing", "relation", "swapped"}


def test_perturb_does_not_touch_its_input_and_is_seeded() -> None:
    meta = all_prompts("position")[0]
    snapshot = repr(meta)
    a = [perturb_metadata(meta, np.random.default_rng(5)) for _ in range(2)]
    assert a[0] == a[1] and repr(meta) == snapshot
    counting = by_prompt("counting")["a photo of two circles"]
    variants = [perturb_metadata(counting, np.random.default_rng(s)) for s in range(40)]
    counts = {v["include"][0]["count"] for v in variants if v["include"]}
    assert counts >= {1, 3}
    assert any(v["include"] == [] for v in variants)  # the missing-object variant


# ---------------------------------------------------------------- detector


def _matches(scene: Scene, image: np.ndarray) -> bool:
    dets = detect(image)
    if len(dets) != len(scene.objects):
        return False
    remaining = list(dets)
    for obj in scene.objects:
        hit = [
            d
            for d in remaining
            if d.cls == obj.shape
            and d.color == obj.color
            and max(abs(u - v) for u, v in zip(d.box, obj.box, strict=True)) <= 1.0
            and d.score > 0.9
        ]
        if not hit:
            return False
        remaining.remove(hit[0])
    return True


def _scenes(n_per_task: int, seed: int) -> list[tuple[dict, Scene]]:
    rng = np.random.default_rng(seed)
    out = []
    for task in ALL_TASKS:
        pool = all_prompts(task)
        for i in range(n_per_task):
            meta = pool[int(rng.integers(len(pool)))] if i >= len(pool) else pool[i]
            out.append((meta, sample_scene(meta, rng)))
    return out


def test_detector_accuracy_on_rendered_scenes() -> None:
    scenes = _scenes(60, seed=0)
    correct = sum(_matches(scene, render(scene)) for _, scene in scenes)
    accuracy = correct / len(scenes)
    print(f"detector scene accuracy: {correct}/{len(scenes)} = {accuracy:.4f}")
    assert len(scenes) >= 300 and accuracy >= 0.99


@pytest.mark.parametrize("task", ALL_TASKS)
def test_judge_accepts_rendered_correct_scenes(task: str) -> None:
    rng = np.random.default_rng(1)
    for meta in all_prompts(task)[:30]:
        verdict = judge_image(meta, render(sample_scene(meta, rng)))
        assert (verdict.correct, verdict.strict, verdict.partial) == (True, 1.0, 1.0), verdict


def _blur_noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    f = image.astype(np.float64)
    p = np.pad(f, ((1, 1), (1, 1), (0, 0)), mode="edge")
    k = np.array([[1, 2, 1], [2, 4, 2], [1, 2, 1]]) / 16.0
    h, w = image.shape[:2]
    out = sum(k[i, j] * p[i : i + h, j : j + w] for i in range(3) for j in range(3))
    return np.clip(np.round(out + rng.normal(0.0, sigma, f.shape)), 0, 255).astype(np.uint8)


def test_detector_tolerates_blur_and_noise() -> None:
    rng = np.random.default_rng(2)
    scenes = _scenes(15, seed=3)
    ok = 0
    for meta, scene in scenes:
        ok += judge_image(meta, _blur_noise(render(scene), 8.0, rng)).correct
    print(f"blur + noise(8): {ok}/{len(scenes)} judged correct")
    assert ok / len(scenes) >= 0.9


def test_noise_specks_and_tiny_blobs_are_ignored() -> None:
    image = render(Scene([ShapeObject("square", "green", 16, 16, 8)]))
    image[2, 2] = COLORS["red"]  # isolated speck in the background
    image[16, 16] = BACKGROUND  # hole inside the square
    image[28:30, 28:30] = COLORS["blue"]  # 4-pixel blob
    dets = detect(image)
    assert [(d.cls, d.color, d.box) for d in dets] == [
        ("square", "green", (12.0, 12.0, 20.0, 20.0))
    ]
    assert dets[0].mask.sum() == 64 and dets[0].score == 1.0
    assert MIN_AREA > 4


def test_detector_never_merges_colors_and_scores_ambiguity_lower() -> None:
    image = render(Scene([ShapeObject("square", "red", 10, 10, 8)]))
    image[6:14, 14:18] = COLORS["orange"]  # touching orange bar, 8x4
    dets = detect(image)
    assert sorted(d.color for d in dets) == ["orange", "red"]
    bar = next(d for d in dets if d.color == "orange")
    assert bar.score < 0.9  # elongated: not a confident shape
    red = next(d for d in dets if d.color == "red")
    assert red.cls == "square" and red.score == 1.0


def test_detector_validates_input() -> None:
    with pytest.raises(ValueError, match="uint8"):
        detect(np.zeros((8, 8, 3), dtype=np.float32))
    with pytest.raises(ValueError, match=r"\[H, W, 3\]"):
        detect(np.zeros((8, 8), dtype=np.uint8))
    assert detect(np.full((16, 16, 3), 235, dtype=np.uint8)) == []


def _bfs_labels(classes: np.ndarray, fg: np.ndarray) -> tuple[np.ndarray, int]:
    h, w = classes.shape
    labels = np.full((h, w), -1)
    n = 0
    for i in range(h):
        for j in range(w):
            if not fg[i, j] or labels[i, j] >= 0:
                continue
            labels[i, j] = n
            queue = deque([(i, j)])
            while queue:
                y, x = queue.popleft()
                for yy in range(max(y - 1, 0), min(y + 2, h)):
                    for xx in range(max(x - 1, 0), min(x + 2, w)):
                        if fg[yy, xx] and labels[yy, xx] < 0 and classes[yy, xx] == classes[y, x]:
                            labels[yy, xx] = n
                            queue.append((yy, xx))
            n += 1
    return labels, n


def test_components_match_a_plain_flood_fill() -> None:
    rng = np.random.default_rng(0)
    for _ in range(60):
        h, w = (int(v) for v in rng.integers(1, 25, size=2))
        classes = rng.integers(0, 3, size=(h, w))
        fg = rng.random((h, w)) < rng.random()
        labels, n = label_components(classes, fg)
        ref, ref_n = _bfs_labels(classes, fg)
        assert n == ref_n and np.array_equal(labels, ref)
    snake = np.zeros((21, 21), dtype=bool)
    snake[::2] = True
    snake[1::4, -1] = True
    snake[3::4, 0] = True
    assert label_components(np.zeros((21, 21), dtype=int), snake)[1] == 1


def test_relations_vocabulary_is_covered() -> None:
    assert set(RELATIONS) == {"left of", "right of", "above", "below"}
    assert len(SHAPES) == 3 and len(COLORS) == 6


def test_shapes_suite_judges_every_task_on_equal_held_out_entries() -> None:
    from nftkit.evaluators.shapes import ShapesEvaluator

    specs = ShapesEvaluator(per_task=12).prompts()
    train, held_out = split_prompts(seed=0)
    train_prompts = {m["prompt"] for m in train}
    by_task: dict[str, list[str]] = {}
    for spec in specs:
        by_task.setdefault(spec.metadata["tag"], []).append(spec.text)
    assert {task: len(p) for task, p in by_task.items()} == {task: 12 for task in ALL_TASKS}
    assert not train_prompts & {spec.text for spec in specs}
    assert len({spec.id for spec in specs}) == len(specs)
    held_single = [m["prompt"] for m in held_out if m["tag"] == "single_object"]
    assert by_task["single_object"] == held_single * 12  # one held-out prompt, cycled
    assert len(set(by_task["color_attr"])) == 12  # large tasks: 12 distinct prompts


def test_task_weights_scale_a_tasks_share_of_training_prompts() -> None:
    train, _ = split_prompts(seed=0)
    plain = Counter(m["tag"] for m in task_balanced(train))
    weighted = Counter(m["tag"] for m in task_balanced(train, {"counting": 2, "position": 1.5}))
    size = plain["single_object"]
    assert weighted["counting"] == 2 * size
    assert weighted["position"] == round(1.5 * size)
    assert weighted["colors"] == plain["colors"] == size
    with pytest.raises(ValueError, match="unknown task"):
        task_balanced(train, {"countng": 2})
    with pytest.raises(ValueError, match="> 0"):
        task_balanced(train, {"counting": 0})


def test_weighted_shapes_train_source_resolves_and_bad_items_fail() -> None:
    from nftkit.train.presets import resolve_training_prompts

    items = resolve_training_prompts("shapes-train:counting=2")
    tags = Counter(item.metadata["tag"] for item in items)
    assert tags["counting"] == 2 * tags["single_object"]
    assert len(resolve_training_prompts("shapes-train")) == 6 * tags["single_object"]
    with pytest.raises(ValueError, match="TASK=WEIGHT"):
        resolve_training_prompts("shapes-train:counting")
