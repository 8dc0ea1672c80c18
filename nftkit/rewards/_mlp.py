"""The five-layer linear head shared by the LAION aesthetic predictor and ImageReward.

Layout (keys ``layers.{0,2,4,6,7}``): Linear(d, 1024), Dropout(0.2), Linear(1024, 128),
Dropout(0.2), Linear(128, 64), Dropout(0.1), Linear(64, 16), Linear(16, 1); no activations.
Layer widths are read from the state dict, so smaller test checkpoints load the same way.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import torch
from torch import nn

from nftkit.errors import MissingWeightsError

LINEAR_INDICES = (0, 2, 4, 6, 7)
"""Positions of the Linear layers inside ``layers`` (the others are Dropout)."""
REFERENCE_WIDTHS = (1024, 128, 64, 16, 1)
"""Output widths of the five linear layers in the released heads."""
_DROPOUTS = {1: 0.2, 3: 0.2, 5: 0.1}


class LinearHead(nn.Module):
    """Linear(d, h1) -> ... -> Linear(h4, 1) with dropouts between, as in the released heads."""

    def __init__(self, widths: tuple[int, ...]) -> None:
        super().__init__()
        if len(widths) != 6:
            raise ValueError(f"the head has five linear layers, got widths {widths}")
        pairs = iter(itertools.pairwise(widths))
        modules: list[nn.Module] = []
        for position in range(8):
            if position in _DROPOUTS:
                modules.append(nn.Dropout(_DROPOUTS[position]))
            else:
                modules.append(nn.Linear(*next(pairs)))
        self.layers = nn.Sequential(*modules)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """[B, d] -> [B, 1]."""
        return self.layers(x)


def head_from_state_dict(state: Mapping[str, torch.Tensor], prefix: str, where: str) -> LinearHead:
    """Build the head from ``state`` (keys ``{prefix}layers.N.weight``) and load it strictly."""
    try:
        weights = [state[f"{prefix}layers.{i}.weight"] for i in LINEAR_INDICES]
    except KeyError as exc:
        raise MissingWeightsError(
            f"{where} does not hold the expected MLP head: missing key {exc.args[0]!r}"
        ) from exc
    widths = (int(weights[0].shape[1]), *(int(w.shape[0]) for w in weights))
    head = LinearHead(widths)
    own = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(f"{prefix}layers.")}
    try:
        head.load_state_dict(own, strict=True)
    except RuntimeError as exc:
        raise MissingWeightsError(f"{where}: MLP head does not match its layout ({exc})") from exc
    return head.eval()
