"""The shapes-world policy: the small flow U-Net behind the Policy contract.

``ShapesPolicy.from_pretrained("shapes-base")`` loads the weights that ship inside the package
(``nftkit/assets/shapes-base/``: config.json + model.safetensors); any directory in that layout
works too. Images live in pixel space, scaled to [-1, 1]; the "latents" are the images.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from nftkit.errors import MissingWeightsError
from nftkit.policies.base import AUTO, Cond, fast_autocast_dtype, velocity_context
from nftkit.policies.shapes_model import ShapesFlowModel, ShapesModelConfig
from nftkit.shapes.prompts import VOCAB, tokenize

ASSETS = Path(__file__).resolve().parents[1] / "assets"
BUILTIN_MODELS = {"shapes-base": ASSETS / "shapes-base"}
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
# LoRA targets: the text pathway, FiLM projections, attention and the U-Net convolutions.
SHAPES_LORA_TARGETS = [
    "film",
    "conv1",
    "conv2",
    "to_q",
    "to_k",
    "to_v",
    "to_out",
    "self_k",
    "self_v",
    "pool",
]


def resolve_model_dir(name_or_path: str | Path) -> Path:
    """A built-in name ("shapes-base") or a directory with config.json + model.safetensors."""
    path = BUILTIN_MODELS.get(str(name_or_path), Path(name_or_path))
    if not (path / CONFIG_FILE).is_file() or not (path / WEIGHTS_FILE).is_file():
        raise MissingWeightsError(
            f"no shapes model at {path}: expected {CONFIG_FILE} and {WEIGHTS_FILE} there. Use "
            "'shapes-base' (ships with nftkit) or a directory written by "
            "`python -m nftkit.policies.shapes_pretrain --output DIR`."
        )
    return path


class ShapesPolicy:
    """Policy over ShapesFlowModel.

    ``autocast_dtype="auto"`` (default) runs in bf16 where the hardware has native bf16 (AMX
    makes it ~4x faster on CPU) and in float32 elsewhere; None forces float32.
    """

    latent_shape = (3, 32, 32)
    lora_targets = SHAPES_LORA_TARGETS

    def __init__(
        self,
        model: ShapesFlowModel,
        device: str | torch.device = "cpu",
        autocast_dtype: torch.dtype | str | None = AUTO,
    ) -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device, memory_format=torch.channels_last)
        if autocast_dtype == AUTO:
            autocast_dtype = fast_autocast_dtype(self.device)
        self.autocast_dtype: torch.dtype | None = autocast_dtype  # type: ignore[assignment]
        size = model.config.image_size
        self.latent_shape = (3, size, size)
        self.token_index = {word: i for i, word in enumerate(VOCAB)}
        self._has_lora: bool | None = None

    @classmethod
    def from_pretrained(
        cls,
        name_or_path: str | Path = "shapes-base",
        device: str | torch.device = "cpu",
        autocast_dtype: torch.dtype | str | None = AUTO,
    ) -> ShapesPolicy:
        """Load config.json + model.safetensors (safetensors only: nothing is unpickled)."""
        path = resolve_model_dir(name_or_path)
        try:
            config = ShapesModelConfig.from_dict(json.loads((path / CONFIG_FILE).read_text()))
            model = ShapesFlowModel(config)
            state = load_file(str(path / WEIGHTS_FILE))
            model.load_state_dict({k: v.float() for k, v in state.items()})
        except (ValueError, TypeError, KeyError, RuntimeError, OSError, SafetensorError) as exc:
            detail = (str(exc).strip().splitlines() or [""])[0]
            raise MissingWeightsError(
                f"shapes model at {path} is not in the expected format ({type(exc).__name__}: "
                f"{detail}); it needs {CONFIG_FILE} and a matching safetensors {WEIGHTS_FILE}"
            ) from exc
        model.eval()
        return cls(model, device=device, autocast_dtype=autocast_dtype)

    def save_pretrained(self, path: str | Path, dtype: torch.dtype = torch.float16) -> None:
        """Write config.json + model.safetensors (base weights only, LoRA excluded)."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        state = {
            k: v.detach().to("cpu", dtype).contiguous()
            for k, v in self.model.state_dict().items()
            if "lora_" not in k
        }
        save_file(state, str(path / WEIGHTS_FILE))
        (path / CONFIG_FILE).write_text(json.dumps(self.model.config.to_dict(), indent=2))

    def encode_prompts(self, prompts: Sequence[str]) -> Cond:
        """Word ids and mask [B, max_tokens]; unknown words map to <unk>."""
        max_tokens = self.model.config.max_tokens
        unk = self.token_index["<unk>"]
        pad = self.token_index["<pad>"]
        ids = torch.full((len(prompts), max_tokens), pad, dtype=torch.long)
        mask = torch.zeros((len(prompts), max_tokens), dtype=torch.float32)
        for row, prompt in enumerate(prompts):
            words = tokenize(prompt)[:max_tokens]
            ids[row, : len(words)] = torch.tensor([self.token_index.get(w, unk) for w in words])
            mask[row, : len(words)] = 1.0
        return {"ids": ids.to(self.device), "mask": mask.to(self.device)}

    def time_grid(self, num_steps: int) -> torch.Tensor:
        """The shapes world's own grid: nftkit's uniform grid (``sampling.timesteps``), float64."""
        from nftkit.train.sampling import timesteps

        return timesteps(num_steps, 1.0).to(torch.float64)

    def velocity(
        self, x_t: torch.Tensor, t: torch.Tensor, cond: Cond, adapter: str | None = "default"
    ) -> torch.Tensor:
        """v(x_t, t | prompt) with the named adapter active (None: adapters disabled)."""
        assert isinstance(cond, dict)
        with velocity_context(self, adapter):
            out = self.model(x_t, t, cond["ids"], cond["mask"])
        return out.float().contiguous()

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """[-1, 1] pixels -> [0, 1] images."""
        return ((latents.float() + 1.0) / 2.0).clamp(0.0, 1.0)

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """[0, 1] images -> [-1, 1] "latents" (used by pre-training)."""
        return images * 2.0 - 1.0
