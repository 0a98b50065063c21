"""Sentence embeddings with a pretrained BERT, as sentence-transformers computes them.

A sentence-transformers folder (for example ``all-MiniLM-L6-v2``) is a Hugging Face BERT
checkpoint plus ``modules.json`` (Transformer -> Pooling -> optional Normalize),
``1_Pooling/config.json`` (the pooling mode) and ``sentence_bert_config.json`` (``max_seq_length``).
``SentenceEncoder`` reads the same files and runs the same steps: WordPiece tokens from
``tokenizer.json`` (the ``tokenizers`` package), truncation at ``max_seq_length``, padding to the
longest text of each batch with an attention mask, the encoder, pooling over the real tokens, and
L2 normalisation. Texts are batched in order of length (less padding), and the results come back
in input order.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from numformer.autograd import no_grad
from numformer.backend import to_numpy
from numformer.models.bert import BertModel, mean_pool, resolve_pretrained

POOLING_MODES = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len",
}


def _read_json(path: Path, default):
    if not path.is_file():
        return default
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err})") from None


class SentenceEncoder:
    """Embed texts with a sentence-transformers model folder or packaged name.

    ``pooling`` and ``normalize`` default to what the folder's ``modules.json`` and
    ``1_Pooling/config.json`` say (mean pooling and normalisation for all-MiniLM-L6-v2);
    ``max_seq_length`` to ``sentence_bert_config.json``'s (256 there), else the model's position
    limit.

    Raises:
        FileNotFoundError: no such folder or package. ValueError: not a BERT checkpoint, no
        ``tokenizer.json``, or a pooling mode outside cls/mean/max/mean_sqrt_len.
    """

    def __init__(self, name_or_path="all-MiniLM-L6-v2", max_seq_length: int | None = None, pooling: str | None = None):
        from tokenizers import Tokenizer

        self.folder = resolve_pretrained(name_or_path)
        self.name = str(name_or_path)
        self.model = BertModel.from_pretrained(self.folder).eval()
        limit = self.model.config.max_position_embeddings
        settings = _read_json(self.folder / "sentence_bert_config.json", {})
        self.max_seq_length = int(max_seq_length or settings.get("max_seq_length") or limit)
        if not 2 <= self.max_seq_length <= limit:
            raise ValueError(f"SentenceEncoder: max_seq_length must be in [2, {limit}], got {self.max_seq_length}")
        modules = _read_json(self.folder / "modules.json", [])
        self.normalize_default = any(str(m.get("type", "")).endswith("Normalize") for m in modules)
        pool_dir = next(
            (m.get("path") for m in modules if str(m.get("type", "")).endswith("Pooling")),
            "1_Pooling",
        )
        pool_cfg = _read_json(self.folder / pool_dir / "config.json", {})
        modes = [mode for key, mode in POOLING_MODES.items() if pool_cfg.get(key)]
        self.pooling = pooling or (modes[0] if modes else "mean")
        if self.pooling not in POOLING_MODES.values():
            raise ValueError(
                f"SentenceEncoder: pooling must be one of {sorted(POOLING_MODES.values())}, got {self.pooling!r}"
            )
        tok_path = self.folder / "tokenizer.json"
        if not tok_path.is_file():
            raise ValueError(f"{self.folder} has no tokenizer.json: SentenceEncoder needs the fast tokenizer's file")
        # The shipped file pads every text to 128 and truncates there; sentence-transformers
        # truncates at max_seq_length and pads each batch to its longest text instead.
        self.tokenizer = Tokenizer.from_file(str(tok_path))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(self.max_seq_length)
        self.pad_id = self.model.config.pad_token_id

    @property
    def dim(self) -> int:
        return self.model.config.hidden_size

    def tokenize(self, texts) -> list[list[int]]:
        """Token ids of each text, ``[CLS] ... [SEP]``, truncated at ``max_seq_length``."""
        return [e.ids for e in self.tokenizer.encode_batch(list(texts))]

    def pad(self, ids: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        """``(input_ids, attention_mask)``, both int64 ``(N, longest)``."""
        longest = max(len(x) for x in ids)
        input_ids = np.full((len(ids), longest), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(ids), longest), dtype=np.int64)
        for row, x in enumerate(ids):
            input_ids[row, : len(x)] = x
            mask[row, : len(x)] = 1
        return input_ids, mask

    def encode(
        self,
        texts,
        batch_size: int = 32,
        normalize: bool | None = None,
        show_progress_bar: bool | None = None,
    ) -> np.ndarray:
        """Embeddings of ``texts`` in input order (sentence-transformers' ``encode``).

        Shape: a list of N strings (or one string) -> float32 ``(N, dim)`` (``(dim,)`` for one
        string). ``normalize`` (default: the model's own setting) scales each row to unit L2
        norm. ``show_progress_bar`` (default: more than 8 batches) draws a tqdm bar on stderr.

        Raises:
            TypeError: an item that is not a string. ValueError: batch_size < 1."""
        single = isinstance(texts, str)
        texts = [texts] if single else list(texts)
        bad = next((i for i, t in enumerate(texts) if not isinstance(t, str)), None)
        if bad is not None:
            raise TypeError(f"SentenceEncoder.encode: texts[{bad}] must be a str, got {type(texts[bad]).__name__}")
        if batch_size < 1:
            raise ValueError(f"SentenceEncoder.encode: batch_size must be >= 1, got {batch_size}")
        normalize = self.normalize_default if normalize is None else normalize
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        ids = self.tokenize(texts)
        order = np.argsort([-len(x) for x in ids], kind="stable")
        starts = range(0, len(texts), batch_size)
        if show_progress_bar is None:
            show_progress_bar = len(starts) > 8
        if show_progress_bar:
            from tqdm import tqdm

            starts = tqdm(starts, desc="embedding", unit="batch", leave=False)
        with no_grad():
            for start in starts:
                rows = order[start : start + batch_size]
                input_ids, mask = self.pad([ids[r] for r in rows])
                out[rows] = self.embed_batch(input_ids, mask)
        if normalize:
            out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
        return out[0] if single else out

    def embed_batch(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Pooled, unnormalised embeddings of one padded batch.

        Shape: both ``(N, L)`` -> float32 ``(N, dim)``."""
        hidden = self.model(input_ids, attention_mask=attention_mask).last_hidden_state
        if self.pooling == "cls":
            return to_numpy(hidden.data[:, 0])
        if self.pooling == "max":
            h = to_numpy(hidden.data).copy()
            h[attention_mask == 0] = -1e9
            return h.max(axis=1)
        pooled = to_numpy(mean_pool(hidden, attention_mask).data)
        if self.pooling == "mean_sqrt_len":
            pooled = pooled * np.sqrt(attention_mask.sum(axis=1, keepdims=True))  # sum / sqrt(count)
        return pooled


def read_lines(path) -> list[str]:
    """Every line of a UTF-8 text file, one text each, empty lines included: split at ``\n``
    only (a ``\r`` before it dropped), no extra empty text after a final newline.

    Raises:
        FileNotFoundError: no such file. ValueError: not UTF-8 (the byte offset named)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no such file: {path}")
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{path} is not UTF-8 text (byte {err.start}: {data[err.start : err.start + 1]!r})") from None
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]
