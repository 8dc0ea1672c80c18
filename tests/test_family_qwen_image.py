"""The ``qwen-image`` family on a tiny random-init QwenImagePipeline, against the pipeline."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from nftkit.policies.flux import pack_latents
from nftkit.policies.loading import describe_model, load_policy
from nftkit.policies.qwen_image import QwenImagePolicy
from tests.family_helpers import PROMPTS, invoke
from tests.family_helpers import TINY_NFT as FAMILY_TINY_NFT

TINY_NFT = [*FAMILY_TINY_NFT, "--set", "policy.resolution=32"]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("qwen")
    (root / "prompts.txt").write_text("\n".join(PROMPTS) + "\n")
    invoke("debug", "make-tiny", "--family", "qwen-image", str(root / "tiny"))
    return root


@pytest.fixture(scope="module")
def policy(root: Path) -> QwenImagePolicy:
    loaded = load_policy(root / "tiny", resolution=32)
    assert isinstance(loaded, QwenImagePolicy)
    return loaded


@torch.no_grad()
def _pipeline_velocity(pipe: Any, x: torch.Tensor, sigma: float, prompt: str) -> Any:
    """The transformer called as QwenImagePipeline calls it for one prompt (no padding)."""
    embeds, mask = pipe.encode_prompt([prompt], device="cpu", max_sequence_length=48)
    out = pipe.transformer(
        hidden_states=pipe._pack_latents(x, *x.shape),
        timestep=torch.tensor([sigma]),
        guidance=None,
        encoder_hidden_states_mask=mask,
        encoder_hidden_states=embeds,
        img_shapes=[[(1, x.shape[2] // 2, x.shape[3] // 2)]],
        return_dict=False,
    )[0]
    return out


def test_resolves_and_grid_is_shift_plus_terminal_stretch(
    root: Path, policy: QwenImagePolicy
) -> None:
    assert describe_model(root / "tiny") == {"family": "qwen-image", "base": str(root / "tiny")}
    n, seq = 4, 16
    mu = 0.5 + (0.9 - 0.5) / (8192 - 256) * (seq - 256)
    shifted = np.array(
        [math.exp(mu) / (math.exp(mu) + (1 / s - 1)) for s in np.linspace(1, 1 / n, n)]
    )
    scale = (1 - shifted[-1]) / (1 - 0.02)  # shift_terminal 0.02
    expected = [*(1 - (1 - shifted) / scale), 0.0]
    assert torch.allclose(
        policy.time_grid(n), torch.tensor(expected, dtype=torch.float64), atol=1e-6
    )
    with pytest.raises(ValueError, match="more steps"):
        policy.time_grid(1)  # the stretched 1-step grid is 0/0 in the scheduler itself


@pytest.mark.parametrize("steps", [2, 3])
def test_sampler_matches_qwen_image_pipeline(policy: QwenImagePolicy, steps: int) -> None:
    pipe = policy.pipeline
    theirs = pipe(
        prompt=PROMPTS[:2],
        height=32,
        width=32,
        num_inference_steps=steps,
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


def test_train_export_and_reload_through_diffusers(root: Path) -> None:
    from diffusers import QwenImagePipeline

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
    tuned = load_policy(run, resolution=32)
    cond = tuned.encode_prompts(["a red cube"])  # padded to 48 tokens with its mask
    x = torch.randn(1, *tuned.latent_shape, generator=torch.Generator().manual_seed(1))
    t = torch.tensor([0.7])
    v_tuned = tuned.velocity(x, t, cond, adapter="default")
    assert (v_tuned - tuned.velocity(x, t, cond, adapter=None)).abs().max() > 1e-4
    pipe = QwenImagePipeline.from_pretrained(root / "tiny")
    pipe.load_lora_weights(run / "lora")
    theirs = _pipeline_velocity(pipe, x, 0.7, "a red cube")
    assert torch.allclose(theirs, pack_latents(v_tuned), atol=1e-5)
    invoke("export", str(run), "-o", str(root / "merged"), "--merged", "--dtype", "fp32")
    fused = QwenImagePipeline.from_pretrained(root / "merged")
    assert torch.allclose(
        _pipeline_velocity(fused, x, 0.7, "a red cube"), pack_latents(v_tuned), atol=1e-4
    )
