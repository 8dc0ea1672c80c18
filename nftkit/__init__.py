"""nftkit: modular reward evaluation for text-to-image models, with a DiffusionNFT backend."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("nftkit")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
