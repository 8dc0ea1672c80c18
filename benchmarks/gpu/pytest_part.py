"""Run the CUDA-marked tests (``pytest -m cuda``) and record their summary.

    python benchmarks/gpu/pytest_part.py --out DIR [--dry-run] [--budget S] [PATH ...]

On a machine without CUDA every such test is skipped (that is what the dry run shows).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

from common import HERE, Recorder, parse_settings

ROOT = HERE.parents[1]


def summary(junit: Path) -> dict[str, object]:
    """passed/failed/errors/skipped counts and the names of failing tests from a JUnit file."""
    root = ET.parse(junit).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    counts = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    failing: list[str] = []
    for suite in suites:
        for key in counts:
            counts[key] += int(suite.get(key, 0))
        for case in suite.iter("testcase"):
            if case.find("failure") is not None or case.find("error") is not None:
                failing.append(f"{case.get('classname')}::{case.get('name')}")
    passed = counts["tests"] - counts["failures"] - counts["errors"] - counts["skipped"]
    return {
        "passed": passed,
        "failed": counts["failures"],
        "errors": counts["errors"],
        "skipped": counts["skipped"],
        "failing": failing[:20],
    }


def cuda_test_files(paths: list[str]) -> list[str]:
    """The test files under ``paths`` that use the cuda marker (so that an unrelated module
    that cannot be imported on the device does not stop the collection)."""
    found: list[str] = []
    for path in paths:
        target = ROOT / path
        files = [target] if target.is_file() else sorted(target.rglob("test_*.py"))
        found += [
            str(f.relative_to(ROOT))
            for f in files
            if "mark.cuda" in f.read_text(encoding="utf-8", errors="replace")
        ]
    return found


def main() -> None:
    """Run pytest -m cuda on PATHs (default: tests/) within the time box."""

    def extra(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("paths", nargs="*", default=["tests"])

    settings, args = parse_settings(__doc__.split("\n")[0], extra)
    rec = Recorder(settings, "pytest-cuda")
    with tempfile.TemporaryDirectory() as tmp:
        junit = Path(tmp) / "junit.xml"
        files = cuda_test_files(args.paths)
        if not files:
            rec.add("summary", {"returncode": "no test file uses the cuda marker", "files": files})
            return
        cmd = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-m",
            "cuda",
            "-p",
            "no:cacheprovider",
            "--continue-on-collection-errors",
            f"--junitxml={junit}",
            *files,
        ]
        try:
            proc = subprocess.run(cmd, cwd=ROOT, timeout=max(settings.remaining() - 5, 5))
            returncode: int | str = proc.returncode
        except subprocess.TimeoutExpired:
            returncode = "timeout"
        result = summary(junit) if junit.is_file() else {}
        rec.add("summary", {**result, "returncode": returncode, "files": files})


if __name__ == "__main__":
    main()
