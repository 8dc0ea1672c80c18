"""The Stable Diffusion 3 policy on the offline tiny pipeline: layout, conventions, LoRA, cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from nftkit.errors import MissingWeightsError
from nftkit.policies.loading import describe_model
from nftkit.policies.sd3 import SD3_LORA_TARGETS, SD3Policy
from nftkit.train.lora import adapter_parameters, add_nft_adapters
from nftkit.train.scheduler_sampling import scheduler_sample
from tests.conftest import run_cli


@pytest.fixture(scope="module")
def tiny_sd3(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny pipeline written by the CLI command."""
    path = tmp_path_factory.mktemp("tiny-sd3") / "pipe"
    result = run_cli("debug", "make-tiny-sd3", str(path))
    assert result.returncode == 0, result.stderr
    return path


@pytest.fixture(scope="module")
def policy(tiny_sd3: Path) -> SD3Policy:
    return SD3Policy.from_pretrained(tiny_sd3)


def test_tiny_pipeline_has_every_component_in_diffusers_layout(tiny_sd3: Path) -> None:
    from diffusers import StableDiffusion3Pipeline

    index = json.loads((tiny_sd3 / "model_index.json").read_text())
    expected = {
        "transformer",
        "vae",
        "scheduler",
        "text_encoder",
        "text_encoder_2",
        "text_encoder_3",
        "tokenizer",
        "tokenizer_2",
        "tokenizer_3",
    }
    assert expected <= set(index)
    for name in expected - {"scheduler"} - {n for n in expected if n.startswith("tokenizer")}:
        assert any((tiny_sd3 / name).glob("*.safetensors")), name
    pipe = StableDiffusion3Pipeline.from_pretrained(tiny_sd3)
    assert type(pipe.text_encoder).__name__ == "CLIPTextModelWithProjection"
    assert type(pipe.text_encoder_3).__name__ == "T5EncoderModel"
    ids = pipe.tokenizer(["a photo of a red cube"]).input_ids[0]
    assert ids[0] == pipe.tokenizer.bos_token_id and ids[-1] == pipe.tokenizer.eos_token_id
    assert pipe.tokenizer_3(["a red cube"]).input_ids[0][-1] == pipe.tokenizer_3.eos_token_id
    out = pipe("a red cube", num_inference_steps=2, guidance_scale=1.0, output_type="pt")
    assert out.images.shape == (1, 3, 64, 64)


def test_velocity_matches_the_pipeline_transformer_at_sigma(policy: SD3Policy) -> None:
    pipe = policy.pipeline
    prompts = ["a red cube", "two dogs"]
    # 128 T5 tokens, DiffusionNFT's max_sequence_length (the policy's default)
    embeds, _, pooled, _ = pipe.encode_prompt(
        prompts, None, None, do_classifier_free_guidance=False, max_sequence_length=128
    )
    cond = policy.encode_prompts(prompts)
    assert torch.equal(cond["prompt_embeds"], embeds)
    x = torch.randn(2, *policy.latent_shape, generator=torch.Generator().manual_seed(0))
    sigma = torch.tensor([0.8, 0.3])
    with torch.no_grad():
        ours = policy.velocity(x, sigma, cond, adapter=None)
        theirs = pipe.transformer(
            hidden_states=x,
            timestep=sigma * 1000,
            encoder_hidden_states=embeds,
            pooled_projections=pooled,
        ).sample
        wrong = pipe.transformer(
            hidden_states=x, timestep=sigma, encoder_hidden_states=embeds, pooled_projections=pooled
        ).sample
    assert ours.dtype == torch.float32
    assert torch.allclose(ours, theirs, atol=1e-6)
    assert not torch.allclose(ours, wrong, atol=1e-4)  # the 1000x scale matters


def test_scheduler_sampling_reproduces_the_pipeline(policy: SD3Policy) -> None:
    pipe = policy.pipeline
    prompts = ["a red cube", "a blue car"]
    x_T = torch.randn(2, *policy.latent_shape, generator=torch.Generator().manual_seed(1))
    expected = pipe(
        prompt=prompts,
        latents=x_T.clone(),
        num_inference_steps=4,
        guidance_scale=1.0,
        output_type="latent",
        max_sequence_length=128,
    ).images
    cond = policy.encode_prompts(prompts)
    ours = scheduler_sample(lambda x, t: policy.velocity(x, t, cond, None), x_T, pipe.scheduler, 4)
    assert torch.allclose(ours, expected, atol=1e-5)
    images = policy.decode(ours)
    assert images.shape == (2, 3, 64, 64) and images.min() >= 0.0 and images.max() <= 1.0


def test_lora_targets_adapters_and_prompt_cache(tiny_sd3: Path) -> None:
    policy = SD3Policy.from_pretrained(tiny_sd3, gradient_checkpointing=True)
    add_nft_adapters(policy.model, policy.lora_targets, rank=4, alpha=8)
    params = adapter_parameters(policy.model, "default")
    # 2 blocks x 8 projections x (A, B) minus the last block's to_add_out (context_pre_only)
    assert len(params) == 30 and all("attn2" not in k for k in params)
    assert {k.rsplit(".lora_", 1)[0].split("attn.", 1)[1] for k in params} == {
        t.split("attn.", 1)[1] for t in SD3_LORA_TARGETS
    }
    with torch.no_grad():
        for key, p in params.items():
            if "lora_B" in key:
                p.normal_(0.0, 0.2)
    cond = policy.encode_prompts(["a red cube"])
    assert policy.cache.misses == 1
    cond_again = policy.encode_prompts(["a red cube"])
    assert policy.cache.hits == 1 and torch.equal(
        cond["prompt_embeds"], cond_again["prompt_embeds"]
    )
    x, t = torch.randn(1, *policy.latent_shape), torch.tensor([0.5])
    with torch.no_grad():
        base = policy.model(
            hidden_states=x,
            timestep=t * 1000,
            return_dict=False,
            encoder_hidden_states=cond["prompt_embeds"],
            pooled_projections=cond["pooled_projections"],
        )[0]
        v_none = policy.velocity(x, t, cond, adapter=None)
        v_old = policy.velocity(x, t, cond, adapter="old")
    v_default = policy.velocity(x, t, cond, adapter="default")
    assert torch.allclose(v_none, v_old, atol=1e-6)  # "old" starts at B = 0
    assert torch.allclose(base, v_default, atol=1e-6)  # resting state: the trained adapter
    assert not torch.allclose(v_default, v_none, atol=1e-4)
    v_default.square().mean().backward()  # through gradient checkpointing
    assert all(p.grad is not None for p in params.values())


def test_model_names_resolve_to_sd3(tiny_sd3: Path) -> None:
    assert describe_model(tiny_sd3) == {"family": "sd3", "base": str(tiny_sd3)}
    hub = "stabilityai/stable-diffusion-3.5-medium"
    assert describe_model(hub) == {"family": "sd3", "base": hub}
    with pytest.raises(MissingWeightsError):
        SD3Policy.from_pretrained(tiny_sd3 / "transformer")


def test_missing_hub_weights_offline_is_one_clear_line(tmp_path: Path) -> None:
    env = {"HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    result = run_cli(
        "train",
        "--model",
        "stabilityai/stable-diffusion-3.5-medium",
        "--rewards",
        "jpeg",
        "--prompts",
        "x.txt",
        "--output",
        str(tmp_path / "o"),
        "--quiet",
        env=env,
    )
    assert result.returncode == 1
    message = result.stderr.strip()
    assert message.count("\n") == 0
    assert str(tmp_path / "hf") in message and "HF_HUB_OFFLINE" in message
    assert "make-tiny-sd3" in message
