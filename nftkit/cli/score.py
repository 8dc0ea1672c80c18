"""``nftkit score``: score a folder of images with a reward spec."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from nftkit.cli.validation import validate_score
from nftkit.compose import NORMALIZATIONS, RewardComposer
from nftkit.errors import InputError, UsageError
from nftkit.images import list_images, load_image
from nftkit.prompt_files import PromptRecord, read_prompt_records


def _pair_images_and_prompts(
    images_dir: Path, prompts: Path | None
) -> tuple[list[Path], list[PromptRecord]]:
    """Images (sorted by name, or as listed in a manifest) with their prompt records."""
    records = read_prompt_records(prompts) if prompts is not None else None
    if records is not None and all(r.image for r in records):
        paths = [
            Path(r.image) if Path(r.image).is_absolute() else images_dir / r.image
            for r in records
            if r.image
        ]
        return paths, records
    if records is not None and any(r.image for r in records):
        raise InputError(f"{prompts}: either every manifest line has 'image' or none has")
    paths = list_images(images_dir)
    if not paths:
        raise InputError(f"no PNG/JPEG images in {images_dir}")
    if records is None:
        return paths, [PromptRecord(prompt="") for _ in paths]
    if len(records) != len(paths):
        raise InputError(
            f"{len(paths)} images in {images_dir} but {len(records)} prompts in {prompts}; "
            "give one prompt per image in sorted file-name order, or a JSONL manifest with "
            "'image' and 'prompt' keys"
        )
    return paths, records


def score(
    rewards: str = typer.Option(..., "--rewards", "-r", help="Reward spec, e.g. 'ocr,jpeg=0.5'."),
    images: Path = typer.Option(..., "--images", "-i", help="Folder of PNG/JPEG images."),
    prompts: Path = typer.Option(
        None, "--prompts", "-p", help="Text file (one prompt per image) or JSONL manifest."
    ),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per image per line."),
    device: str = typer.Option("cpu", help="Torch device for the reward models."),
    batch_size: int = typer.Option(16, help="Images per reward forward pass."),
    normalization: str = typer.Option("none", help=f"One of {', '.join(NORMALIZATIONS)}."),
) -> None:
    """Score images against prompts with one or more rewards."""
    if batch_size < 1:
        raise UsageError("--batch-size must be >= 1")
    validate_score(rewards, images, prompts, device)
    composer = RewardComposer(
        rewards,
        normalization=normalization,  # type: ignore[arg-type]
        reward_kwargs={"device": device, "batch_size": batch_size},
    )
    paths, records = _pair_images_and_prompts(images, prompts)
    pil_images = [load_image(p) for p in paths]
    texts = [r.prompt for r in records]
    metadata = [r.metadata for r in records]
    result = composer(pil_images, texts, metadata)
    if as_json:
        for i, path in enumerate(paths):
            row = {
                "image": str(path),
                "prompt": texts[i],
                "scores": {k: float(v[i]) for k, v in result.components.items()},
                "total": float(result.total[i]),
            }
            typer.echo(json.dumps(row))
        return
    table = Table(title=f"scores ({len(paths)} images)")
    table.add_column("image")
    for key in result.components:
        table.add_column(key, justify="right")
    table.add_column("total", justify="right")
    for i, path in enumerate(paths):
        values = [f"{float(v[i]):.4f}" for v in result.components.values()]
        table.add_row(path.name, *values, f"{float(result.total[i]):.4f}")
    means = [f"{float(v.mean()):.4f}" for v in result.components.values()]
    table.add_row("[bold]mean[/]", *means, f"{float(result.total.mean()):.4f}")
    Console().print(table)
