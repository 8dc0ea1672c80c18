"""``nftkit debug ...``: developer tools (tiny offline checkpoints for tests and local runs)."""

from __future__ import annotations

from pathlib import Path

import typer

debug_app = typer.Typer(
    help="Developer tools: tiny random-init checkpoints in the real on-disk formats.",
    no_args_is_help=True,
)


@debug_app.command("make-tiny-sd3")
def make_tiny_sd3(
    output: Path = typer.Argument(..., help="Folder to write the diffusers pipeline into."),
    image_size: int = typer.Option(64, help="Image size in pixels (a multiple of 16)."),
    layers: int = typer.Option(2, help="Transformer blocks."),
    seed: int = typer.Option(0, help="Random seed of the weights."),
) -> None:
    """Write a tiny random-init Stable Diffusion 3 pipeline (all components, offline)."""
    from nftkit.policies.tiny_sd3 import TinySD3Config, save_tiny_sd3

    if output.exists() and any(output.iterdir()):
        from nftkit.errors import UsageError

        raise UsageError(f"{output} is not empty; choose a new folder")
    config = TinySD3Config(image_size=image_size, num_layers=layers, seed=seed)
    save_tiny_sd3(output, config)
    typer.echo(str(output))


@debug_app.command("make-tiny")
def make_tiny(
    output: Path = typer.Argument(..., help="Folder to write the diffusers pipeline into."),
    family: str = typer.Option(..., "--family", help="Model family, e.g. sd3, flux, sana."),
    variant: str = typer.Option(None, "--variant", help="Family variant, e.g. flux: dev, schnell."),
    seed: int = typer.Option(0, help="Random seed of the weights."),
) -> None:
    """Write a tiny random-init pipeline of a model family in its real diffusers layout."""
    from nftkit.errors import UsageError
    from nftkit.policies.families import family_class

    cls = family_class(family)
    builder = getattr(cls, "make_tiny", None)
    if builder is None:
        raise UsageError(f"family '{family}' has no tiny builder")
    if output.exists() and any(output.iterdir()):
        raise UsageError(f"{output} is not empty; choose a new folder")
    builder(output, seed=seed, **({"variant": variant} if variant else {}))
    typer.echo(str(output))


@debug_app.command("make-tiny-weights")
def make_tiny_weights_command(
    output: Path = typer.Argument(..., help="Weights directory to write DIR/<reward>/ into."),
    only: str = typer.Option(None, "--only", help="Comma-separated rewards (default: all)."),
) -> None:
    """Write tiny random-init checkpoints of every model reward, as --weights-dir expects."""
    from nftkit.debug_tiny import TINY_BUILDERS, make_tiny_weights
    from nftkit.errors import UsageError

    names = [n.strip() for n in only.split(",") if n.strip()] if only else None
    unknown = [n for n in names or [] if n not in TINY_BUILDERS]
    if unknown:
        raise UsageError(f"no tiny checkpoint for {unknown}; choose from {sorted(TINY_BUILDERS)}")
    for name, folder in make_tiny_weights(output, names).items():
        typer.echo(f"{name}\t{folder}")
