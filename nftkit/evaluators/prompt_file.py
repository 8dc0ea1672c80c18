"""Suites whose prompts are a file: ``--prompts PATH`` or the suite's pinned public set."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from nftkit.evaluators.base import Evaluator, PromptSpec
from nftkit.evaluators.prompt_sets import PROMPT_SOURCES, PromptSource, resolve_prompt_file
from nftkit.prompt_files import read_text_prompts


class PromptFileEvaluator(Evaluator):
    """An evaluator reading its prompts from a file (one prompt per line by default).

    ``prompts_path`` overrides the public set; ``device`` and ``reward_batch_size`` are where and
    how the suite's scorers run.
    """

    default_solver = "euler"
    accepts_prompt_file: ClassVar[bool] = True

    def __init__(
        self,
        n_samples: int | None = None,
        prompts_path: str | Path | None = None,
        device: str = "cpu",
        reward_batch_size: int = 16,
        **options: Any,
    ) -> None:
        super().__init__(n_samples=n_samples, **options)
        self.prompts_path = prompts_path
        self.device = device
        self.reward_batch_size = reward_batch_size
        self._specs: list[PromptSpec] | None = None

    @property
    def source(self) -> PromptSource | None:
        """The pinned public prompt set of this suite (None when it has none)."""
        return PROMPT_SOURCES.get(self.name)

    def prompt_file(self) -> Path:
        """The prompt file in use (resolving, and if needed downloading, the public set)."""
        return resolve_prompt_file(self.source, self.prompts_path)

    def read_prompts(self, path: Path) -> list[PromptSpec]:
        """Specs from the file at ``path`` (plain text: one prompt per line)."""
        return [PromptSpec(f"{i:05d}", text) for i, text in enumerate(read_text_prompts(path))]

    def prompts(self) -> list[PromptSpec]:
        """The suite's prompts in file order, ids "00000", "00001", ... (read once)."""
        if self._specs is None:
            self._specs = self.read_prompts(self.prompt_file())
        return list(self._specs)
