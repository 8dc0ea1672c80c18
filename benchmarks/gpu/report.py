"""Merge DIR/results.jsonl into DIR/results.json and a markdown table DIR/results.md.

    python benchmarks/gpu/report.py DIR

Each line of results.jsonl is {part, key, data}; run.sh adds {part, key: "_status", data:
{status, seconds}} after each part. Later lines with the same (part, key) win.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

REWARDS = ("pickscore", "clipscore", "hpsv2", "aesthetic", "imagereward", "geneval", "ocr")
FAMILIES = ("sd3.5-large", "flux.1-dev", "qwen-image", "sana-1.6b")


def merge(lines_path: Path) -> dict[str, dict[str, Any]]:
    """{part: {key: data}} from the JSON lines (unreadable lines are skipped)."""
    parts: dict[str, dict[str, Any]] = {}
    if not lines_path.is_file():
        return parts
    for line in lines_path.read_text(encoding="utf-8").splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        parts.setdefault(item["part"], {})[item["key"]] = item["data"]
    return parts


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def _status(part: dict[str, Any] | None) -> str:
    if part is None:
        return "not run"
    status = part.get("_status", {})
    if not status:
        return "interrupted (its process ended before it finished)"
    return f"{status.get('status')} ({_fmt(status.get('seconds'))} s)"


def markdown(parts: dict[str, dict[str, Any]]) -> str:
    """The tables of results.md."""
    env = parts.get("env", {})
    machine = env.get("machine", {})
    dry = parts.get("run", {}).get("settings", {}).get("dry_run", machine.get("dry_run"))
    lines = ["# nftkit GPU readiness run", ""]
    title = (
        "DRY RUN (tiny configs on the CPU; numbers describe the script, not a GPU)"
        if dry
        else f"device: {machine.get('device', '?')}"
    )
    lines += [title, ""]
    if "matmul" in env:
        m = env["matmul"]
        lines += [
            f"matmul {m['n']}^3 {m['dtype']}: {_fmt(m['tflops'])} TFLOP/s measured; MFU uses "
            f"{_fmt(m['peak_used_for_mfu'])} TFLOP/s",
            "",
        ]
    lines += ["## Parts", "", "| part | status |", "|---|---|"]
    lines += [
        f"| {name} | {_status(part)} |" for name, part in sorted(parts.items()) if name != "run"
    ]
    sample = parts.get("sd3-sample", {})
    model = sample.get("model", {}).get("model", "SD3")
    lines += [
        "",
        f"## Sampling: {model} (10 dpm2 steps, CFG-free, VAE decode)",
        "",
        "| batch | images/s | peak GiB |",
        "|---|---|---|",
    ]
    for key, row in sorted(
        sample.items(), key=lambda kv: kv[1].get("batch", 0) if isinstance(kv[1], dict) else 0
    ):
        if key.startswith("batch_"):
            note = "OOM" if row.get("oom") else row.get("skipped")
            lines.append(
                f"| {row['batch']} | {note or _fmt(row.get('images_per_s'))} | "
                f"{_fmt(row.get('peak_memory_gib'))} |"
            )
    if "best" in sample:
        lines.append(
            f"\nbest batch: {sample['best']['batch']} "
            f"({_fmt(sample['best']['images_per_s'])} images/s)"
        )
    train = parts.get("sd3-train", {})
    flops = train.get("flops", {})
    lines += [
        "",
        "## One NFT optimizer step (LoRA r32)",
        "",
        f"model: {train.get('model', {}).get('model', '-')}, batch "
        f"{train.get('model', {}).get('batch', '-')}, trained timesteps "
        f"{train.get('model', {}).get('trained_timesteps', '-')}; counted "
        f"{_fmt(flops.get('step_tflop'))} TFLOP per step "
        f"({_fmt(flops.get('step_over_forward'))} forwards' worth)",
        "",
        "| gradient checkpointing | s/step | peak GiB | TFLOP/s | MFU |",
        "|---|---|---|---|---|",
    ]
    for key, label in (("checkpointing_off", "off"), ("checkpointing_on", "on")):
        row = train.get(key)
        if row is None:
            lines.append(f"| {label} | not measured | | | |")
        elif row.get("oom"):
            lines.append(f"| {label} | OOM | | | |")
        else:
            lines.append(
                f"| {label} | {_fmt(row.get('seconds_per_step'))} | "
                f"{_fmt(row.get('peak_memory_gib'))} | {_fmt(row.get('achieved_tflops'))} | "
                f"{_fmt(row.get('mfu'))} |"
            )
    lines += family_table(parts, dry)
    size = "tiny checkpoints" if dry else "random init at real size"
    lines += [
        "",
        f"## Reward throughput (images/s; {size})",
        "",
        "| reward | batch | toolkit | score_batch | bare model | toolkit / model time | peak GiB |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in REWARDS:
        part = parts.get(f"reward-{name}")
        if part is None:
            lines.append(f"| {name} | | not run | | | | |")
            continue
        rows = [v for k, v in part.items() if k.startswith("batch_")]
        if not rows:
            lines.append(f"| {name} | | {_status(part)} | | | | |")
        for row in sorted(rows, key=lambda r: r["batch"]):
            if "images_per_s" not in row:
                note = "OOM" if row.get("oom") else row.get("skipped", "-")
                lines.append(f"| {name} | {row['batch']} | {note} | | | | |")
                continue
            lines.append(
                f"| {name} | {row['batch']} | {_fmt(row['images_per_s'])} | "
                f"{_fmt(row['score_batch_images_per_s'])} | {_fmt(row['model_images_per_s'])} | "
                f"{_fmt(row['toolkit_over_model'])} | {_fmt(row.get('peak_memory_gib'))} |"
            )
    ocr = parts.get("reward-ocr", {}).get("model", {})
    if ocr:
        lines.append(f"\nOCR runs on: {ocr.get('ocr_runs_on')} ({ocr.get('note', '')})")
    tests = parts.get("pytest-cuda", {}).get("summary")
    if tests:
        counts = ", ".join(f"{k} {tests.get(k)}" for k in ("passed", "failed", "errors", "skipped"))
        lines += ["", "## pytest -m cuda", "", f"{counts} (exit {tests.get('returncode')})"]
        lines += [f"- failing: {name}" for name in tests.get("failing", [])]
    return "\n".join(lines) + "\n"


def _row(cells: list[str]) -> str:
    """A markdown table row; empty cells as single spaces."""
    return "|" + "|".join(f" {c} " if c else " " for c in cells) + "|"


def family_table(parts: dict[str, dict[str, Any]], dry: bool | None) -> list[str]:
    """The per-family table: sampling images/s and seconds per NFT step at the preset's
    resolution and batches (family_parts.py)."""
    size = "tiny configs" if dry else "real size, random init, bf16"
    lines = [
        "",
        f"## Families at their preset (sampling with VAE decode; one NFT step; {size})",
        "",
        "| family | preset | transformer params | px | sampling batch | images/s | peak GiB "
        "| train batch x timesteps | s / NFT step | peak GiB | status |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name in FAMILIES:
        part = parts.get(f"family-{name}")
        if part is None:
            lines.append(_row([name, "", "", "", "", "not run", "", "", "", "", ""]))
            continue
        model = part.get("model", {})
        sample = part.get("sampling", {})
        step = part.get("nft_step", {})
        params = model.get("transformer_params")
        size = "" if not params else f"{params / 1e9:.2f}B" if params >= 1e8 else str(params)
        status = part.get("_status", {}).get("status", "interrupted")
        lines.append(
            _row(
                [
                    name,
                    model.get("preset", ""),
                    size,
                    str(model.get("resolution", "")),
                    str(sample.get("batch", "")),
                    _fmt(sample.get("images_per_s")) if sample else "",
                    _fmt(sample.get("peak_memory_gib")) if sample else "",
                    f"{step['batch']} x {step['trained_timesteps']}" if step else "",
                    _fmt(step.get("seconds_per_step")) if step else "",
                    _fmt(step.get("peak_memory_gib")) if step else "",
                    status,
                ]
            )
        )
    return lines


def write_report(out: Path) -> dict[str, dict[str, Any]]:
    """Rewrite results.json and results.md in ``out``; returns the merged parts."""
    parts = merge(out / "results.jsonl")
    (out / "results.json").write_text(json.dumps(parts, indent=2, sort_keys=True) + "\n")
    (out / "results.md").write_text(markdown(parts))
    return parts


if __name__ == "__main__":
    write_report(Path(sys.argv[1]))
