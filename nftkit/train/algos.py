"""The training algorithms `nftkit train --algo` offers: their config and trainer classes."""

from __future__ import annotations

from typing import Any

from nftkit.errors import UsageError
from nftkit.train.grpo import GRPOConfig, GRPOTrainer
from nftkit.train.nft import NFTConfig, NFTTrainer
from nftkit.train.trainer_base import AdapterTrainer

ALGOS: dict[str, tuple[type[Any], type[AdapterTrainer]]] = {
    "nft": (NFTConfig, NFTTrainer),
    "grpo": (GRPOConfig, GRPOTrainer),
}
TITLES = {"nft": "DiffusionNFT", "grpo": "FlowGRPO"}
TrainConfig = NFTConfig | GRPOConfig


def check_algo(name: str) -> str:
    """``name`` when it is a known algorithm, else a one-line UsageError listing them."""
    if name not in ALGOS:
        raise UsageError(f"unknown --algo '{name}'; choose one of: {', '.join(ALGOS)}")
    return name


def make_config(algo: str, options: dict[str, Any]) -> TrainConfig:
    """The algorithm's config from option values (None values ignored, unknown keys rejected)."""
    config_cls = ALGOS[check_algo(algo)][0]
    return config_cls.from_dict({k: v for k, v in options.items() if v is not None})


def trainer_class(algo: str) -> type[AdapterTrainer]:
    """The trainer class of ``algo``."""
    return ALGOS[check_algo(algo)][1]


def algo_of(config: TrainConfig) -> str:
    """The algorithm a config object belongs to."""
    for name, (config_cls, _) in ALGOS.items():
        if isinstance(config, config_cls):
            return name
    raise TypeError(f"not a training config: {type(config).__name__}")
