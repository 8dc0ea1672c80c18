"""A self-contained HTML page for one run: its settings, metrics and a grid of samples.

Sample images are embedded as base64 PNG thumbnails, so the page needs no other file. Each
card shows the prompt, the sample index, the verdict (correct or not, with the judge's reason
when the suite gives one) and the numeric scores.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from nftkit.results.leaderboard import format_value
from nftkit.results.records import MetricRecord, RunRecord, SampleRecord

THUMBNAIL_PX = 160
_STYLE = """<style>
body{font:14px sans-serif;margin:24px;color:#222}
table.kv{border-collapse:collapse;margin-bottom:16px}
table.kv td,table.kv th{border:1px solid #ccc;padding:3px 8px;text-align:left}
table.kv td.num{text-align:right;font-variant-numeric:tabular-nums}
.grid{display:flex;flex-wrap:wrap;gap:10px}
.card{width:THUMBpx;border:2px solid #ccc;border-radius:6px;padding:6px;font-size:12px}
.card.ok{border-color:#2a9d4b}.card.bad{border-color:#c0392b}
.card img{width:100%;image-rendering:auto;display:block;margin-bottom:4px}
.card .missing{height:THUMBpx;background:#eee;display:flex;align-items:center;justify-content:center}
.verdict{font-weight:bold}.ok .verdict{color:#2a9d4b}.bad .verdict{color:#c0392b}
code{font-size:11px}
</style>""".replace("THUMB", str(THUMBNAIL_PX))


def thumbnail_data_uri(path: str | Path, size: int = THUMBNAIL_PX) -> str | None:
    """A ``data:image/png;base64,...`` thumbnail of the image at ``path`` (None if unreadable)."""
    try:
        with Image.open(path) as image:
            thumb = image.convert("RGB")
    except (OSError, ValueError):
        return None
    thumb.thumbnail((size, size), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    thumb.save(buffer, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _kv_table(rows: Sequence[tuple[str, str]]) -> str:
    esc = html.escape
    body = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
    return f'<table class="kv">{body}</table>'


def _metrics_table(metrics: Sequence[MetricRecord]) -> str:
    esc = html.escape
    final = [m for m in metrics if m.step is None]
    if not final:
        return "<p>No final metrics (the run did not finish).</p>"
    rows = "".join(
        f"<tr><td>{esc(m.suite)}</td><td>{esc(m.metric)} {'↑' if m.higher_is_better else '↓'}"
        f'</td><td class="num">{format_value(m.value)}</td><td class="num">{m.n or ""}</td></tr>'
        for m in final
    )
    return (
        '<table class="kv"><tr><th>suite</th><th>metric</th><th>value</th><th>n</th></tr>'
        f"{rows}</table>"
    )


def _card(sample: SampleRecord) -> str:
    esc = html.escape
    scores = dict(sample.scores)
    info = scores.pop("info", {}) if isinstance(scores.get("info"), dict) else {}
    uri = thumbnail_data_uri(sample.image_path) if sample.image_path else None
    image = f'<img src="{uri}" alt="sample">' if uri else '<div class="missing">no image</div>'
    css = "" if sample.correct is None else ("ok" if sample.correct else "bad")
    verdict = ""
    if sample.correct is not None:
        verdict = f'<div class="verdict">{"correct" if sample.correct else "wrong"}</div>'
    reason = info.get("reason") or ""
    extra = "".join(
        f"<div>{esc(k)}: {esc(str(v))}</div>"
        for k, v in info.items()
        if k not in ("reason", "details") and isinstance(v, str | int | float)
    )
    numbers = "".join(
        f"<div>{esc(k)}: {format_value(float(v))}</div>"
        for k, v in scores.items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    )
    return (
        f'<div class="card {css}">{image}<div>{esc(sample.prompt)}</div>'
        f"<div><code>{esc(sample.prompt_id)} / {sample.sample_index}</code></div>{verdict}"
        f"{f'<div>{esc(reason)}</div>' if reason else ''}{extra}{numbers}</div>"
    )


def render_report(
    run: RunRecord,
    metrics: Sequence[MetricRecord],
    samples: Sequence[SampleRecord],
    max_samples: int | None = 200,
) -> str:
    """The HTML page of a run (at most ``max_samples`` sample cards, in stored order)."""
    esc = html.escape
    shown = list(samples) if max_samples is None else list(samples)[:max_samples]
    facts = [
        ("run", run.id),
        ("kind", run.kind),
        ("model", run.model),
        ("suite", run.suite or ""),
        ("status", run.status),
        ("started", run.started_at.isoformat()),
        ("finished", run.finished_at.isoformat() if run.finished_at else ""),
        ("git sha", run.git_sha or ""),
        ("config hash", run.config_hash),
        ("output", run.output_dir or ""),
    ]
    note = (
        f"<p>Showing {len(shown)} of {len(samples)} samples.</p>"
        if len(shown) < len(samples)
        else ""
    )
    title = f"nftkit {run.kind} {run.short_id}: {run.model} on {run.suite or '-'}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title>",
        _STYLE,
        "</head><body>",
        f"<h1>{esc(title)}</h1>",
        _kv_table(facts),
        "<h2>Metrics</h2>",
        _metrics_table(metrics),
        "<h2>Settings</h2>",
        f"<pre>{esc(json.dumps(run.config, indent=2, sort_keys=True))}</pre>",
        "<h2>Versions</h2>",
        _kv_table([(k, str(v)) for k, v in sorted(run.versions.items())]),
        f"<h2>Samples ({len(samples)})</h2>",
        note,
        '<div class="grid">',
        *(_card(s) for s in shown),
        "</div>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def write_report(
    store: Any, run_id: str, output: str | Path, max_samples: int | None = 200
) -> Path:
    """Render the run ``run_id`` of ``store`` to the HTML file ``output``."""
    from nftkit.errors import NftkitError

    run = store.get_run(run_id)
    page = render_report(run, store.metrics(run.id), store.samples(run.id), max_samples)
    out = Path(output)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise NftkitError(f"cannot write report to {out}: {exc.strerror or exc}") from None
    return out
