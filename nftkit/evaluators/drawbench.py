"""The ``drawbench`` suite: DrawBench's 200 prompts scored by a set of reward models.

5 images per prompt by default, the 1,000 images of DiffusionNFT's test file (each prompt
listed 5 times); metrics are the mean of each reward over images.
"""

from __future__ import annotations

from nftkit.evaluators.reward_set import RewardSetEvaluator


class DrawBenchEvaluator(RewardSetEvaluator):
    """DrawBench (Saharia et al. 2022) prompts, model-based metrics."""

    name = "drawbench"
    description = "DrawBench: 200 prompts, mean ImageReward/PickScore/Aesthetic/CLIP/HPSv2.1"
    n_samples = 5
    default_steps = 40
    primary_metric = "imagereward"
