"""``nftkit compare RUN RUN ...``: several runs' curves overlaid in one PNG and one HTML page."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from nftkit.errors import UsageError
from nftkit.report.curves import data_uri, figure_png, load_history
from nftkit.train.eval_during import completed_evals


def run_label(folder: Path, run: dict[str, Any] | None = None) -> str:
    """A short name for a run: its folder name."""
    return Path(folder).name


def compare_runs(folders: list[Path], output: Path) -> tuple[Path, Path]:
    """Write ``output`` (HTML) and ``output`` with .png: reward vs step of every run."""
    if len(folders) < 2:
        raise UsageError("nftkit compare needs at least two training folders")
    histories = [(run_label(f), load_history(f)) for f in folders]
    reward = figure_png(
        [(name, [r["step"] for r in h], [r["reward_mean"] for r in h]) for name, h in histories],
        "optimizer step",
        "composed reward",
        "training reward",
    )
    charts = [("reward vs step", reward)]
    charts.append(
        (
            "reward vs wall seconds",
            figure_png(
                [
                    (name, [r["wall_seconds"] for r in h], [r["reward_mean"] for r in h])
                    for name, h in histories
                ],
                "wall seconds",
                "composed reward",
                "training reward",
            ),
        )
    )
    evals = [(run_label(f), completed_evals(f)) for f in folders]
    metric = next(
        (
            k
            for _, pts in evals
            for p in pts
            for k in ("overall", *p["metrics"])
            if k in p["metrics"]
        ),
        None,
    )
    if metric is not None:
        charts.append(
            (
                f"eval {metric} vs step",
                figure_png(
                    [
                        (
                            name,
                            [p["step"] for p in pts if metric in p["metrics"]],
                            [p["metrics"][metric] for p in pts if metric in p["metrics"]],
                        )
                        for name, pts in evals
                    ],
                    "optimizer step",
                    metric,
                    f"held-out {metric}",
                ),
            )
        )
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    png = output.with_suffix(".png")
    png.write_bytes(reward)
    esc = html.escape
    rows = "".join(
        f"<tr><td>{esc(name)}</td><td>{len(h)}</td><td>{h[-1]['reward_mean']:.4f}</td></tr>"
        for name, h in histories
        if h
    )
    page = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>nftkit compare</title>",
        "<style>body{font:14px sans-serif;margin:24px}td,th{border:1px solid #ccc;"
        "padding:3px 8px}table{border-collapse:collapse}</style></head><body>",
        f"<h1>nftkit compare: {esc(', '.join(n for n, _ in histories))}</h1>",
        "<table><tr><th>run</th><th>epochs</th><th>last reward</th></tr>",
        rows,
        "</table>",
        *(f'<img alt="{esc(alt)}" src="{data_uri(p)}">' for alt, p in charts),
        "</body></html>",
    ]
    output.write_text("\n".join(page) + "\n", encoding="utf-8")
    return output, png
