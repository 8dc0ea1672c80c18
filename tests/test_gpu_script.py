"""The GPU readiness script (benchmarks/gpu/) on the CPU: its dry run end to end for three parts,
the report, the device install's entry points, and the real-size configs and checkpoint writers.
"""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.conftest import REPO_ROOT

GPU_DIR = REPO_ROOT / "benchmarks" / "gpu"


@pytest.fixture
def gpu_modules(monkeypatch: pytest.MonkeyPatch) -> Path:
    """benchmarks/gpu on sys.path (its modules import each other as scripts do)."""
    monkeypatch.syspath_prepend(str(GPU_DIR))
    return GPU_DIR


def _finite_positive(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value) and value > 0


FAMILIES = ("sd3.5-large", "flux.1-dev", "qwen-image", "sana-1.6b")


def test_dry_run_of_three_parts_writes_json_and_markdown(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [
            "bash",
            str(GPU_DIR / "run.sh"),
            "--dry-run",
            str(out),
            "sd3-train",
            "families",
            "reward-aesthetic",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=400,
        cwd=REPO_ROOT,
    )
    log = (out / "run.log").read_text() if (out / "run.log").is_file() else ""
    assert proc.returncode == 0, proc.stdout[-2000:] + log[-3000:]
    parts = json.loads((out / "results.json").read_text())
    family_parts = {f"family-{name}" for name in FAMILIES}
    assert set(parts) == {"run", "sd3-train", "families", "reward-aesthetic"} | family_parts, log[
        -3000:
    ]
    assert parts["run"]["settings"]["dry_run"] is True
    train = parts["sd3-train"]
    assert train["_status"]["status"] == "ok", log[-3000:]
    assert train["model"]["batch"] == 2 and train["model"]["trained_timesteps"] == 2
    flops = train["flops"]
    assert _finite_positive(flops["step_tflop"]) and _finite_positive(flops["forward_tflop"])
    # LoRA on a frozen base: per trained timestep the old and reference forwards, the trained
    # forward and its backward (activation gradients only) = about 4 forwards, a bit less
    # because nothing upstream of the first LoRA layer needs gradients.
    per_timestep = flops["step_over_forward"] / train["model"]["trained_timesteps"]
    assert 3.0 <= per_timestep <= 4.5, flops
    for key in ("checkpointing_off", "checkpointing_on"):
        row = train[key]
        assert _finite_positive(row["seconds_per_step"])
        assert row["achieved_tflops"] == pytest.approx(
            flops["step_tflop"] / row["seconds_per_step"], rel=1e-3
        )
        assert row["mfu"] is None  # no peak is claimed for a CPU
    aesthetic = parts["reward-aesthetic"]
    assert aesthetic["_status"]["status"] == "ok"
    for batch in (2, 4):
        row = aesthetic[f"batch_{batch}"]
        assert row["batch"] == batch and row["scores_finite"] is True
        for key in ("images_per_s", "score_batch_images_per_s", "model_images_per_s"):
            assert _finite_positive(row[key]), row
    lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    assert {"part", "key", "data"} <= set(lines[0])
    md = (out / "results.md").read_text()
    assert "DRY RUN" in md
    assert "| off | " in md and "| on | " in md
    assert "| aesthetic | 2 | " in md and "| aesthetic | 4 | " in md
    assert "| pickscore | | not run |" in md
    assert parts["families"]["_status"]["status"] == "ok", log[-3000:]
    for name in FAMILIES:
        family = parts[f"family-{name}"]
        assert family["_status"]["status"] == "ok", family
        model, sampling, step = family["model"], family["sampling"], family["nft_step"]
        assert model["lora_rank"] == 32 and model["gradient_checkpointing"] is True
        assert sampling["batch"] == 2 and sampling["steps"] == 10
        assert _finite_positive(sampling["images_per_s"]), sampling
        assert (step["batch"], step["trained_timesteps"]) == (2, 2) and step["loss_finite"]
        assert _finite_positive(step["seconds_per_step"]), step
        assert f"| {name} | {model['preset']} | " in md


def test_report_shows_timeouts_skips_and_missing_parts(tmp_path: Path, gpu_modules: Path) -> None:
    from report import write_report

    rows = [
        {
            "part": "sd3-sample",
            "key": "batch_9",
            "data": {"batch": 9, "images_per_s": 4.5, "peak_memory_gib": 20.0},
        },
        {"part": "sd3-sample", "key": "batch_18", "data": {"batch": 18, "oom": True}},
        {"part": "sd3-sample", "key": "_status", "data": {"status": "ok", "seconds": 50.0}},
        {"part": "reward-ocr", "key": "batch_32", "data": {"batch": 32, "skipped": "does not fit"}},
        {
            "part": "family-qwen-image",
            "key": "_status",
            "data": {"status": "skipped: out of memory (CUDA)", "seconds": 9.0},
        },
        {
            "part": "reward-ocr",
            "key": "_status",
            "data": {"status": "timeout after 30 s", "seconds": 30.0},
        },
    ]
    (tmp_path / "results.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in rows) + "not json\n"
    )
    parts = write_report(tmp_path)
    assert parts["sd3-sample"]["batch_18"] == {"batch": 18, "oom": True}
    md = (tmp_path / "results.md").read_text()
    assert "| 9 | 4.5 | 20 |" in md and "| 18 | OOM |" in md
    assert "| reward-ocr | timeout after 30 s (30 s) |" in md
    assert "| ocr | 32 | does not fit |" in md
    assert "| hpsv2 | | not run |" in md
    assert "| off | not measured |" in md
    assert "| qwen-image | | | | | | | | | | skipped: out of memory (CUDA) |" in md
    assert "| sana-1.6b | | | | | not run |" in md
    assert json.loads((tmp_path / "results.json").read_text()) == parts


def test_device_install_exposes_the_entry_points_of_pyproject(
    tmp_path: Path, gpu_modules: Path
) -> None:
    import tomllib

    from install_meta import write_dist_info

    write_dist_info(tmp_path)
    dists = [d for d in metadata.distributions(path=[str(tmp_path)])]
    assert [d.metadata["Name"] for d in dists] == ["nftkit"]
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    assert dists[0].version == project["version"]
    for group, entries in project["entry-points"].items():
        found = {ep.name: ep.value for ep in dists[0].entry_points if ep.group == group}
        assert found == entries


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_real_size_configs_have_the_published_sizes(gpu_modules: Path) -> None:
    """Built on the meta device; published sizes: SD3.5-Medium transformer 2.47B (its bf16
    checkpoint is 4.94 GB) of which the 384 x 384 x 1536 position table is a buffer here;
    CLIP ViT-H/14 986M; CLIP ViT-L/14 428M; Mask2Former Swin-S 69M; BLIP's ViT-L/16 304M."""
    import open_clip
    from common import load_configs
    from diffusers import SD3Transformer2DModel
    from transformers import (
        CLIPConfig,
        CLIPModel,
        Mask2FormerConfig,
        Mask2FormerForUniversalSegmentation,
        SwinConfig,
    )

    from nftkit.rewards._blip import BertShape, BlipForImageReward, VitShape

    cfg = load_configs()
    rewards = cfg["rewards"]
    with torch.device("meta"):
        sd3 = SD3Transformer2DModel(**cfg["sd3.5-medium"]["transformer"])
        clips = {
            k: CLIPModel(
                CLIPConfig(
                    text_config={**rewards[k]["text"], "vocab_size": rewards[k]["vocab_size"]},
                    vision_config=rewards[k]["vision"],
                    projection_dim=rewards[k]["projection_dim"],
                )
            )
            for k in ("clip_vit_h14", "clip_vit_l14")
        }
        hps = open_clip.CLIP(**open_clip.get_model_config(rewards["hpsv2"]["open_clip_arch"]))
        m2f = rewards["mask2former_swin_s"]
        detector = Mask2FormerForUniversalSegmentation(
            Mask2FormerConfig(
                backbone_config=SwinConfig(**m2f["backbone"]), **m2f["model"], num_labels=80
            )
        )
        ir = rewards["imagereward"]
        blip = BlipForImageReward(VitShape(**ir["vit"]), BertShape.from_config(ir["med_config"]))
    position_table = 384 * 384 * 1536
    assert _count(sd3) + position_table == pytest.approx(2.47e9, rel=0.01)
    assert _count(clips["clip_vit_h14"]) == pytest.approx(986e6, rel=0.01)
    assert _count(hps) == pytest.approx(986e6, rel=0.01)
    assert _count(clips["clip_vit_l14"]) == pytest.approx(428e6, rel=0.01)
    assert _count(detector) == pytest.approx(69e6, rel=0.03)
    vit = blip.visual_encoder
    assert _count(vit) == pytest.approx(304e6, rel=0.01)


def _shrunk(rewards: dict[str, Any]) -> dict[str, Any]:
    """The real reward configs with tiny widths and depths (same keys, same writer code)."""
    small = copy.deepcopy(rewards)
    for key in ("clip_vit_h14", "clip_vit_l14"):
        small[key]["text"].update(
            hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2
        )
        small[key]["vision"].update(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=2,
            patch_size=32,
        )
        small[key]["projection_dim"] = 16
    small["aesthetic_mlp"]["widths"] = [16, 8, 8, 4, 4, 1]
    small["imagereward"]["vit"].update(width=64, depth=1, heads=1, patch=32)
    small["imagereward"]["med_config"].update(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        encoder_width=64,
        max_position_embeddings=64,
    )
    small["imagereward"]["mlp"] = [32, 8, 8, 4, 4, 1]
    m2f = small["mask2former_swin_s"]
    m2f["backbone"].update(
        embed_dim=16, depths=[1, 1, 1, 1], num_heads=[1, 1, 1, 1], window_size=4, image_size=64
    )
    m2f["model"].update(
        feature_size=32,
        mask_feature_size=32,
        hidden_dim=32,
        encoder_feedforward_dim=64,
        encoder_layers=1,
        decoder_layers=2,
        num_attention_heads=2,
        dim_feedforward=64,
        num_queries=8,
    )
    m2f["processor"] = {"size": {"height": 64, "width": 64}, "size_divisor": 32}
    return small


@pytest.mark.parametrize("name", ["pickscore", "clipscore", "aesthetic", "imagereward", "geneval"])
def test_real_size_checkpoint_writers_load_through_the_plugins(
    name: str, tmp_path: Path, gpu_modules: Path
) -> None:
    """Each writer's output (shrunk widths) is what the plugin's own loader reads and scores."""
    from common import load_configs
    from real_weights import WRITERS

    from nftkit.registry import create_reward

    WRITERS[name](tmp_path, _shrunk(load_configs()["rewards"]), torch.device("cpu"))
    reward = create_reward(name, weights_dir=tmp_path, batch_size=2)
    meta = [{"tag": "colors", "include": [{"class": "apple", "count": 1, "color": "red"}]}] * 2
    out = reward(torch.rand(2, 3, 64, 64), ["a red apple"] * 2, meta)
    assert out.scores.shape == (2,) and torch.isfinite(out.scores).all()


def test_counted_sd3_forward_flops_match_the_flop_model(gpu_modules: Path) -> None:
    """torch's FLOP counter on the real-size transformer (meta device) against the model of
    docs/performance.md: 2 FLOPs per weight per token of the stream it acts on, plus 4 T^2 d per
    attention. d = 1536; 1024 image tokens (64 x 64 latents, patch 2) and 77 + 128 text tokens;
    24 joint blocks (the last one's text stream only projects q, k, v), 13 extra image-only
    attentions."""
    from common import load_configs
    from diffusers import SD3Transformer2DModel
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = SD3Transformer2DModel(**load_configs()["sd3.5-medium"]["transformer"])
        x, text = torch.randn(1, 16, 64, 64), torch.randn(1, 205, 4096)
        pooled, t = torch.randn(1, 2048), torch.tensor([500.0])
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(
                hidden_states=x,
                timestep=t,
                encoder_hidden_states=text,
                pooled_projections=pooled,
                return_dict=False,
            )
    d, image, txt = 1536, 1024, 205
    linear = 2 * d * d * (24 * 12 * image + 23 * 12 * txt + 3 * txt + 13 * 4 * image)
    attention = 4 * d * (24 * (image + txt) ** 2 + 13 * image**2)
    assert counter.get_total_flops() == pytest.approx(linear + attention, rel=0.01)


@pytest.mark.slow
def test_real_size_sd3_code_path_runs_on_cpu_with_shrunk_configs(
    tmp_path: Path, gpu_modules: Path
) -> None:
    """The non-dry branch (configs.json's SD3 section, bf16 weights + autocast, batch 9 and 9
    timesteps, MFU) with every width shrunk, through $NFTKIT_GPU_CONFIGS and --device cpu."""
    from common import load_configs

    cfg = load_configs()
    sd3 = cfg["sd3.5-medium"]
    sd3["transformer"].update(
        num_layers=2,
        num_attention_heads=2,
        attention_head_dim=16,
        caption_projection_dim=32,
        dual_attention_layers=[0],
        pos_embed_max_size=32,
        sample_size=16,
        joint_attention_dim=64,
        pooled_projection_dim=32,
    )
    sd3["vae"].update(
        block_out_channels=[8, 8, 8, 8],
        layers_per_block=1,
        norm_num_groups=8,
        mid_block_add_attention=False,
        sample_size=64,
    )
    sd3["text_embeddings"].update(t5_dim=64, clip_projection_dim=16, max_sequence_length=16)
    sd3["resolution"] = 64
    (tmp_path / "configs.json").write_text(json.dumps(cfg))
    out = tmp_path / "out"
    env = {
        **os.environ,
        "NFTKIT_GPU_CONFIGS": str(tmp_path / "configs.json"),
        "OMP_NUM_THREADS": "1",
    }
    proc = subprocess.run(
        [
            sys.executable,
            str(GPU_DIR / "sd3_parts.py"),
            "train",
            "--out",
            str(out),
            "--device",
            "cpu",
            "--budget",
            "200",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=REPO_ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    from report import merge

    train = merge(out / "results.jsonl")["sd3-train"]
    model = train["model"]
    assert (model["dtype"], model["autocast"], model["batch"], model["trained_timesteps"]) == (
        "bfloat16",
        "bfloat16",
        9,
        9,
    )
    assert model["prompt_embeds_shape"] == [77 + 16, 64] and model["pooled_shape"] == [32]
    assert 3.0 <= train["flops"]["step_over_forward"] / 9 <= 4.5
    row = train["checkpointing_off"]
    assert row["mfu"] == pytest.approx(row["achieved_tflops"] / 790.0, rel=1e-3)


# Published transformer sizes: SD3.5-Large 8.1B (its 192 x 192 x 2432 position table is a buffer
# here), FLUX.1-dev 12B (11.9B), Qwen-Image 20B (20.4B), SANA-1.6B 1.6B.
PUBLISHED_PARAMS = {
    "sd3.5-large": 8.1e9,
    "flux.1-dev": 11.9e9,
    "qwen-image": 20.4e9,
    "sana-1.6b": 1.6e9,
}
SD35L_POSITION_TABLE = 192 * 192 * 2432


def test_real_size_families_build_and_run_on_the_meta_device(gpu_modules: Path) -> None:
    """Each configs.json family through family_parts' builder (bf16 default dtype) and its nftkit
    policy on the meta device: the published sizes, the prompt-embedding shapes fit the
    transformer (a velocity of the latent shape) and the VAE decodes at the preset resolution."""
    from common import Settings, load_configs
    from family_parts import NAMES, build_policy, random_embeddings

    from nftkit.train.presets import get_preset

    families = load_configs()["families"]
    assert set(NAMES) <= set(families)
    settings = Settings(Path("."), False, torch.device("meta"), torch.bfloat16, 60.0, 0.0)
    for name in NAMES:
        config = families[name]
        preset = get_preset(config["preset"])
        policy, info = build_policy(config, preset, settings)
        policy.autocast_dtype = None  # autocast has no meta device
        assert info["built_on"] == "meta, bfloat16 default dtype", info
        assert next(policy.model.parameters()).dtype == torch.bfloat16
        extra = SD35L_POSITION_TABLE if name == "sd3.5-large" else 0
        assert info["transformer_params"] + extra == pytest.approx(PUBLISHED_PARAMS[name], rel=0.01)
        size = preset.policy["resolution"]
        assert policy.resolution == size and info["gradient_checkpointing"] is True
        cond = {k: v.to("meta") for k, v in random_embeddings(config, ["a"]).items()}
        x = torch.zeros(1, *policy.latent_shape, device="meta")
        v = policy.velocity(x, torch.full((1,), 0.5, device="meta"), cond, adapter=None)
        assert v.shape == x.shape, name
        assert policy.decode(x).shape == (1, 3, size, size), name


def _shrunk_families(families: dict[str, Any]) -> dict[str, Any]:
    """The real family sections with tiny widths and depths, at 64 px (same keys and code)."""
    small = copy.deepcopy(families)
    small["sd3.5-large"]["transformer"].update(
        num_layers=2,
        num_attention_heads=2,
        attention_head_dim=16,
        caption_projection_dim=32,
        joint_attention_dim=64,
        pooled_projection_dim=32,
        pos_embed_max_size=32,
        sample_size=16,
    )
    small["flux.1-dev"]["transformer"].update(
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=64,
        pooled_projection_dim=32,
        axes_dims_rope=[4, 6, 6],
    )
    for name in ("sd3.5-large", "flux.1-dev"):
        small[name]["text_embeddings"] = {"prompt_embeds": [16, 64], "pooled_projections": [32]}
        small[name]["vae"].update(
            block_out_channels=[8, 8, 8, 8],
            layers_per_block=1,
            norm_num_groups=8,
            mid_block_add_attention=False,
        )
    qwen = small["qwen-image"]
    qwen["transformer"].update(
        num_layers=1,
        attention_head_dim=16,
        num_attention_heads=2,
        joint_attention_dim=64,
        axes_dims_rope=[4, 6, 6],
    )
    qwen["vae"].update(base_dim=8, dim_mult=[1, 1, 1, 1], num_res_blocks=1)
    qwen["text_embeddings"] = {"prompt_embeds": [16, 64]}
    qwen["masks"] = {"prompt_embeds_mask": [16, 8]}
    sana = small["sana-1.6b"]
    sana["transformer"].update(
        num_attention_heads=2,
        attention_head_dim=16,
        num_layers=1,
        num_cross_attention_heads=2,
        cross_attention_head_dim=16,
        cross_attention_dim=32,
        caption_channels=64,
        sample_size=2,
    )
    sana["vae"].update(
        encoder_block_out_channels=[8, 8, 8, 8, 32, 32],
        decoder_block_out_channels=[8, 8, 8, 8, 32, 32],
        encoder_layers_per_block=[1] * 6,
        decoder_layers_per_block=[1] * 6,
        attention_head_dim=4,
    )
    sana["text_embeddings"] = {"prompt_embeds": [16, 64]}
    sana["masks"] = {"prompt_attention_mask": [16, 16]}
    for name, section in small.items():
        if not name.startswith("_"):
            section["resolution"] = 64
    return small


@pytest.mark.slow
def test_real_size_family_code_path_runs_on_cpu_with_shrunk_configs(
    tmp_path: Path, gpu_modules: Path
) -> None:
    """The non-dry branch of family_parts.py (configs.json's families, bf16 default dtype and
    autocast, the presets' batches and 9 trained timesteps) with every width shrunk."""
    from common import load_configs
    from report import merge

    cfg = load_configs()
    cfg["families"] = _shrunk_families(cfg["families"])
    (tmp_path / "configs.json").write_text(json.dumps(cfg))
    env = {
        **os.environ,
        "NFTKIT_GPU_CONFIGS": str(tmp_path / "configs.json"),
        "OMP_NUM_THREADS": "1",
    }
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(GPU_DIR / "family_parts.py"), "--out", str(out), "--device", "cpu"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        cwd=REPO_ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    parts = merge(out / "results.jsonl")
    batches = {
        "sd3.5-large": (4, 2),
        "flux.1-dev": (4, 2),
        "qwen-image": (4, 2),
        "sana-1.6b": (9, 9),
    }
    for name, (sample_batch, train_batch) in batches.items():
        family = parts[f"family-{name}"]
        assert family["_status"]["status"] == "ok", family
        assert family["model"]["built_on"] == "cpu, bfloat16 default dtype"
        assert family["sampling"]["batch"] == sample_batch
        assert (family["nft_step"]["batch"], family["nft_step"]["trained_timesteps"]) == (
            train_batch,
            9,
        )


def test_family_time_boxes_and_skips_are_recorded(tmp_path: Path, gpu_modules: Path) -> None:
    """A family may use what earlier ones left but not the later ones' shares; a spent box
    skips the family with its reason (recorded, exit status 0) instead of failing the run."""
    import time

    from common import Settings, load_configs
    from family_parts import family_box, run_all
    from report import merge

    now = time.perf_counter()
    part = Settings(tmp_path, False, torch.device("cpu"), torch.bfloat16, 100.0, now)
    assert family_box(part, 30.0, 50.0).budget_s == pytest.approx(50.0, abs=0.5)
    assert family_box(part, 30.0, 90.0).budget_s == pytest.approx(30.0, abs=0.5)
    dry = Settings(tmp_path, True, torch.device("cpu"), torch.float32, 100.0, now)
    assert family_box(dry, 30.0, 50.0).budget_s == pytest.approx(100.0, abs=0.5)
    spent = Settings(tmp_path, False, torch.device("cpu"), torch.bfloat16, 3.0, now)
    assert run_all(list(FAMILIES), spent, load_configs()["families"]) == 0
    parts = merge(tmp_path / "results.jsonl")
    for name in FAMILIES:
        status = parts[f"family-{name}"]["_status"]["status"]
        assert status.startswith("skipped: ") and "left of the part's time box" in status
