"""Optimizer steps per epoch: grad_accum derived from processes x per-GPU batch (issue 18, item 1).

Expected numbers are written down from the reference config's arithmetic (DiffusionNFT
config/nft.py: 48 prompts x 24 images = 1,152 samples, per-GPU batch 9; GenEval one optimizer
step per epoch, OCR two), not computed by the code under test.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from nftkit.cli.main import app
from nftkit.compose import RewardComposer
from nftkit.errors import UsageError
from nftkit.policies.loading import load_policy
from nftkit.shapes.prompts import split_prompts
from nftkit.train.layout import plan_layout
from nftkit.train.nft import NFTConfig, NFTTrainer, PromptItem
from nftkit.train.presets import get_preset

# processes -> gradient accumulation for 1,152 samples per step at per-GPU batch 9: 1152 / (9 w)
GENEVAL_ACCUM = {1: 128, 2: 64, 4: 32, 8: 16}


@pytest.mark.parametrize("world", [1, 2, 4, 8])
def test_sd35m_geneval_is_the_same_experiment_on_any_gpu_count(world: int) -> None:
    layout = plan_layout(get_preset("sd35m-geneval").train_config(), world)
    assert layout.grad_accum == GENEVAL_ACCUM[world]
    assert layout.samples_per_step == 1152 and layout.steps_per_epoch == 1
    assert layout.samples_per_process == 1152 // world
    assert layout.optimizer_steps == 1000 and layout.total_images == 1_152_000


@pytest.mark.parametrize(("world", "accum"), [(1, 64), (2, 32), (4, 16), (8, 8)])
def test_sd35m_ocr_takes_two_optimizer_steps_per_epoch(world: int, accum: int) -> None:
    layout = plan_layout(get_preset("sd35m-ocr").train_config(), world)
    assert (layout.grad_accum, layout.steps_per_epoch, layout.samples_per_step) == (accum, 2, 576)


def test_three_processes_name_the_nearest_valid_batches_and_groups() -> None:
    # 1152 / 3 = 384 samples per process and step; divisors of 384 around 9: 8 and 12.
    # Group sizes g with 48 g divisible by 3 x 9 = 27: multiples of 9, around 24: 18 and 27.
    with pytest.raises(UsageError) as err:
        plan_layout(get_preset("sd35m-geneval").train_config(), 3)
    message = str(err.value)
    assert "\n" not in message
    assert "train_batch_size on 3 processes: 8 or 12" in message
    assert "group_size 18 or 27" in message


def test_five_processes_name_the_nearest_valid_group_sizes() -> None:
    # 1152 is not a multiple of 5, so no per-GPU batch works; group sizes g with 48 g divisible
    # by 5 x 9 = 45 are the multiples of 15: 15 and 30 around 24.
    with pytest.raises(UsageError) as err:
        plan_layout(get_preset("sd35m-geneval").train_config(), 5)
    message = str(err.value)
    assert "\n" not in message and "no per-GPU train batch works on 5 processes" in message
    assert "group_size 15 or 30" in message


def test_the_suggested_alternatives_are_valid() -> None:
    config = get_preset("sd35m-geneval").train_config
    assert plan_layout(config(train_batch_size=8), 3).grad_accum == 48  # 1152 / 24
    assert plan_layout(config(train_batch_size=12), 3).grad_accum == 32  # 1152 / 36
    assert plan_layout(config(group_size=30), 5).grad_accum == 32  # 1440 / 45
    assert plan_layout(config(group_size=15), 5).grad_accum == 16  # 720 / 45


def test_shapes_presets_keep_their_optimizer_steps() -> None:
    # shapes: 16 prompts x 8 = 128 samples, 16 per step -> 8 steps per epoch, no accumulation
    layout = plan_layout(get_preset("shapes").train_config(), 1)
    assert (layout.steps_per_epoch, layout.grad_accum) == (8, 1)
    # on 2 processes 16 samples per step need a per-GPU batch of 8 (or less)
    with pytest.raises(UsageError, match="train_batch_size on 2 processes: 8"):
        plan_layout(get_preset("shapes").train_config(), 2)
    assert plan_layout(get_preset("shapes").train_config(train_batch_size=8), 2).grad_accum == 1
    # shapes-grpo states no layout: batch 32, accumulation 1 -> 4 steps per epoch as before
    grpo = plan_layout(get_preset("shapes-grpo").train_config(), 1)
    assert (grpo.steps_per_epoch, grpo.grad_accum) == (4, 1)


def test_a_config_without_a_layout_keeps_its_grad_accum() -> None:
    config = NFTConfig(prompts_per_epoch=2, group_size=4, train_batch_size=3, grad_accum=2)
    layout = plan_layout(config, 1)  # 8 samples: micro-batches 3, 3, 2 -> steps after 2 and 3
    assert (layout.grad_accum, layout.steps_per_epoch) == (2, 2)


def test_contradicting_and_impossible_layouts_are_one_line_errors() -> None:
    config = get_preset("sd35m-geneval").train_config
    with pytest.raises(UsageError, match="grad_accum=4 contradicts"):
        plan_layout(config(grad_accum=4), 8)
    assert plan_layout(config(grad_accum=16), 8).grad_accum == 16
    with pytest.raises(UsageError, match="steps_per_epoch 4 or 6"):  # 1152 = 2^7 x 9
        plan_layout(config(steps_per_epoch=5), 1)
    with pytest.raises(UsageError, match="set only one"):
        plan_layout(config(samples_per_step=576), 1)


def test_the_trainer_uses_the_derived_accumulation(tiny_model_dir: Path, tmp_path: Path) -> None:
    config = NFTConfig.from_dict(
        dict(
            epochs=1,
            prompts_per_epoch=2,
            group_size=4,
            num_steps=3,
            sample_batch_size=8,
            train_batch_size=2,
            samples_per_step=4,
            max_train_timesteps=1,
            lora_rank=2,
            lora_alpha=4,
            checkpoint_every=1,
            seed=1,
        )
    )
    policy = load_policy(tiny_model_dir)
    train, _ = split_prompts()
    prompts = [PromptItem(m["prompt"], m) for m in train[:4]]
    trainer = NFTTrainer(policy, RewardComposer("jpeg"), prompts, config, tmp_path / "o")
    assert trainer.config.grad_accum == 2  # 4 samples per step / batch 2
    trainer.run_epoch()
    assert trainer.global_step == 2  # 8 samples / 4 per step


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch):
    """Invoke the Typer app in-process; loading a model during --plan fails the test."""
    import nftkit.train.runner as runner

    def no_model(*args: object, **kwargs: object) -> None:
        raise AssertionError("--plan must not load a model")

    monkeypatch.setattr(runner, "load_policy", no_model)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    return lambda *args: CliRunner().invoke(app, list(args))


def _plan_rows(output: str) -> dict[str, str]:
    rows = {}
    for line in output.splitlines()[1:]:
        label, _, value = line.partition("  ")
        rows[label.strip()] = value.strip()
    return rows


@pytest.mark.parametrize("world", [1, 2, 4, 8])
def test_plan_prints_the_layout_for_each_gpu_count(cli, world: int) -> None:
    result = cli("train", "--preset", "sd35m-geneval", "--plan", "--processes", str(world))
    assert result.exit_code == 0, result.output
    rows = _plan_rows(result.output)
    assert rows["processes"] == str(world)
    assert rows["gradient accumulation"] == str(GENEVAL_ACCUM[world])
    assert rows["per-GPU sample batch"] == rows["per-GPU train batch"] == "9"
    assert rows["samples per optimizer step"] == "1152"
    assert rows["optimizer steps per epoch"] == "1"
    assert rows["epochs"] == "1000" and rows["optimizer steps"] == "1000"
    assert rows["total images"] == "1152000"


def test_plan_reads_world_size_and_counts_epochs(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WORLD_SIZE", "4")
    result = cli("train", "--preset", "sd35m-ocr", "--plan", "--epochs", "3")
    rows = _plan_rows(result.output)
    assert result.exit_code == 0, result.output
    assert (rows["processes"], rows["gradient accumulation"]) == ("4", "16")
    assert (rows["epochs"], rows["optimizer steps"]) == ("3", "6")  # 2 steps per epoch
    alias = cli("train", "--preset", "sd35m-ocr", "--plan", "--steps", "3")
    assert alias.exit_code == 0 and _plan_rows(alias.output)["optimizer steps"] == "6"


def test_plan_refuses_a_layout_that_does_not_divide(cli) -> None:
    result = cli("train", "--preset", "sd35m-geneval", "--plan", "--processes", "3")
    assert isinstance(result.exception, UsageError)
    assert "8 or 12" in str(result.exception)
