"""The options every online-RL trainer shares (``TrainerConfig``) and the training prompt item.

``NFTConfig`` (nftkit.train.nft) and ``GRPOConfig`` (nftkit.train.grpo) subclass
``TrainerConfig`` with their own options; ``config_from_dict`` builds any of them from a dict.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar, TypeVar

from nftkit.errors import UsageError

_C = TypeVar("_C")
FINETUNE_MODES = ("lora", "full")


@dataclass
class TrainerConfig:
    """The options every trainer config carries; NFTConfig and GRPOConfig add their own.

    Defaults are the DiffusionNFT / FlowGRPO reference settings for SD3.5-M (REFERENCE.md).
    ``samples_per_step`` or ``steps_per_epoch`` state the optimizer-step layout and
    ``grad_accum`` is then derived from the number of processes (``nftkit.train.layout``);
    with neither, ``grad_accum`` (default 1) is used as given. ``shift`` None trains and samples
    on the policy's own time grid (``policy_time_grid``); a number forces nftkit's shifted
    linspace grid. ``finetune`` "full" trains all transformer weights (``lora_*`` unused).
    """

    label: ClassVar[str] = "trainer"  # names the algorithm in error messages

    epochs: int = 100
    prompts_per_epoch: int = 48
    group_size: int = 24
    num_steps: int = 10
    shift: float | None = None
    sample_batch_size: int = 9
    train_batch_size: int = 9
    samples_per_step: int | None = None
    steps_per_epoch: int | None = None
    grad_accum: int | None = None
    timestep_fraction: float = 0.99
    adv_clip: float = 5.0
    std_mode: str = "global"
    lr: float = 3e-4
    adam_betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 1e-4
    adam_eps: float = 1e-8
    grad_clip: float = 1.0
    lora_rank: int = 32
    lora_alpha: int = 64
    lora_init: str = "gaussian"
    # "lora": the two-adapter LoRA scheme; "full": every transformer weight is trained (the old
    # policy and the reference become weight copies, FSDP-sharded under an FSDP launch)
    finetune: str = field(default="lora", metadata={"choices": FINETUNE_MODES})
    seed: int = 0
    checkpoint_every: int = 10
    keep_checkpoints: int = 2

    @classmethod
    def from_dict(cls: type[_C], data: dict[str, Any]) -> _C:
        """Build from a dict, rejecting unknown keys with the valid ones listed."""
        return config_from_dict(cls, data, cls.label)  # type: ignore[attr-defined]

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict."""
        return asdict(self)


@dataclass
class PromptItem:
    """A training prompt with the metadata that rewards such as GenEval need."""

    text: str
    metadata: dict[str, Any] = field(default_factory=dict)


def config_from_dict(cls: type[_C], data: dict[str, Any], label: str) -> _C:
    """Build dataclass ``cls`` from a dict, rejecting unknown keys with the valid ones listed."""
    valid = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - valid)
    if unknown:
        raise UsageError(f"unknown {label} option(s) {unknown}; valid: {sorted(valid)}")
    data = dict(data)
    if "adam_betas" in data:
        data["adam_betas"] = tuple(data["adam_betas"])
    return cls(**data)
