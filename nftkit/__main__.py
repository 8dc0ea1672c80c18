"""``python -m nftkit`` (and ``accelerate launch -m nftkit``) runs the CLI."""

from nftkit.cli.main import run

run()
