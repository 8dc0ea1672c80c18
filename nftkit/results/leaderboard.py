"""Rendering of leaderboard rows: rich table, markdown, csv, json, html, and a bar chart.

Columns: suite, model, then "overall" when any row reports it, then the other metrics in
name order, then n and the run. Text formats show 4 decimals; csv and json keep every digit.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

from rich.table import Table
from rich.text import Text

from nftkit.errors import NftkitError, UsageError
from nftkit.results.records import OVERALL, LeaderboardRow

FORMATS = ("table", "markdown", "csv", "json", "html")
_EMPTY = "no finished eval runs"


def metric_columns(rows: Sequence[LeaderboardRow]) -> list[str]:
    """Metric names over all rows: "overall" first when present, then the rest sorted."""
    names = {name for row in rows for name in row.metrics}
    rest = sorted(names - {OVERALL})
    return [OVERALL, *rest] if OVERALL in names else rest


def format_value(value: float | None) -> str:
    """A metric value for reading: 4 decimals, scientific notation for tiny or huge values."""
    if value is None:
        return ""
    if value == 0 or 1e-3 <= abs(value) < 1e6:
        return f"{value:.4f}"
    return f"{value:.4g}"


def format_leaderboard(rows: Sequence[LeaderboardRow], fmt: str = "table") -> str | Table:
    """Render leaderboard rows; ``fmt`` is one of table (a rich Table), markdown, csv, json, html."""
    renderers = {
        "table": _table,
        "markdown": _markdown,
        "csv": _csv,
        "json": _json,
        "html": _html,
    }
    if fmt not in renderers:
        raise UsageError(f"unknown leaderboard format {fmt!r}: choose one of {', '.join(FORMATS)}")
    return renderers[fmt](list(rows))


def plot_leaderboard(rows: Sequence[LeaderboardRow], path: str | os.PathLike[str]) -> Path:
    """Save a grouped bar chart (one group per model, one bar per metric) as a PNG at ``path``.

    One panel per suite. Uses matplotlib's Agg canvas; returns the path written.
    """
    rows = list(rows)
    if not rows:
        raise NftkitError(f"nothing to plot: {_EMPTY}")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    suites = sorted({row.suite for row in rows})
    width_in = max(6.0, 1.2 * max(sum(r.suite == s for r in rows) for s in suites) + 3.0)
    fig = Figure(figsize=(width_in, 3.6 * len(suites)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(suites), 1, squeeze=False)[:, 0]
    for ax, suite in zip(axes, suites, strict=True):
        suite_rows = [r for r in rows if r.suite == suite]
        metrics = metric_columns(suite_rows)
        bar = 0.8 / max(len(metrics), 1)
        for j, metric in enumerate(metrics):
            xs = [i + (j - (len(metrics) - 1) / 2) * bar for i in range(len(suite_rows))]
            heights = [r.metrics.get(metric, math.nan) for r in suite_rows]
            ax.bar(xs, heights, width=bar, label=_header(metric, suite_rows))
        ax.set_xticks(range(len(suite_rows)), [r.model for r in suite_rows], rotation=15)
        ax.set_title(suite)
        ax.set_ylabel("value")
        ax.grid(axis="y", alpha=0.3)
        if metrics:
            ax.legend(fontsize="small", ncols=min(len(metrics), 4))
    out = Path(path)
    try:
        fig.savefig(out, format="png", dpi=120)
    except OSError as exc:
        raise NftkitError(
            f"cannot write leaderboard plot to {out}: {exc.strerror or exc}"
        ) from None
    return out


def _header(metric: str, rows: Sequence[LeaderboardRow]) -> str:
    for row in rows:
        if metric in row.higher_is_better:
            return f"{metric} {'↑' if row.higher_is_better[metric] else '↓'}"
    return metric


def _best(rows: list[LeaderboardRow], metric: str) -> dict[str, float]:
    """Best value of ``metric`` per suite."""
    best: dict[str, float] = {}
    for row in rows:
        if metric not in row.metrics:
            continue
        value = row.metrics[metric]
        higher = row.higher_is_better.get(metric, True)
        current = best.get(row.suite)
        if current is None or (value > current if higher else value < current):
            best[row.suite] = value
    return best


def _table(rows: list[LeaderboardRow]) -> Table:
    metrics = metric_columns(rows)
    table = Table(title="Leaderboard", caption=_EMPTY if not rows else None)
    table.add_column("suite")
    table.add_column("model", style="bold")
    for metric in metrics:
        table.add_column(_header(metric, rows), justify="right")
    table.add_column("n", justify="right")
    table.add_column("run", style="dim")
    bests = {metric: _best(rows, metric) for metric in metrics}
    for row in rows:
        cells = [Text(row.suite), Text(row.model)]
        for metric in metrics:
            value = row.metrics.get(metric)
            best = value is not None and bests[metric].get(row.suite) == value
            cells.append(Text(format_value(value), style="bold green" if best else ""))
        table.add_row(*cells, Text(_count(row.n)), Text(row.run_id[:8]))
    return table


def transposed_table(rows: Sequence[LeaderboardRow]) -> Table:
    """The leaderboard with one column per model and one row per metric (for narrow screens)."""
    rows = list(rows)
    metrics = metric_columns(rows)
    table = Table(title="Leaderboard")
    table.add_column("metric")
    for row in rows:
        table.add_column(f"{row.model}\n({row.suite}, run {row.run_id[:8]})", justify="right")
    bests = {metric: _best(rows, metric) for metric in metrics}
    for metric in metrics:
        cells = []
        for row in rows:
            value = row.metrics.get(metric)
            best = value is not None and bests[metric].get(row.suite) == value
            cells.append(Text(format_value(value), style="bold green" if best else ""))
        table.add_row(Text(_header(metric, rows)), *cells)
    table.add_row(Text("n"), *(Text(_count(row.n)) for row in rows))
    return table


def _markdown(rows: list[LeaderboardRow]) -> str:
    metrics = metric_columns(rows)
    header = ["suite", "model", *(_header(m, rows) for m in metrics), "n", "run"]
    align = ["---", "---", *("---:" for _ in metrics), "---:", "---"]
    lines = [_md_line(header), _md_line(align)]
    for row in rows:
        values = [format_value(row.metrics.get(m)) for m in metrics]
        lines.append(_md_line([row.suite, row.model, *values, _count(row.n), row.run_id[:8]]))
    return "\n".join(lines) + "\n"


def _md_line(cells: list[str]) -> str:
    return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def _csv(rows: list[LeaderboardRow]) -> str:
    metrics = metric_columns(rows)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["suite", "model", *metrics, "n", "run_id", "finished_at"])
    for row in rows:
        values = [repr(row.metrics[m]) if m in row.metrics else "" for m in metrics]
        finished = row.finished_at.isoformat() if row.finished_at else ""
        writer.writerow([row.suite, row.model, *values, _count(row.n), row.run_id, finished])
    return buffer.getvalue()


def _json(rows: list[LeaderboardRow]) -> str:
    order = metric_columns(rows)
    data = []
    for row in rows:
        item = row.as_dict()
        item["metrics"] = {m: row.metrics[m] for m in order if m in row.metrics}
        item["higher_is_better"] = {
            m: row.higher_is_better[m] for m in order if m in row.higher_is_better
        }
        data.append(item)
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


_HTML_STYLE = (
    "<style>"
    "table.nftkit-leaderboard{border-collapse:collapse;font:14px sans-serif}"
    "table.nftkit-leaderboard th,table.nftkit-leaderboard td"
    "{border:1px solid #ccc;padding:4px 8px}"
    "table.nftkit-leaderboard th{background:#f3f3f3}"
    "table.nftkit-leaderboard td.num{text-align:right;font-variant-numeric:tabular-nums}"
    "table.nftkit-leaderboard td.best{font-weight:bold}"
    "</style>"
)


def _html(rows: list[LeaderboardRow]) -> str:
    metrics = metric_columns(rows)
    esc = html.escape
    header = ["suite", "model", *(_header(m, rows) for m in metrics), "n", "run"]
    lines = [
        _HTML_STYLE,
        '<table class="nftkit-leaderboard">',
        "<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr></thead>",
        "<tbody>",
    ]
    bests = {metric: _best(rows, metric) for metric in metrics}
    for row in rows:
        cells = [f"<td>{esc(row.suite)}</td>", f"<td>{esc(row.model)}</td>"]
        for metric in metrics:
            value = row.metrics.get(metric)
            best = value is not None and bests[metric].get(row.suite) == value
            cls = "num best" if best else "num"
            cells.append(f'<td class="{cls}">{format_value(value)}</td>')
        cells.append(f'<td class="num">{_count(row.n)}</td>')
        cells.append(f"<td><code>{esc(row.run_id[:8])}</code></td>")
        lines.append("<tr>" + "".join(cells) + "</tr>")
    if not rows:
        lines.append(f'<tr><td colspan="{len(header)}">{_EMPTY}</td></tr>')
    lines += ["</tbody>", "</table>"]
    return "\n".join(lines) + "\n"


def _count(n: int | None) -> str:
    return "" if n is None else str(n)
