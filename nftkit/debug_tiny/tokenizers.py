"""Tiny tokenizers in the real on-disk formats (CLIP byte-level BPE, BERT WordPiece).

The CLIP vocabulary holds only the 256 byte symbols (plain and word-final) and the two special
tokens, with no merges: every word splits into characters. The BERT vocabulary holds the five
special tokens, the letters, digits and a little punctuation.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

CLIP_VOCAB_SIZE = 514
"""256 byte symbols + 256 word-final byte symbols + <|startoftext|> + <|endoftext|>."""


def _byte_symbols() -> list[str]:
    """The 256 printable stand-ins that byte-level BPE uses for raw bytes, in byte order."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    symbols: dict[int, int] = {b: b for b in printable}
    extra = 0
    for byte in range(256):
        if byte not in symbols:
            symbols[byte] = 256 + extra
            extra += 1
    return [chr(symbols[b]) for b in range(256)]


def clip_vocab() -> dict[str, int]:
    """Token -> id for the tiny CLIP tokenizer (CLIP_VOCAB_SIZE entries)."""
    symbols = _byte_symbols()
    tokens = [*symbols, *(s + "</w>" for s in symbols), "<|startoftext|>", "<|endoftext|>"]
    return {token: i for i, token in enumerate(tokens)}


def tiny_clip_tokenizer() -> Any:
    """A transformers CLIPTokenizer over ``clip_vocab`` with no merges."""
    from transformers import CLIPTokenizer

    return CLIPTokenizer(vocab=clip_vocab(), merges=[])


BERT_SPECIALS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def bert_vocab_tokens() -> list[str]:
    """Tokens of the tiny uncased BERT vocabulary (vocab.txt order)."""
    chars = string.ascii_lowercase + string.digits
    return [*BERT_SPECIALS, *chars, *(f"##{c}" for c in chars), *".,'-!?"]


def write_bert_vocab(folder: Path) -> Path:
    """Write ``vocab.txt`` (one token per line) and a tokenizer_config.json for BertTokenizer."""
    from transformers import BertTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    tokens = bert_vocab_tokens()
    tokenizer = BertTokenizer(vocab={t: i for i, t in enumerate(tokens)}, do_lower_case=True)
    tokenizer.save_pretrained(folder)
    (folder / "vocab.txt").write_text("\n".join(tokens) + "\n", encoding="utf-8")
    return folder / "vocab.txt"
