"""``nftkit report`` for a training run: curves, eval grids over time, config and layout.

One self-contained HTML file (images inline as base64 PNG): the composed reward, components
and monitors against the optimizer step and against wall seconds, the held-out eval metrics
at each evaluation point, each point's samples, the config and the derived batch layout.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

from nftkit.report.curves import curve_keys, data_uri, figure_png, load_history
from nftkit.results.report import thumbnail_data_uri
from nftkit.train.eval_during import completed_evals, eval_folder

_STYLE = """<style>
body{font:14px sans-serif;margin:24px;color:#222}
table{border-collapse:collapse;margin-bottom:16px}
td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
.row{display:flex;gap:6px;align-items:center;margin-bottom:8px}
.row img{width:96px;height:96px}
.curves img{max-width:48%;margin-right:1%}
</style>"""


def derived_layout(config: dict[str, Any]) -> dict[str, Any]:
    """Images per epoch, micro-batches and optimizer steps per epoch from a trainer config."""
    out: dict[str, Any] = {}
    prompts, group = config.get("prompts_per_epoch"), config.get("group_size")
    if isinstance(prompts, int) and isinstance(group, int):
        images = prompts * group
        out["images per epoch"] = f"{images} ({prompts} prompts x {group})"
        batch = config.get("train_batch_size")
        if isinstance(batch, int) and batch > 0:
            micro = math.ceil(images / batch)
            out["micro-batches per epoch"] = micro
            accum = config.get("grad_accum")
            if isinstance(accum, int) and accum > 0:
                out["optimizer steps per epoch"] = math.ceil(micro / accum)
    for key in ("num_steps", "max_train_timesteps", "epochs", "lr", "beta"):
        if key in config:
            out[key] = config[key]
    return out


def _table(rows: dict[str, Any]) -> str:
    esc = html.escape
    return (
        "<table>"
        + "".join(f"<tr><th>{esc(str(k))}</th><td>{esc(str(v))}</td></tr>" for k, v in rows.items())
        + "</table>"
    )


def render_training_report(folder: Path) -> str:
    """The HTML page of the training run in ``folder``."""
    esc = html.escape
    folder = Path(folder)
    history = load_history(folder)
    run = json.loads((folder / "run.json").read_text()) if (folder / "run.json").is_file() else {}
    algo = run.get("algo", "nft")
    config = dict(run.get(algo, {}))
    evals = completed_evals(folder)
    charts = []
    keys = curve_keys(history)
    for xkey, xlabel in (("step", "optimizer step"), ("wall_seconds", "wall seconds")):
        series = [
            (k, [r[xkey] for r in history if k in r], [r[k] for r in history if k in r])
            for k in keys
        ]
        charts.append(
            (
                f"reward and monitors vs {xlabel}",
                figure_png(
                    series, xlabel, "mean over the epoch's samples", f"training rewards vs {xlabel}"
                ),
            )
        )
    if evals:
        by_metric: dict[str, tuple[list[float], list[float]]] = {}
        for point in evals:
            for name, value in point["metrics"].items():
                xs, ys = by_metric.setdefault(f"{point['suite']}/{name}", ([], []))
                xs.append(point["step"])
                ys.append(value)
        charts.append(
            (
                "eval metrics vs step",
                figure_png(
                    [(k, xs, ys) for k, (xs, ys) in by_metric.items()],
                    "optimizer step",
                    "metric",
                    "held-out evaluation",
                ),
            )
        )
    title = f"nftkit training report: {run.get('model', folder.name)}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}</title>",
        _STYLE,
        "</head><body>",
        f"<h1>{esc(title)}</h1>",
        _table(
            {
                "run": run.get("run_id", ""),
                "algo": algo,
                "rewards": run.get("rewards"),
                "prompts": run.get("prompts"),
                "epochs done": len(history),
                "last reward": f"{history[-1]['reward_mean']:.4f}" if history else "-",
            }
        ),
        "<h2>Curves</h2>",
        '<div class="curves">',
        *(f'<img alt="{esc(alt)}" src="{data_uri(png)}">' for alt, png in charts),
        "</div>",
        f"<h2>Evaluations ({len(evals)})</h2>",
    ]
    for point in evals:
        src = eval_folder(folder, point["suite"], point["epoch"])
        thumbs = [thumbnail_data_uri(src / p, 96) for p in point["images"]]
        metrics = ", ".join(f"{k} {v:.3f}" for k, v in point["metrics"].items())
        parts.append(
            f'<div class="row"><b>epoch {point["epoch"]} (step {point["step"]})</b>'
            + "".join(f'<img alt="sample" src="{t}">' for t in thumbs if t)
            + f"<span>{esc(metrics)}</span></div>"
        )
    parts += [
        "<h2>Derived layout</h2>",
        _table(derived_layout(config)),
        "<h2>Config</h2>",
        f"<pre>{esc(json.dumps(run, indent=2, sort_keys=True))}</pre>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"
