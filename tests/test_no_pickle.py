"""No unpickling anywhere: the package, benchmarks and examples are scanned (AST, not regex).

Forbidden: importing pickle-family modules (pickle, cPickle, _pickle, dill, cloudpickle,
joblib, shelve), pandas' read_pickle, ``torch.load`` without ``weights_only=True`` and
``np.load(..., allow_pickle=True)``. What nftkit writes itself is safetensors and JSON only.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from nftkit.policies.shapes import ShapesPolicy
from nftkit.policies.shapes_model import ShapesFlowModel
from nftkit.train import checkpoint as ckpt
from tests.conftest import REPO_ROOT
from tests.shapes_helpers import tiny_shapes_config

SCANNED = ("nftkit", "benchmarks", "examples")
PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve"}
SAFE_SUFFIXES = {".safetensors", ".json", ""}


def _dotted(node: ast.AST) -> str:
    """``a.b.c`` for a Name/Attribute chain, else ''."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return ""


def _keyword_is(call: ast.Call, name: str, value: object) -> bool:
    return any(
        k.arg == name and isinstance(k.value, ast.Constant) and k.value.value is value
        for k in call.keywords
    )


def pickle_findings(source: str, filename: str = "<src>") -> list[str]:
    """Places in ``source`` that may unpickle data, as 'file:line: what'."""
    tree = ast.parse(source, filename)
    found: list[str] = []
    calls = {id(n.func): n for n in ast.walk(tree) if isinstance(n, ast.Call)}
    for node in ast.walk(tree):
        where = f"{filename}:{getattr(node, 'lineno', 0)}"
        if isinstance(node, ast.Import):
            found += [
                f"{where}: import {a.name}"
                for a in node.names
                if a.name.split(".")[0] in PICKLE_MODULES
            ]
        elif (
            isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in PICKLE_MODULES
        ):
            found.append(f"{where}: from {node.module} import ...")
        elif (
            isinstance(node, ast.ImportFrom)
            and node.module == "torch"
            and any(a.name == "load" for a in node.names)
        ):
            found.append(f"{where}: from torch import load (use torch.load(weights_only=True))")
        elif isinstance(node, ast.Attribute):
            name = _dotted(node)
            call = calls.get(id(node))
            if name == "torch.load" and (
                call is None or not _keyword_is(call, "weights_only", True)
            ):
                found.append(f"{where}: torch.load without weights_only=True")
            elif (
                name in ("np.load", "numpy.load")
                and call is not None
                and not _keyword_is(call, "allow_pickle", False)
                and any(k.arg == "allow_pickle" for k in call.keywords)
            ):
                found.append(f"{where}: {name} with allow_pickle")
            elif name.endswith("read_pickle"):
                found.append(f"{where}: {name}")
    return found


def _python_files() -> list[Path]:
    files = [p for d in SCANNED for p in (REPO_ROOT / d).rglob("*.py") if ".venv" not in p.parts]
    assert len(files) > 50  # the package is really being scanned
    return sorted(files)


def test_no_unpickling_in_the_code_base() -> None:
    findings = [
        f
        for path in _python_files()
        for f in pickle_findings(path.read_text(), str(path.relative_to(REPO_ROOT)))
    ]
    assert findings == []


@pytest.mark.parametrize(
    "source",
    [
        "import pickle\n",
        "import dill as d\n",
        "from joblib import load\n",
        "import torch\nx = torch.load('m.pt')\n",
        "import torch\nx = torch.load('m.pt', weights_only=False)\n",
        "import torch\nloader = torch.load\n",
        "from torch import load\n",
        "import numpy as np\nx = np.load('a.npy', allow_pickle=True)\n",
        "import pandas as pd\nx = pd.read_pickle('f')\n",
    ],
)
def test_the_scanner_catches_each_unsafe_form(source: str) -> None:
    assert len(pickle_findings(source)) == 1


@pytest.mark.parametrize(
    "source",
    [
        "import torch\nx = torch.load('m.pt', map_location='cpu', weights_only=True)\n",
        "import numpy as np\nx = np.load('a.npy')\ny = np.load('b.npy', allow_pickle=False)\n",
        "from safetensors.torch import load_file\nx = load_file('m.safetensors')\n",
    ],
)
def test_the_scanner_accepts_safe_loading(source: str) -> None:
    assert pickle_findings(source) == []


def test_nftkit_writes_only_safetensors_and_json(tmp_path: Path) -> None:
    ShapesPolicy(ShapesFlowModel(tiny_shapes_config(8))).save_pretrained(tmp_path / "model")
    ckpt.save_checkpoint(
        tmp_path / "ckpt", 1, {"adapter": {"w": torch.ones(2)}}, {"trainer_state": {"epoch": 1}}
    )
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) == 5
    assert {p.suffix for p in written} <= SAFE_SUFFIXES, written
    loaded = ShapesPolicy.from_pretrained(tmp_path / "model")
    assert sum(p.numel() for p in loaded.model.parameters()) > 0
