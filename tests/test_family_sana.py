"""The ``sana`` family on a tiny random-init SanaPipeline: against diffusers' own pipeline."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from nftkit.policies.loading import describe_model, load_policy
from nftkit.policies.sana import SanaPolicy
from tests.family_helpers import PROMPTS, TINY_NFT, invoke


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("sana")
    (root / "prompts.txt").write_text("\n".join(PROMPTS) + "\n")
    invoke("debug", "make-tiny", "--family", "sana", str(root / "tiny"))
    return root


@pytest.fixture(scope="module")
def policy(root: Path) -> SanaPolicy:
    loaded = load_policy(root / "tiny")
    assert isinstance(loaded, SanaPolicy)
    return loaded


@torch.no_grad()
def _pipeline_velocity(pipe: Any, x: torch.Tensor, sigma: float, cond: dict) -> Any:
    """The transformer called as SanaPipeline calls it (integer timestep = int(1000 sigma))."""
    return pipe.transformer(
        x,
        encoder_hidden_states=cond["prompt_embeds"],
        encoder_attention_mask=cond["prompt_attention_mask"],
        timestep=torch.tensor([float(int(1000 * sigma))]),
        return_dict=False,
    )[0]


def test_resolves_and_grid_is_the_flow_shift_formula(root: Path, policy: SanaPolicy) -> None:
    assert describe_model(root / "tiny") == {"family": "sana", "base": str(root / "tiny")}
    n = 4
    s = 1 - np.linspace(1, 1 / 1000, n + 1)
    expected = [*np.flip(3 * s / (1 + 2 * s))[:-1], 0.0]  # flow_shift 3, descending
    grid = policy.time_grid(n)
    assert grid.dtype == torch.float64 and grid.shape == (n + 1,)
    assert torch.allclose(grid, torch.tensor(expected, dtype=torch.float64), atol=1e-6)


@pytest.mark.parametrize("steps", [1, 2])
def test_sampler_matches_sana_pipeline(policy: SanaPolicy, steps: int) -> None:
    pipe = policy.pipeline
    theirs = pipe(
        prompt=PROMPTS[:2],
        height=32,
        width=32,
        num_inference_steps=steps,
        guidance_scale=1.0,
        generator=torch.Generator().manual_seed(7),
        output_type="latent",
        max_sequence_length=policy.max_sequence_length,
        use_resolution_binning=False,
    ).images
    ours = policy.sample(
        PROMPTS[:2],
        generator=torch.Generator().manual_seed(7),
        steps=steps,
        adapter=None,
        return_latents=True,
    )
    assert theirs.abs().mean() > 0.1
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_integer_timestep_truncates_like_the_pipeline(policy: SanaPolicy) -> None:
    cond = policy.encode_prompts(["a red cube"])
    x = torch.randn(1, *policy.latent_shape, generator=torch.Generator().manual_seed(2))
    sigma = 0.73456
    v_int = policy.velocity(x, torch.tensor([sigma]), cond, adapter=None, integer_timestep=True)
    assert torch.allclose(v_int, _pipeline_velocity(policy.pipeline, x, sigma, cond), atol=1e-6)
    v_float = policy.velocity(x, torch.tensor([sigma]), cond, adapter=None)
    assert not torch.allclose(v_int, v_float, atol=1e-7)


def test_train_export_and_reload_through_diffusers(root: Path) -> None:
    from diffusers import SanaPipeline

    run = root / "nft"
    result = invoke(
        "--db",
        f"sqlite:///{root / 'r.db'}",
        "train",
        "--model",
        str(root / "tiny"),
        "--rewards",
        "jpeg",
        "--prompts",
        str(root / "prompts.txt"),
        "--output",
        str(run),
        "--steps",
        "1",
        "--quiet",
        *TINY_NFT,
    )
    assert json.loads(result.stdout.strip().splitlines()[-1])["optimizer_steps"] == 2
    tuned = load_policy(run)
    cond = tuned.encode_prompts(["a red cube"])
    x = torch.randn(1, *tuned.latent_shape, generator=torch.Generator().manual_seed(1))
    v_tuned = tuned.velocity(x, torch.tensor([0.7]), cond, adapter="default", integer_timestep=True)
    assert (v_tuned - tuned.velocity(x, torch.tensor([0.7]), cond, None, True)).abs().max() > 1e-4
    pipe = SanaPipeline.from_pretrained(root / "tiny")
    pipe.load_lora_weights(run / "lora")
    assert torch.allclose(_pipeline_velocity(pipe, x, 0.7, cond), v_tuned, atol=1e-5)
    invoke("export", str(run), "-o", str(root / "merged"), "--merged", "--dtype", "fp32")
    fused = SanaPipeline.from_pretrained(root / "merged")
    assert torch.allclose(_pipeline_velocity(fused, x, 0.7, cond), v_tuned, atol=1e-4)
