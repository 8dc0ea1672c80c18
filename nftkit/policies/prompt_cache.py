"""A bounded least-recently-used cache of per-prompt embeddings."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence

import torch

Embeddings = dict[str, torch.Tensor]


class PromptEmbeddingCache:
    """Maps a prompt to its embeddings (each tensor without the batch dimension, on CPU).

    ``get_batch(prompts, encode)`` encodes only the prompts not cached yet (in one call) and
    returns the stacked batch. ``max_items=0`` disables caching.
    """

    def __init__(self, max_items: int = 4096) -> None:
        self.max_items = max_items
        self._items: OrderedDict[str, Embeddings] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        """Drop every entry."""
        self._items.clear()

    def get_batch(
        self, prompts: Sequence[str], encode: Callable[[list[str]], Embeddings]
    ) -> Embeddings:
        """Stacked embeddings for ``prompts`` (CPU), encoding the missing ones."""
        missing = list(dict.fromkeys(p for p in prompts if p not in self._items))
        fresh: dict[str, Embeddings] = {}
        if missing:
            encoded = encode(missing)
            for i, prompt in enumerate(missing):
                fresh[prompt] = {k: v[i].detach().to("cpu") for k, v in encoded.items()}
        self.misses += len(missing)
        self.hits += len(prompts) - len(missing)
        rows = [fresh.get(p) or self._items[p] for p in prompts]
        for prompt, value in fresh.items():
            self._store(prompt, value)
        for prompt in prompts:
            if prompt in self._items:
                self._items.move_to_end(prompt)
        return {k: torch.stack([row[k] for row in rows]) for k in rows[0]}

    def _store(self, prompt: str, value: Embeddings) -> None:
        if self.max_items <= 0:
            return
        self._items[prompt] = value
        while len(self._items) > self.max_items:
            self._items.popitem(last=False)
