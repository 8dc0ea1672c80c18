"""The ``flux`` family on a tiny random-init FluxPipeline: against diffusers' own pipeline.

Expected values come from FluxPipeline / FlowMatchEulerDiscreteScheduler themselves (same noise,
1-2 steps) and from the published formulas (dynamic shift mu, 2x2 packing).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from nftkit.policies.flux import FluxPolicy, image_ids, pack_latents, unpack_latents
from nftkit.policies.loading import describe_model, load_policy
from tests.family_helpers import PROMPTS, TINY_NFT, invoke


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("flux")
    (root / "prompts.txt").write_text("\n".join(PROMPTS) + "\n")
    invoke("debug", "make-tiny", "--family", "flux", str(root / "dev"))
    invoke("debug", "make-tiny", "--family", "flux", "--variant", "schnell", str(root / "schnell"))
    return root


@pytest.fixture(scope="module")
def policy(root: Path) -> FluxPolicy:
    loaded = load_policy(root / "dev")
    assert isinstance(loaded, FluxPolicy)
    return loaded


@pytest.fixture(scope="module")
def nft_run(root: Path) -> Path:
    out = root / "nft"
    result = invoke(
        "--db",
        f"sqlite:///{root / 'r.db'}",
        "train",
        "--model",
        str(root / "dev"),
        "--rewards",
        "jpeg",
        "--prompts",
        str(root / "prompts.txt"),
        "--output",
        str(out),
        "--steps",
        "1",
        "--quiet",
        *TINY_NFT,
    )
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["epochs"] == 1 and summary["optimizer_steps"] == 2
    return out


@torch.no_grad()
def _pipeline_velocity(pipe: Any, x: torch.Tensor, sigma: torch.Tensor, cond: dict) -> Any:
    """The transformer called as FluxPipeline calls it (timestep = sigma, guidance 3.5)."""
    embeds = cond["prompt_embeds"]
    out = pipe.transformer(
        hidden_states=pipe._pack_latents(x, *x.shape),
        timestep=sigma,
        guidance=torch.full((x.shape[0],), 3.5),
        pooled_projections=cond["pooled_projections"],
        encoder_hidden_states=embeds,
        txt_ids=torch.zeros(embeds.shape[1], 3),
        img_ids=pipe._prepare_latent_image_ids(
            1, x.shape[2] // 2, x.shape[3] // 2, "cpu", torch.float32
        ),
        return_dict=False,
    )[0]
    return pipe._unpack_latents(
        out,
        x.shape[2] * pipe.vae_scale_factor,
        x.shape[3] * pipe.vae_scale_factor,
        pipe.vae_scale_factor,
    )


def test_layout_resolves_by_model_index(root: Path) -> None:
    index = json.loads((root / "dev" / "model_index.json").read_text())
    assert index["_class_name"] == "FluxPipeline"
    for part in ("tokenizer", "tokenizer_2", "text_encoder", "text_encoder_2", "vae"):
        assert (root / "dev" / part).is_dir()
    assert describe_model(root / "dev") == {"family": "flux", "base": str(root / "dev")}


def test_time_grid_is_the_dynamic_shift_formula(policy: FluxPolicy) -> None:
    n = 4
    seq = (policy.latent_shape[1] // 2) * (policy.latent_shape[2] // 2)  # 16 tokens
    mu = 0.5 + (1.15 - 0.5) / (4096 - 256) * (seq - 256)
    expected = [math.exp(mu) / (math.exp(mu) + (1 / s - 1)) for s in np.linspace(1, 1 / n, n)]
    grid = policy.time_grid(n)
    assert grid.dtype == torch.float64 and grid.shape == (n + 1,) and float(grid[-1]) == 0.0
    assert torch.allclose(grid[:-1], torch.tensor(expected, dtype=torch.float64), atol=1e-6)


def test_schnell_has_no_guidance_and_an_unshifted_grid(root: Path) -> None:
    schnell = load_policy(root / "schnell")
    assert not schnell.model.config.guidance_embeds
    expected = [*np.linspace(1, 1 / 4, 4), 0.0]
    assert torch.allclose(
        schnell.time_grid(4), torch.tensor(expected, dtype=torch.float64), atol=1e-6
    )
    cond = schnell.encode_prompts(["a red cube"])
    v = schnell.velocity(torch.randn(1, *schnell.latent_shape), torch.tensor([0.5]), cond, None)
    assert v.shape == (1, *schnell.latent_shape) and torch.isfinite(v).all()


def test_packing_matches_the_pipeline(policy: FluxPolicy) -> None:
    pipe = policy.pipeline
    x = torch.randn(2, 4, 8, 8)
    packed = pack_latents(x)
    assert torch.equal(packed, pipe._pack_latents(x, 2, 4, 8, 8))
    assert torch.equal(unpack_latents(packed, 8, 8), x)
    assert torch.equal(
        unpack_latents(packed, 8, 8), pipe._unpack_latents(packed, 32, 32, pipe.vae_scale_factor)
    )
    ids = image_ids(8, 8, torch.device("cpu"), torch.float32)
    assert torch.equal(ids, pipe._prepare_latent_image_ids(1, 4, 4, "cpu", torch.float32))


@pytest.mark.parametrize("steps", [1, 2])
def test_sampler_matches_flux_pipeline(policy: FluxPolicy, steps: int) -> None:
    """Same noise, same steps: our Euler on time_grid == FluxPipeline (guidance 3.5)."""
    pipe = policy.pipeline
    theirs = pipe(
        prompt=PROMPTS[:2],
        height=32,
        width=32,
        num_inference_steps=steps,
        guidance_scale=3.5,
        generator=torch.Generator().manual_seed(7),
        output_type="latent",
        max_sequence_length=policy.max_sequence_length,
    ).images
    ours = policy.sample(
        PROMPTS[:2],
        generator=torch.Generator().manual_seed(7),
        steps=steps,
        adapter=None,
        return_latents=True,
    )
    assert theirs.abs().mean() > 0.1
    assert torch.allclose(pack_latents(ours), theirs, atol=1e-5)
    assert torch.allclose(pipe.scheduler.sigmas.double(), policy.time_grid(steps), atol=1e-6)


def test_trained_lora_loads_in_flux_pipeline_and_merges(root: Path, nft_run: Path) -> None:
    from diffusers import FluxPipeline

    info = json.loads((nft_run / "nftkit_model.json").read_text())
    assert info["family"] == "flux" and info["global_step"] == 2
    tuned = load_policy(nft_run)
    cond = tuned.encode_prompts(["a red cube"])
    x, t = (
        torch.randn(1, *tuned.latent_shape, generator=torch.Generator().manual_seed(1)),
        torch.tensor([0.7]),
    )
    v_tuned = tuned.velocity(x, t, cond, adapter="default")
    v_base = tuned.velocity(x, t, cond, adapter=None)
    assert (v_tuned - v_base).abs().max() > 1e-4

    pipe = FluxPipeline.from_pretrained(root / "dev")
    pipe.load_lora_weights(nft_run / "lora")
    assert torch.allclose(_pipeline_velocity(pipe, x, t, cond), v_tuned, atol=1e-5)

    merged = root / "merged"
    invoke("export", str(nft_run), "-o", str(merged), "--merged", "--dtype", "fp32")
    fused = FluxPipeline.from_pretrained(merged)
    base = FluxPipeline.from_pretrained(root / "dev")
    name = "transformer_blocks.0.attn.to_q.weight"
    before = dict(base.transformer.named_parameters())[name]
    after = dict(fused.transformer.named_parameters())[name]
    assert (after - before).abs().max() > 1e-6
    assert torch.allclose(_pipeline_velocity(fused, x, t, cond), v_tuned, atol=1e-4)


def test_grpo_step_and_geneval_eval(root: Path, nft_run: Path, shared_data: Path) -> None:
    from nftkit.debug_tiny import make_tiny_weights

    db = f"sqlite:///{root / 'r.db'}"
    result = invoke(
        "--db",
        db,
        "train",
        "--algo",
        "grpo",
        "--model",
        str(root / "dev"),
        "--rewards",
        "jpeg",
        "--prompts",
        str(root / "prompts.txt"),
        "--output",
        str(root / "grpo"),
        "--steps",
        "1",
        "--quiet",
        "--set",
        "prompts_per_epoch=2",
        "--set",
        "group_size=4",
        "--set",
        "num_steps=3",
        "--set",
        "lora_rank=4",
        "--set",
        "seed=5",
    )
    assert json.loads(result.stdout.strip().splitlines()[-1])["optimizer_steps"] == 1
    weights = make_tiny_weights(root / "w", ["geneval"])
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("NFTKIT_WEIGHTS_DIR", str(root / "w"))
        mp.setenv("NFTKIT_CACHE", str(root / "cache"))
        result = invoke(
            "--db",
            db,
            "eval",
            "--model",
            str(nft_run),
            "--suite",
            "geneval",
            "--prompts",
            str(shared_data / "geneval" / "evaluation_metadata.jsonl"),
            "--limit",
            "2",
            "--n-samples",
            "1",
            "--steps",
            "2",
            "--json",
        )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert weights and report["n_images"] == 2 and "overall" in report["metrics"]
