"""``toyflow``: the smallest complete nftkit model family (no diffusers involved).

A model folder holds ``model_index.json`` (``_class_name: ToyFlowPipeline``, so ``load_policy``
resolves it to this family), ``config.json`` and ``model.safetensors``. Prompts are embedded as
a bag of bytes; the velocity net is an MLP over flattened [3, S, S] latents; decode maps latents
to [0, 1] with a sigmoid. Conventions are nftkit's: t = 1 is noise, v = eps - x0.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any, ClassVar

import torch
from safetensors.torch import load_file, save_file
from torch import nn

PIPELINE_CLASS = "ToyFlowPipeline"


class ToyFlowNet(nn.Module):
    """v(x_t, t, prompt) for flattened latents."""

    def __init__(self, size: int = 8, hidden: int = 64) -> None:
        super().__init__()
        self.size = size
        dim = 3 * size * size
        self.text = nn.EmbeddingBag(256, hidden, mode="mean")
        self.inp = nn.Linear(dim + 1, hidden)
        self.mid = nn.Linear(hidden, hidden)
        self.out = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        """Velocity [B, 3, S, S] from latents, sigmas [B] and prompt embeddings [B, hidden]."""
        h = self.inp(torch.cat([x.flatten(1), t[:, None]], dim=1)) + text
        h = self.mid(torch.nn.functional.silu(h))
        return self.out(torch.nn.functional.silu(h)).view_as(x)


class ToyFlowPolicy:
    """A tiny pure-torch flow model as an nftkit policy (example third-party family)."""

    family = "toyflow"
    description = "Example plugin: a tiny pure-torch rectified-flow model"
    pipeline_classes: ClassVar[tuple[str, ...]] = (PIPELINE_CLASS,)
    hub_prefixes: ClassVar[tuple[str, ...]] = ()
    lora_targets: ClassVar[list[str]] = ["inp", "mid", "out"]
    lora_prefix = "transformer"

    def __init__(self, model: ToyFlowNet, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.model = model.to(self.device).requires_grad_(False).eval()
        self.latent_shape = (3, model.size, model.size)
        self.forward_module: nn.Module | None = None

    @classmethod
    def from_pretrained(cls, folder: str | Path, device: str = "cpu", **_: Any) -> ToyFlowPolicy:
        """Load config.json + model.safetensors from a toyflow folder."""
        folder = Path(folder)
        config = json.loads((folder / "config.json").read_text())
        model = ToyFlowNet(**config)
        model.load_state_dict(load_file(str(folder / "model.safetensors")))
        return cls(model, device=device)

    @staticmethod
    def make_tiny(folder: str | Path, seed: int = 0) -> Path:
        """Write a random-init toyflow folder."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(seed)
        config = {"size": 8, "hidden": 64}
        save_file(ToyFlowNet(**config).state_dict(), str(folder / "model.safetensors"))
        (folder / "config.json").write_text(json.dumps(config))
        (folder / "model_index.json").write_text(json.dumps({"_class_name": PIPELINE_CLASS}))
        return folder

    def encode_prompts(self, prompts: Sequence[str]) -> dict[str, torch.Tensor]:
        """{"text": [B, hidden]}: the mean embedding of the prompt's bytes."""
        rows = [torch.tensor(list(p.encode()[:64] or b" "), dtype=torch.long) for p in prompts]
        offsets = torch.tensor([0, *torch.cumsum(torch.tensor([len(r) for r in rows]), 0)[:-1]])
        with torch.no_grad():
            text = self.model.text(torch.cat(rows).to(self.device), offsets.to(self.device))
        return {"text": text}

    def time_grid(self, num_steps: int) -> torch.Tensor:
        """Uniform float64 sigmas 1 -> 0."""
        return torch.linspace(1.0, 0.0, num_steps + 1, dtype=torch.float64)

    def velocity(
        self,
        x_t: torch.Tensor,
        t: torch.Tensor,
        cond: dict[str, torch.Tensor],
        adapter: str | None = "default",
        integer_timestep: bool = False,
    ) -> torch.Tensor:
        """v = eps - x0 (float32) with LoRA adapter ``adapter`` (None: the base model)."""
        from nftkit.policies.base import has_lora_layers
        from nftkit.train.lora import use_adapter

        context = use_adapter(self.model, adapter) if has_lora_layers(self.model) else nullcontext()
        sigma = t.to(self.device, torch.float32).reshape(-1).expand(x_t.shape[0])
        with context:
            return (self.forward_module or self.model)(
                x_t.to(self.device), sigma, cond["text"]
            ).float()

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents -> images in [0, 1], upsampled 4x."""
        images = torch.sigmoid(latents.float())
        return torch.nn.functional.interpolate(images, scale_factor=4, mode="nearest")
