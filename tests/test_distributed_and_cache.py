"""Small units of the SD3 work: process sharding and the prompt-embedding cache."""

from __future__ import annotations

import pytest
import torch

from nftkit.errors import UsageError
from nftkit.policies.prompt_cache import PromptEmbeddingCache
from nftkit.train.distributed import Distributed


def test_shards_cover_the_epoch_in_rank_order() -> None:
    shards = [Distributed(rank=r, world_size=3).shard(12) for r in range(3)]
    assert [list(range(12))[s] for s in shards] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    with pytest.raises(UsageError, match="evenly"):
        Distributed(rank=0, world_size=5).shard(12)
    single = Distributed()
    x = torch.arange(4.0)
    assert single.gather(x) is x and single.wrap(torch.nn.Linear(2, 2)) is None


def test_prompt_cache_encodes_each_prompt_once_and_evicts_lru() -> None:
    calls: list[list[str]] = []

    def encode(prompts: list[str]) -> dict[str, torch.Tensor]:
        calls.append(prompts)
        return {"e": torch.tensor([[float(len(p))] for p in prompts])}

    cache = PromptEmbeddingCache(max_items=2)
    out = cache.get_batch(["a", "bb", "a"], encode)
    assert calls == [["a", "bb"]] and out["e"].flatten().tolist() == [1.0, 2.0, 1.0]
    cache.get_batch(["a"], encode)  # hit: "a" becomes most recent
    cache.get_batch(["ccc"], encode)  # evicts "bb"
    assert calls[-1] == ["ccc"] and len(cache) == 2
    cache.get_batch(["bb", "a"], encode)
    assert calls[-1] == ["bb"] and cache.hits == 3
