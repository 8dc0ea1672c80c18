"""Figures people look at: reward curves and base-vs-tuned sample grids (matplotlib, Agg)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from PIL import Image, ImageDraw


def reward_curve(history: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Plot mean reward (and each component) against the optimizer step."""
    path = Path(path)
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    steps = [row["step"] for row in history]
    ax.plot(steps, [row["reward_mean"] for row in history], label="composed reward", lw=2)
    components = sorted({k for row in history for k in row if k.startswith("reward/")})
    if len(components) > 1:
        for key in components:
            ax.plot(steps, [row.get(key, float("nan")) for row in history], label=key[7:], lw=1)
    for row in history:
        for key, value in row.items():
            if key.startswith("eval/") and value is not None:
                ax.scatter([row["step"]], [value], marker="o", color="black", zorder=3)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("reward (mean over the epoch's samples)")
    ax.set_title(title or "DiffusionNFT training")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    tmp.replace(path)
    return path


def sample_grid(
    rows: Sequence[tuple[str, Sequence[Image.Image]]],
    columns: Sequence[str],
    path: str | Path,
    scale: int = 3,
) -> Path:
    """A grid: one row per label (e.g. "base", "tuned"), one column per prompt (same seeds)."""
    path = Path(path)
    cell = max(im.width for _, ims in rows for im in ims) * scale
    label_w, header_h = 70, 14 * 3
    grid = Image.new("RGB", (label_w + cell * len(columns), header_h + cell * len(rows)), "white")
    draw = ImageDraw.Draw(grid)
    for j, text in enumerate(columns):
        words, lines, line = text.replace("a photo of ", "").split(), [], ""
        for word in words:
            if len(line) + len(word) > cell // 6:
                lines.append(line)
                line = word
            else:
                line = f"{line} {word}".strip()
        lines.append(line)
        for k, part in enumerate(lines[:3]):
            draw.text((label_w + j * cell + 2, 2 + 13 * k), part, fill="black")
    for i, (label, images) in enumerate(rows):
        draw.text((4, header_h + i * cell + cell // 2 - 6), label, fill="black")
        for j, image in enumerate(images):
            big = image.resize((cell, cell), Image.NEAREST)
            grid.paste(big, (label_w + j * cell, header_h + i * cell))
    tmp = path.with_name(f".{path.name}.tmp.png")
    grid.save(tmp, format="PNG")
    tmp.replace(path)
    return path
