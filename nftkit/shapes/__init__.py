"""The shapes world: a tiny CPU analogue of GenEval built from flat colored shapes.

Prompts follow GenEval's grammar and metadata format (prompts.py), scenes satisfying a
metadata dict are sampled and rendered with numpy (scene.py), an exact detector finds the
shapes again (detect.py) and the judge applies GenEval's rules (judge.py). The functions
``detect`` and ``judge`` are not re-exported here, so that ``nftkit.shapes.detect`` and
``nftkit.shapes.judge`` stay the modules: import them from there.
"""

from nftkit.shapes.detect import Detection
from nftkit.shapes.judge import Verdict, judge_image
from nftkit.shapes.prompts import (
    ALL_TASKS,
    VOCAB,
    all_prompts,
    generate_prompts,
    split_prompts,
    token_ids,
    tokenize,
)
from nftkit.shapes.scene import Scene, ShapeObject, perturb_metadata, render, sample_scene
from nftkit.shapes.vocab import (
    BACKGROUND,
    COLORS,
    IMAGE_SIZE,
    NUMBER_WORDS,
    RELATIONS,
    SHAPES,
)

__all__ = [
    "ALL_TASKS",
    "BACKGROUND",
    "COLORS",
    "IMAGE_SIZE",
    "NUMBER_WORDS",
    "RELATIONS",
    "SHAPES",
    "VOCAB",
    "Detection",
    "Scene",
    "ShapeObject",
    "Verdict",
    "all_prompts",
    "generate_prompts",
    "judge_image",
    "perturb_metadata",
    "render",
    "sample_scene",
    "split_prompts",
    "token_ids",
    "tokenize",
]
