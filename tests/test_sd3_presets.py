"""The SD3.5-Medium presets mirror the reference settings; staged schedules parse and resolve."""

from __future__ import annotations

from pathlib import Path

import pytest

from nftkit.errors import UsageError
from nftkit.train.presets import PRESETS, get_preset, resolve_training_prompts
from nftkit.train.stages import parse_stages, stage_at, total_epochs


@pytest.mark.parametrize(
    "name", ["sd35m-geneval", "sd35m-ocr", "sd35m-pickscore", "sd35m-multireward"]
)
def test_sd35m_presets_follow_the_reference(name: str) -> None:
    preset = get_preset(name)
    config = preset.nft_config()
    assert preset.model == "stabilityai/stable-diffusion-3.5-medium"
    assert (config.lora_rank, config.lora_alpha, config.lora_init) == (32, 64, "gaussian")
    assert (config.prompts_per_epoch, config.group_size) == (48, 24)
    assert (config.sample_batch_size, config.train_batch_size) == (9, 9)
    assert (config.lr, config.ref_weight, config.adv_clip) == (3e-4, 1e-4, 5.0)
    assert preset.policy["resolution"] == 512
    beta = {
        "sd35m-geneval": 1.0,
        "sd35m-pickscore": 1.0,
        "sd35m-ocr": 0.1,
        "sd35m-multireward": 0.1,
    }[name]
    assert config.beta == beta
    assert config.num_steps == (40 if name == "sd35m-multireward" else 10)


def test_multireward_stages_follow_appendix_c() -> None:
    preset = PRESETS["sd35m-multireward"]
    stages = parse_stages(preset.stages)
    assert [s.epochs for s in stages] == [800, 300, 200, 200, 100]
    assert total_epochs(stages) == preset.nft_config().epochs == 1600
    assert stage_at(stages, 0).prompts == "pickscore-train"
    assert "geneval" not in stage_at(stages, 799).rewards
    assert stage_at(stages, 800).prompts == "geneval-train"
    assert stage_at(stages, 1599).rewards.endswith(",ocr")
    assert stage_at(stages, 5000) == stages[-1]
    assert all(s.rewards.startswith("pickscore=0.0384") for s in stages)  # PickScore / 26


def test_the_shapes_preset_is_untouched() -> None:
    assert PRESETS["shapes"].stages == [] and PRESETS["shapes"].policy == {}


@pytest.mark.parametrize("name", ["shapes", "shapes-grpo"])
def test_none_overrides_keep_the_preset_values(name: str) -> None:
    preset = get_preset(name)
    config = preset.train_config(epochs=None, lr=None, seed=5)
    assert config.epochs == preset.config["epochs"] and config.lr == preset.config["lr"]
    assert config.seed == 5


def test_named_prompt_sets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NFTKIT_PROMPTS_DIR", raising=False)
    with pytest.raises(UsageError, match="NFTKIT_PROMPTS_DIR"):
        resolve_training_prompts("ocr-train")
    (tmp_path / "geneval").mkdir()
    (tmp_path / "geneval" / "train_metadata.jsonl").write_text(
        '{"tag": "single_object", "include": [{"class": "cat", "count": 1}], '
        '"prompt": "a photo of a cat"}\n'
    )
    monkeypatch.setenv("NFTKIT_PROMPTS_DIR", str(tmp_path))
    items = resolve_training_prompts("geneval-train")
    assert items[0].text == "a photo of a cat" and items[0].metadata["include"][0]["class"] == "cat"


def test_bad_stages_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="missing"):
        parse_stages([{"epochs": 3, "rewards": "jpeg"}])
    with pytest.raises(UsageError, match="epochs"):
        parse_stages([{"epochs": 0, "rewards": "jpeg", "prompts": "p.txt"}])
