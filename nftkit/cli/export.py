"""``nftkit export``: the trained LoRA in diffusers format, or a full model with it fused."""

from __future__ import annotations

from pathlib import Path

import typer


def export(
    run_dir: Path = typer.Argument(..., help="Training output folder written by `nftkit train`."),
    output: Path = typer.Option(..., "--output", "-o", help="Folder to write."),
    merge: bool = typer.Option(
        False,
        "--merge",
        "--merged",
        help="Fuse the EMA LoRA into the base model and save a full model.",
    ),
    dtype: str = typer.Option(
        None, help="Weights dtype of a merged export (default bf16 for diffusers, fp16 for shapes)."
    ),
) -> None:
    """Export the EMA LoRA (diffusers format) or, with --merge, a fused full model."""
    from nftkit.policies.loading import describe_model
    from nftkit.train.export import export_lora, export_merged

    if not merge:
        path = export_lora(run_dir, output)
    elif describe_model(run_dir).get("family", "shapes") in ("sd3", "shapes"):
        path = export_merged(run_dir, output, dtype=dtype)
    else:
        from nftkit.policies.family_export import export_merged_family

        path = export_merged_family(run_dir, output, dtype=dtype)
    typer.echo(str(path))
