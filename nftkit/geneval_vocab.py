"""GenEval's vocabulary (djghosh13/geneval, MIT): classes, colors, relations, task names.

Kept free of heavy imports so that the prompt generator and the CLI can use it without torch.
"""

from __future__ import annotations

GENEVAL_CLASSES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich",
    "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "computer mouse",
    "tv remote", "computer keyboard", "cell phone", "microwave", "oven", "toaster", "sink",
    "refrigerator", "book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip
"""GenEval's 80 COCO class names in detector label order (prompts/object_names.txt)."""

GENEVAL_COLORS: tuple[str, ...] = (
    "red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white",
)  # fmt: skip
"""The ten colors of GenEval's color classifier, in its order."""

RELATIONS: tuple[str, ...] = ("left of", "right of", "above", "below")
"""Position relations, as written in prompts and metadata."""

GENEVAL_TASKS: tuple[str, ...] = (
    "single_object", "two_object", "counting", "colors", "position", "color_attr",
)  # fmt: skip
"""The six GenEval tasks (metadata "tag"), in the order of the official prompt file."""

NUMBER_WORDS: dict[int, str] = {2: "two", 3: "three", 4: "four"}
"""Counts used by the counting task and their words."""

UNCOLORED_CLASSES: frozenset[str] = frozenset({"person"})
"""Classes that never get a color in prompts."""
