"""Tokenizers: characters (built in) and byte-level BPE (trained locally with ``tokenizers``).

Both round-trip text exactly (``decode(encode(s)) == s``), save to one JSON file, and come
back with ``load_tokenizer``.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from numformer.serialization.files import write_text


class CharTokenizer:
    """One id per character seen in the training text, in sorted order."""

    kind = "char"

    def __init__(self, chars: str):
        if not chars:
            raise ValueError("CharTokenizer: the vocabulary is empty (was the corpus empty?)")
        if len(set(chars)) != len(chars):
            raise ValueError("CharTokenizer: the vocabulary has repeated characters")
        self.chars = chars
        self._index = {c: i for i, c in enumerate(chars)}

    @classmethod
    def train(cls, text: str) -> CharTokenizer:
        return cls("".join(sorted(set(text))))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> np.ndarray:
        try:
            return np.fromiter((self._index[c] for c in text), dtype=np.int64, count=len(text))
        except KeyError:
            unknown = sorted({c for c in text if c not in self._index})
            shown = ", ".join(f"{c!r} (U+{ord(c):04X})" for c in unknown[:5])
            raise ValueError(
                f"text has characters outside the {self.vocab_size}-character "
                f"vocabulary: {shown}; remove them or train on text that "
                f"contains them"
            ) from None

    def decode(self, ids) -> str:
        return "".join(self.chars[int(i)] for i in np.asarray(ids).reshape(-1))

    def to_dict(self) -> dict:
        return {"type": self.kind, "chars": self.chars}

    def save(self, path) -> None:
        write_text(path, json.dumps(self.to_dict()))


class BPETokenizer:
    """Byte-level BPE (GPT-2's scheme) trained with the ``tokenizers`` package: any Unicode
    text encodes, since every byte is in the base alphabet."""

    kind = "bpe"

    def __init__(self, tokenizer):
        self._tok = tokenizer

    @classmethod
    def train(cls, text: str, vocab_size: int = 1024) -> BPETokenizer:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        if vocab_size < 257:
            raise ValueError(f"BPETokenizer: vocab_size must be >= 257 (256 bytes + merges), got {vocab_size}")
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size, show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
        )
        chunk = 1 << 16
        tok.train_from_iterator((text[i : i + chunk] for i in range(0, len(text), chunk)), trainer=trainer)
        return cls(tok)

    @property
    def vocab_size(self) -> int:
        return self._tok.get_vocab_size()

    def encode(self, text: str) -> np.ndarray:
        return np.asarray(self._tok.encode(text).ids, dtype=np.int64)

    def decode(self, ids) -> str:
        return self._tok.decode([int(i) for i in np.asarray(ids).reshape(-1)])

    def to_dict(self) -> dict:
        return {"type": self.kind, "tokenizer": json.loads(self._tok.to_str())}

    def save(self, path) -> None:
        write_text(path, json.dumps(self.to_dict()))


def tokenizer_from_dict(data: dict):
    kind = data.get("type")
    if kind == "char":
        return CharTokenizer(data["chars"])
    if kind == "bpe":
        from tokenizers import Tokenizer

        return BPETokenizer(Tokenizer.from_str(json.dumps(data["tokenizer"])))
    raise ValueError(f"unknown tokenizer type {kind!r} (expected 'char' or 'bpe')")


def load_tokenizer(path):
    return tokenizer_from_dict(json.loads(Path(path).read_text()))


def train_tokenizer(kind: str, text: str, vocab_size: int = 1024):
    if kind == "char":
        return CharTokenizer.train(text)
    if kind == "bpe":
        return BPETokenizer.train(text, vocab_size)
    raise ValueError(f"tokenizer must be 'char' or 'bpe', got {kind!r}")


class DecodeStream:
    """The text of a growing list of tokens, one new piece per token, in time linear in the
    number of tokens (decoding the whole list at every token would be quadratic).

    Each step decodes only a short window: the tokens since the last piece was given (the
    context) and the new ones, and returns the text the new ones add to the context's. The
    context keeps what a tokenizer does at a word's start (a SentencePiece decoder drops the
    space of the text's first token) from changing a later piece. A byte-level token may end
    inside a character's UTF-8 bytes, which decodes to U+FFFD until a later token completes it:
    such a piece is held back (up to ``MAX_PENDING`` tokens: beyond that the bytes are invalid
    for good and shown as U+FFFD, as ``decode`` shows them). The pieces and ``flush`` join to
    the decoded text of all the tokens.

    Args:
        tokenizer: anything with ``decode(ids) -> str``.
    """

    MAX_PENDING = 16

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        self.tokens: list[int] = []
        self.context = 0  # tokens[context:shown]: decoded again as the new tokens' context
        self.shown = 0  # tokens[:shown] have been given out as text

    def push(self, token: int) -> str:
        """The text ``token`` adds ("" while it ends inside a character)."""
        self.tokens.append(int(token))
        return self._piece(final=len(self.tokens) - self.shown >= self.MAX_PENDING)

    def flush(self) -> str:
        """The text held back (the end of the stream)."""
        return self._piece(final=True)

    def _piece(self, final: bool) -> str:
        before = self.tokenizer.decode(self.tokens[self.context : self.shown]) if self.shown > self.context else ""
        text = self.tokenizer.decode(self.tokens[self.context :])
        if not final and (len(text) <= len(before) or text.endswith("\ufffd")):
            return ""
        self.context, self.shown = self.shown, len(self.tokens)
        return text[len(before) :]
