"""A ``transformers`` backend for small local VLMs, with the same interface as the server one.

Loads a checkpoint folder (or hub id) with ``AutoProcessor`` and
``AutoModelForImageTextToText``; each query is one user turn [image, text] through the chat
template, greedy ``generate`` with ``output_scores``. ``first_token_probs`` holds the softmax of
the first step's scores for the top ``top_logprobs`` tokens (decoded text) and, for each of the
query's ``candidates``, ``probs[tokenizer.encode(candidate)[0]]`` (GenEval 2 evaluation.py's
rule). Queries run one at a time (no padding), so answers do not depend on batching.
"""

from __future__ import annotations

from typing import Any

import torch

from nftkit.errors import UsageError
from nftkit.rewards.vlm_backends import VlmAnswer, VlmQuery


class TransformersVlmBackend:
    """A local VLM loaded with transformers (e.g. Qwen2-VL, Qwen3-VL; a tiny one offline)."""

    kind = "transformers"

    def __init__(
        self,
        model: str,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        max_tokens: int = 64,
    ) -> None:
        """``model``: checkpoint folder or hub id; ``max_tokens``: default generation length."""
        if not model:
            raise UsageError("the transformers VLM backend needs a model folder or hub id")
        self.model_name, self.device, self.dtype = model, torch.device(device), dtype
        self.max_tokens = max_tokens
        self._model: Any = None
        self._processor: Any = None
        self.url = f"transformers:{model}"

    def describe(self) -> dict[str, Any]:
        """What produced the answers (for a run's config)."""
        return {"backend": self.kind, "model": self.model_name}

    def load(self) -> None:
        """Load the processor and model (once)."""
        if self._model is not None:
            return
        from transformers import AutoModelForImageTextToText, AutoProcessor

        self._processor = AutoProcessor.from_pretrained(self.model_name)
        self._model = (
            AutoModelForImageTextToText.from_pretrained(self.model_name, dtype=self.dtype)
            .to(self.device)
            .eval()
        )

    @torch.no_grad()
    def ask(self, query: VlmQuery) -> VlmAnswer:
        """Generate the answer of one query; first-token probabilities as described above."""
        self.load()
        processor, tokenizer = self._processor, self._processor.tokenizer
        messages = [
            {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": query.text}]}
        ]
        text = processor.apply_chat_template(messages, add_generation_prompt=True)
        inputs = processor(text=[text], images=[query.image.convert("RGB")], return_tensors="pt")
        inputs = {k: v.to(self.device) for k, v in inputs.items()}
        out = self._model.generate(
            **inputs,
            max_new_tokens=query.max_tokens or self.max_tokens,
            do_sample=False,
            output_scores=True,
            return_dict_in_generate=True,
        )
        new_tokens = out.sequences[0, inputs["input_ids"].shape[1] :]
        answer = tokenizer.decode(new_tokens, skip_special_tokens=True)
        probs = torch.softmax(out.scores[0][0].float(), dim=-1)
        first: dict[str, float] = {}
        if query.top_logprobs:
            top = torch.topk(probs, min(query.top_logprobs, probs.numel()))
            for p, index in zip(top.values.tolist(), top.indices.tolist(), strict=True):
                token = tokenizer.decode([index])
                first[token] = max(first.get(token, 0.0), float(p))
        for candidate in query.candidates:
            ids = tokenizer.encode(candidate, add_special_tokens=False)
            if ids:
                first[candidate] = float(probs[ids[0]])
        return VlmAnswer(answer, first)

    def ask_many(self, queries: list[VlmQuery]) -> list[VlmAnswer]:
        """All queries in order, one at a time."""
        return [self.ask(q) for q in queries]
