"""The official SD3 recipe on the tiny random pipeline (issue 18, items 2-4).

Sampling (training-time and eval) runs on the scheduler's sigmas and feeds the transformer
int(1000 * sigma) as torch.long, like DiffusionNFT's pipeline (torch.full(..., sigma * 1000,
dtype=torch.long)); training forwards get the float 1000 * sigma; T5 encodes 128 tokens.
Expected values come from the formula (REFERENCE.md section 7), see tests/test_time_grid.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from nftkit.compose import RewardComposer
from nftkit.policies.sd3 import SD3Policy
from nftkit.policies.tiny_sd3 import build_tiny_sd3
from nftkit.train.nft import NFTConfig, NFTTrainer, PromptItem
from tests.sd3_helpers import PROMPTS
from tests.test_time_grid import formula_grid


def sampling_timesteps(num_steps: int) -> list[int]:
    """trunc(float32(sigma) * 1000) for the shift-3 grid, without the final 0."""
    sig = formula_grid(num_steps, 3.0)[:-1].astype(np.float32)
    return [int(v) for v in (sig * np.float32(1000.0)).astype(np.float32)]


@contextmanager
def transformer_timesteps(policy: SD3Policy) -> Iterator[list[tuple[torch.dtype, list[float]]]]:
    """Record (dtype, values) of every timestep the transformer receives."""
    calls: list[tuple[torch.dtype, list[float]]] = []

    def hook(module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        ts = kwargs["timestep"]
        calls.append((ts.dtype, ts.tolist()))

    handle = policy.model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield calls
    finally:
        handle.remove()


@contextmanager
def t5_lengths(policy: SD3Policy) -> Iterator[list[int]]:
    """Record the token length of every T5 call."""
    lengths: list[int] = []

    def hook(module: Any, args: Any, kwargs: dict[str, Any]) -> None:
        ids = args[0] if args else kwargs["input_ids"]
        lengths.append(int(ids.shape[1]))

    handle = policy.pipeline.text_encoder_3.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield lengths
    finally:
        handle.remove()


@pytest.fixture(scope="module")
def policy() -> SD3Policy:
    return SD3Policy(build_tiny_sd3())


def test_the_grid_is_the_scheduler_s(policy: SD3Policy) -> None:
    np.testing.assert_allclose(policy.time_grid(10).numpy(), formula_grid(10, 3.0), atol=1e-6)


def test_sampling_feeds_the_transformer_integer_timesteps(policy: SD3Policy) -> None:
    with transformer_timesteps(policy) as calls:
        policy.sample(
            ["a red cube"],
            torch.Generator().manual_seed(0),
            steps=4,
            solver="euler",
            adapter=None,
            return_latents=True,
        )
    assert [dtype for dtype, _ in calls] == [torch.long] * 4
    assert [values[0] for _, values in calls] == sampling_timesteps(4)


def test_training_forwards_keep_the_float_timestep(policy: SD3Policy) -> None:
    cond = policy.encode_prompts(["a red cube"])
    x = torch.randn(1, *policy.latent_shape)
    t = torch.tensor([0.9587], dtype=torch.float32)
    with transformer_timesteps(policy) as calls, torch.no_grad():
        policy.velocity(x, t, cond, adapter=None)
        policy.velocity(x, t, cond, adapter=None, integer_timestep=True)
    assert calls[0][0] == torch.float32 and calls[0][1][0] == pytest.approx(958.7, abs=1e-3)
    assert calls[1] == (torch.long, [958])


def test_eval_generation_uses_the_grid_and_integer_timesteps(policy: SD3Policy) -> None:
    from nftkit.eval import EvalSettings, generate

    with transformer_timesteps(policy) as calls:
        generate(
            policy,
            ["a blue car"],
            [7],
            EvalSettings(steps=3, solver="euler", batch_size=1),
            adapter=None,
        )
    assert [values[0] for _, values in calls] == sampling_timesteps(3)
    assert {dtype for dtype, _ in calls} == {torch.long}


def test_t5_encodes_128_tokens_by_default_and_is_configurable(policy: SD3Policy) -> None:
    with t5_lengths(policy) as lengths:
        cond = policy.encode_prompts(["a green sofa"])
    assert lengths == [128]
    assert cond["prompt_embeds"].shape[1] == policy.pipeline.tokenizer_max_length + 128
    short = SD3Policy(policy.pipeline, max_sequence_length=64)
    with t5_lengths(short) as lengths:
        short.encode_prompts(["a green sofa"])
    assert lengths == [64]


def test_tiny_sd3_trains_on_the_scheduler_grid_with_128_t5_tokens(tmp_path: Path) -> None:
    policy = SD3Policy(build_tiny_sd3())
    config = NFTConfig.from_dict(
        dict(
            epochs=1,
            prompts_per_epoch=2,
            group_size=2,
            num_steps=3,
            sample_batch_size=4,
            train_batch_size=2,
            samples_per_step=4,
            max_train_timesteps=2,
            lora_rank=2,
            lora_alpha=4,
            lr=1e-2,
            seed=2,
            checkpoint_every=1,
        )
    )
    prompts = [PromptItem(p) for p in PROMPTS]
    trainer = NFTTrainer(policy, RewardComposer("jpeg"), prompts, config, tmp_path / "run")
    np.testing.assert_allclose(trainer.ts.numpy(), formula_grid(3, 3.0), atol=1e-6)
    with transformer_timesteps(policy) as calls, t5_lengths(policy) as lengths:
        record = trainer.run_epoch()
    assert lengths and set(lengths) == {128}
    sampled = [c for c in calls if c[0] == torch.long]
    trained = [c for c in calls if c[0] != torch.long]
    assert [values[0] for _, values in sampled] == sampling_timesteps(3)  # one batch of 4
    grid_float = {float(np.float32(s) * np.float32(1000.0)) for s in formula_grid(3, 3.0)[:-1]}
    # 2 micro-batches x 2 timesteps x (old, reference, trained) forwards, all at grid points
    assert len(trained) == 12
    assert all(min(abs(v - g) for g in grid_float) < 1e-2 for _, values in trained for v in values)
    assert trainer.config.grad_accum == 2 and trainer.global_step == 1 and record["step"] == 1
