"""The evaluation package's modules follow the data and import only the stages before them."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "nftkit" / "eval"
STAGES = ["layout", "specs", "generation", "scoring", "recording", "report", "api", "__init__"]


def _eval_imports(path: Path) -> set[str]:
    """Modules of nftkit.eval that ``path`` imports (module level or inside functions)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.ImportFrom):  # relative: resolve against nftkit.eval
            base = "nftkit.eval" + (f".{node.module}" if node.module else "")
            names = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[:2] == ["nftkit", "eval"] and len(parts) > 2 and parts[2] in STAGES:
                found.add(parts[2])
    return found


def test_every_module_of_the_package_is_a_known_stage() -> None:
    assert sorted(p.stem for p in PACKAGE.glob("*.py")) == sorted(STAGES)


def test_each_stage_imports_only_earlier_stages() -> None:
    backward = []
    for stage in STAGES:
        rank = STAGES.index(stage)
        for imported in _eval_imports(PACKAGE / f"{stage}.py"):
            if STAGES.index(imported) >= rank:
                backward.append(f"{stage} -> {imported}")
    assert backward == []


def test_the_checker_sees_a_backward_import(tmp_path: Path) -> None:
    module = tmp_path / "specs.py"
    module.write_text(
        "def f():\n    from nftkit.eval.report import EvalReport\nfrom nftkit.eval import api\n"
    )
    assert _eval_imports(module) == {"report", "api"}


def test_the_old_top_level_modules_are_gone() -> None:
    root = PACKAGE.parent
    for old in ("evaluate.py", "eval_session.py", "eval_pipeline.py", "evaluators/layout.py"):
        assert not (root / old).exists(), old
