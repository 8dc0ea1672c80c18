"""Training curves as PNG bytes (matplotlib, Agg) and as data URIs for self-contained pages."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from nftkit.errors import UsageError


def load_history(folder: Path) -> list[dict[str, Any]]:
    """A training folder's history.jsonl rows, with cumulative ``wall_seconds`` added."""
    path = Path(folder) / "history.jsonl"
    if not path.is_file():
        raise UsageError(f"{folder} is not a training output folder (no history.jsonl)")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    total = 0.0
    for row in rows:
        total += float(row.get("seconds", 0.0))
        row["wall_seconds"] = total
    return rows


def curve_keys(history: Sequence[dict[str, Any]]) -> list[str]:
    """The curves worth plotting: the composed reward, components and monitors."""
    keys = {
        k
        for row in history
        for k in row
        if k.startswith(("reward/", "monitor/")) and isinstance(row[k], (int, float))
    }
    return ["reward_mean", *sorted(keys)]


def figure_png(
    series: Sequence[tuple[str, Sequence[float], Sequence[float]]],
    xlabel: str,
    ylabel: str,
    title: str,
) -> bytes:
    """One line chart of ``(label, xs, ys)`` series as PNG bytes."""
    fig, ax = plt.subplots(figsize=(6.4, 3.8), dpi=100)
    for label, xs, ys in series:
        ax.plot(list(xs), list(ys), label=label, marker="o" if len(xs) < 12 else None, ms=3)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    if series:
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def data_uri(png: bytes) -> str:
    """``data:image/png;base64,...`` for an <img> of a self-contained page."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")
