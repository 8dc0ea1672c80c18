"""The ``pickscore`` suite: the 2,048 Pick-a-Pic test captions, scored by a set of rewards.

One image per caption by default; metrics are the mean of each reward over images.
"""

from __future__ import annotations

from nftkit.evaluators.reward_set import RewardSetEvaluator


class PickScoreEvaluator(RewardSetEvaluator):
    """Pick-a-Pic test captions (the Flow-GRPO / DiffusionNFT PickScore split)."""

    name = "pickscore"
    description = "Pick-a-Pic: 2,048 test captions, mean PickScore and the other rewards"
    n_samples = 1
    default_steps = 40
    primary_metric = "pickscore"
