"""HPSv3 on a tiny random-init Qwen2-VL + reward head written in the published format."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from nftkit.registry import create_reward
from nftkit.rewards.hpsv3 import REWARD_TOKEN, current_key, hpsv3_text, smart_size


@pytest.fixture(scope="module")
def weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from nftkit.debug_tiny import make_tiny_weights

    root = tmp_path_factory.mktemp("hpsv3")
    make_tiny_weights(root, ["hpsv3"])
    return root


def test_template_resize_and_key_names() -> None:
    text = hpsv3_text("a red fox")
    assert "Textual prompt - a red fox\n" in text and text.count(REWARD_TOKEN) == 1
    assert text.endswith("Please provide the overall ratings of this image: <|Reward|>\n\nEND\n")
    assert smart_size(1024, 1024) == (448, 448)  # 448^2 = 256*28*28
    assert smart_size(512, 1024) == (308, 616)  # beta = sqrt(524288/200704); floor to x28
    assert current_key("model.layers.0.mlp.up_proj.weight") == (
        "model.language_model.layers.0.mlp.up_proj.weight"
    )
    assert current_key("visual.blocks.0.attn.qkv.weight") == "model.visual.blocks.0.attn.qkv.weight"
    assert current_key("rm_head.0.weight") == "rm_head.0.weight"


def test_scores_batch_size_independent_on_mixed_sizes(weights: Path) -> None:
    images = [
        Image.new("RGB", s, (50 * i, 120, 30))
        for i, s in enumerate([(64, 64), (120, 40), (33, 90), (200, 150), (28, 28)])
    ]
    prompts = [f"a photo of thing {i}" for i in range(len(images))]
    outs = [
        create_reward("hpsv3", weights_dir=weights, batch_size=b)(images, prompts) for b in (1, 4)
    ]
    assert outs[0].scores.tolist() == pytest.approx(outs[1].scores.tolist(), abs=1e-6)
    assert len(set(outs[0].scores.tolist())) == len(images)
    assert all(
        "sigma" in d and d["mu"] == pytest.approx(s)
        for d, s in zip(outs[0].details, outs[0].scores.tolist(), strict=True)
    )


def test_mu_is_the_head_on_the_reward_token_hidden_state(weights: Path) -> None:
    from safetensors.torch import load_file

    reward = create_reward("hpsv3", weights_dir=weights)
    image = Image.new("RGB", (80, 60), (10, 200, 90))
    out = reward([image], ["a green field"])
    batch = reward.inputs(image, "a green field")
    with torch.no_grad():
        hidden = reward.model(**batch, output_hidden_states=True).hidden_states[-1][0]
    position = batch["input_ids"][0].tolist().index(reward.reward_id)
    state = load_file(str(weights / "hpsv3" / "HPSv3.safetensors"))
    h = hidden[position].float()
    h = torch.relu(state["rm_head.0.weight"] @ h + state["rm_head.0.bias"])
    h = torch.relu(state["rm_head.layer_1.0.weight"] @ h + state["rm_head.layer_1.0.bias"])
    mu, sigma = (state["rm_head.output_layer.weight"] @ h).tolist()
    assert out.scores.tolist() == [pytest.approx(mu, abs=1e-5)]
    assert out.details[0]["sigma"] == pytest.approx(sigma, abs=1e-5)
