"""Sequence-to-sequence models (seed section 8: translation): the paper's encoder-decoder
Transformer, and the LSTM encoder-decoder with attention it replaced (the baseline).

Both take padded integer batches: ``src`` ``(N, S)`` and the decoder's input ``tgt`` ``(N, T)``
(``bos`` then the target shifted right); ``pad_id`` marks padding, which never changes a result.
Both decode greedily, batched; the Transformer also decodes by beam search with a length
penalty, its decoder running incrementally through a ``nn.EncoderDecoderCache`` (each step computes
only the new position's keys and values; the memory's are projected once).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from numformer import nn
from numformer.autograd import no_grad
from numformer.backend import to_numpy, xp
from numformer.nn import functional as F
from numformer.ops.masks import Equal
from numformer.serialization.configs import Config
from numformer.tensor import Tensor, array_of, cat, stack

PAD, BOS, EOS, UNK = 0, 1, 2, 3


def _finite_logits(logits):
    """``logits`` when every one is finite: a NaN would make argmax pick token 0 (padding) and
    decoding end in silent nonsense.

    Raises:
        ValueError: some logit is NaN or infinite (damaged or overflowing weights)."""
    if not bool(xp.isfinite(logits).all()):
        raise ValueError("the decoder's logits are not finite: the model's weights are damaged or overflow float32")
    return logits


@dataclass
class Seq2SeqConfig(Config):
    src_vocab_size: int
    tgt_vocab_size: int
    d_model: int = 128
    nhead: int = 4
    num_encoder_layers: int = 3
    num_decoder_layers: int = 3
    dim_feedforward: int = 512
    dropout: float = 0.1
    max_len: int = 128
    share_embeddings: bool = False
    pad_id: int = PAD

    def __post_init__(self):
        super().__post_init__()
        names = ("src_vocab_size", "tgt_vocab_size", "d_model", "nhead", "num_encoder_layers", "num_decoder_layers")
        for name in (*names, "dim_feedforward", "max_len"):
            if getattr(self, name) < 1:
                raise ValueError(f"Seq2SeqConfig: {name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.nhead:
            raise ValueError(f"Seq2SeqConfig: d_model ({self.d_model}) must be divisible by nhead ({self.nhead})")
        if self.share_embeddings and self.src_vocab_size != self.tgt_vocab_size:
            raise ValueError("Seq2SeqConfig: share_embeddings needs one vocabulary (equal sizes)")
        if not 0 <= self.dropout < 1:
            raise ValueError(f"Seq2SeqConfig: dropout must be in [0, 1), got {self.dropout}")
        if not 0 <= self.pad_id < min(self.src_vocab_size, self.tgt_vocab_size):
            raise ValueError(
                f"Seq2SeqConfig: pad_id must be an id of both vocabularies, in [0, "
                f"{min(self.src_vocab_size, self.tgt_vocab_size)}), got {self.pad_id}"
            )


def _ids(value, name: str) -> np.ndarray:
    array = array_of(value)
    if array.ndim != 2 or array.dtype.kind not in "iu":
        raise ValueError(f"{name} must be an integer array of shape (N, length), got {array.dtype} {array.shape}")
    return array


class Seq2SeqTransformer(nn.Module):
    """Token embeddings (scaled by sqrt(d_model)) plus sinusoidal positions, ``nn.Transformer``
    (post-LN, the paper's), and a linear ``generator`` over the target vocabulary (Vaswani et
    al., 2017)."""

    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        c = self.config = config
        self.src_embed = nn.Embedding(c.src_vocab_size, c.d_model, padding_idx=c.pad_id)
        self.tgt_embed = (
            self.src_embed if c.share_embeddings else nn.Embedding(c.tgt_vocab_size, c.d_model, padding_idx=c.pad_id)
        )
        self.positions = nn.SinusoidalPositionalEncoding(c.d_model, c.max_len, dropout=c.dropout)
        self.transformer = nn.Transformer(
            c.d_model,
            c.nhead,
            c.num_encoder_layers,
            c.num_decoder_layers,
            c.dim_feedforward,
            c.dropout,
            batch_first=True,
        )
        self.generator = nn.Linear(c.d_model, c.tgt_vocab_size)
        for embedding in {id(self.src_embed): self.src_embed, id(self.tgt_embed): self.tgt_embed}.values():
            nn.init.normal_(embedding.weight, std=c.d_model**-0.5)
            embedding.weight.array[c.pad_id] = 0

    def _embed(self, table: nn.Embedding, ids: np.ndarray, offset: int = 0):
        if offset + ids.shape[1] > self.config.max_len:
            raise ValueError(
                f"Seq2SeqTransformer: length {offset + ids.shape[1]} exceeds max_len {self.config.max_len}"
            )
        return self.positions(table(ids) * math.sqrt(self.config.d_model), offset=offset)

    def encode(self, src):
        """Shape: ``src`` ``(N, S)`` -> ``(memory (N, S, d_model), padding (N, S) bool)``."""
        src = _ids(src, "src")
        padding = Equal.apply(Tensor(src), value=self.config.pad_id).array  # a primitive: traced forwards see it
        memory = self.transformer.encoder(self._embed(self.src_embed, src), src_key_padding_mask=padding)
        return memory, padding

    def decode(self, tgt, memory, memory_padding, cache: nn.EncoderDecoderCache | None = None):
        """Logits for the next token at each of ``tgt``'s positions.

        Shape: ``tgt`` ``(N, T)`` (with ``cache``: only the new positions), memory ``(N, S, E)``,
        ``memory_padding`` ``(N, S)`` -> ``(N, T, tgt_vocab_size)``."""
        tgt = _ids(tgt, "tgt")
        offset = 0 if cache is None else cache.get_seq_length()
        x = self._embed(self.tgt_embed, tgt, offset)
        T = tgt.shape[1]
        # Target padding sits after the real tokens, which the causal mask already hides from
        # them: no padding mask is needed (and the causal kernel stays the fast one).
        h = self.transformer.decoder(
            x,
            memory,
            memory_key_padding_mask=memory_padding,
            tgt_is_causal=T > 1,
            cache=cache,
        )
        return self.generator(h)

    def forward(self, src, tgt):
        """Teacher-forced logits.

        Shape: ``src`` ``(N, S)``, ``tgt`` ``(N, T)`` (``bos`` + target[:-1]) ->
        ``(N, T, tgt_vocab_size)``.

        Raises:
            ValueError: ids not 2-D integer arrays, or longer than ``max_len``."""
        memory, padding = self.encode(src)
        return self.decode(tgt, memory, padding)

    # --- decoding ---------------------------------------------------------------------------
    def greedy_decode(self, src, max_len: int | None = None) -> list[list[int]]:
        """The most likely token at every step, for the whole batch at once, through the
        decoder's cache. Returns each row's tokens up to (not including) ``eos``."""
        src = _ids(src, "src")
        limit = min(max_len or self.config.max_len, self.config.max_len)
        with no_grad():
            was_training = self.training
            self.eval()
            memory, padding = self.encode(src)
            cache = nn.EncoderDecoderCache()
            token = xp.full((src.shape[0], 1), BOS, dtype=np.int64)
            out, done = [], xp.zeros(src.shape[0], dtype=bool)
            for _ in range(limit):
                logits = _finite_logits(self.decode(token, memory, padding, cache).array[:, -1])
                token = logits.argmax(-1)[:, None].astype(np.int64)
                out.append(to_numpy(token[:, 0]))
                done |= to_numpy(token[:, 0]) == EOS
                if done.all():
                    break
            self.train(was_training)
        rows = np.stack(out, axis=1).tolist()
        return [row[: row.index(EOS)] if EOS in row else row for row in rows]

    def beam_search(self, src, beam_size: int = 4, max_len: int | None = None, length_penalty: float = 0.6):
        """Beam search (Wu et al., 2016: score = log p / ((5 + length) / 6) ** length_penalty),
        batched over the sources and beams, the decoder's cache reordered to the surviving
        beams at every step. ``beam_size=1`` is greedy decoding (the same tokens).

        Returns each source's best hypothesis, tokens up to (not including) ``eos``."""
        if beam_size < 1:
            raise ValueError(f"beam_search: beam_size must be >= 1, got {beam_size}")
        src = _ids(src, "src")
        N, K = src.shape[0], beam_size
        limit = min(max_len or self.config.max_len, self.config.max_len)
        with no_grad():
            was_training = self.training
            self.eval()
            memory, padding = self.encode(src)
            # every source repeated K times: rows n*K .. n*K+K-1 are its beams
            memory = Tensor(xp.repeat(memory.array, K, axis=0))
            padding = xp.repeat(padding, K, axis=0)
            cache = nn.EncoderDecoderCache()
            scores = np.full((N, K), -math.inf)
            scores[:, 0] = 0.0  # one live beam at the start, so the K beams do not duplicate
            tokens = np.full((N * K, 1), BOS, dtype=np.int64)
            finished = np.zeros(N * K, dtype=bool)
            best = [(-math.inf, []) for _ in range(N)]
            for step in range(limit):
                logits = _finite_logits(
                    to_numpy(self.decode(xp.asarray(tokens[:, -1:]), memory, padding, cache).array[:, -1])
                )
                logp = logits - logits.max(-1, keepdims=True)
                logp = logp - np.log(np.exp(logp).sum(-1, keepdims=True))
                V = logp.shape[-1]
                total = scores.reshape(N * K, 1) + logp  # (N*K, V)
                total[finished] = -math.inf
                flat = total.reshape(N, K * V)
                top = np.argsort(-flat, axis=1, kind="stable")[:, :K]
                beam, word = top // V, top % V
                scores = np.take_along_axis(flat, top, axis=1)
                rows = (np.arange(N)[:, None] * K + beam).reshape(-1)
                tokens = np.concatenate([tokens[rows], word.reshape(-1, 1)], axis=1)
                cache.reorder_cache(xp.asarray(rows))
                finished = word.reshape(-1) == EOS
                length = step + 1
                for r in np.flatnonzero(finished | (length == limit)):
                    n = r // K
                    if scores.reshape(-1)[r] == -math.inf:
                        continue
                    penalty = ((5 + length) / 6) ** length_penalty
                    score = float(scores.reshape(-1)[r]) / penalty
                    if score > best[n][0]:
                        seq = tokens[r, 1:].tolist()
                        best[n] = (score, seq[:-1] if seq and seq[-1] == EOS else seq)
                scores = np.where(finished.reshape(N, K), -math.inf, scores)
                # a source is done when its best finished score beats every live beam's bound
                live = scores.max(axis=1)
                bound = live / (((5 + limit) / 6) ** length_penalty if length_penalty > 0 else 1.0)
                if all(best[n][0] >= bound[n] or live[n] == -math.inf for n in range(N)):
                    break
            self.train(was_training)
        return [seq for _, seq in best]


class LSTMSeq2Seq(nn.Module):
    """The pre-Transformer translator: an LSTM encoder, an LSTM decoder, and dot-product
    attention of each decoder state over the encoder's outputs (Luong et al., 2015, "global"
    attention; the decoder's state and the context concatenated, through ``tanh(attn_out)``,
    then the ``generator``)."""

    def __init__(self, src_vocab_size: int, tgt_vocab_size: int, hidden: int = 256, layers: int = 2, dropout=0.1):
        super().__init__()
        self.config = {
            "src_vocab_size": src_vocab_size,
            "tgt_vocab_size": tgt_vocab_size,
            "hidden": hidden,
            "layers": layers,
            "dropout": dropout,
        }
        self.src_embed = nn.Embedding(src_vocab_size, hidden, padding_idx=PAD)
        self.tgt_embed = nn.Embedding(tgt_vocab_size, hidden, padding_idx=PAD)
        between = dropout if layers > 1 else 0.0  # nn.LSTM's dropout acts between its stacked layers only
        self.encoder = nn.LSTM(hidden, hidden, num_layers=layers, batch_first=True, dropout=between)
        self.decoder = nn.LSTM(hidden, hidden, num_layers=layers, batch_first=True, dropout=between)
        self.attn_out = nn.Linear(2 * hidden, hidden)
        self.dropout = nn.Dropout(dropout)
        self.generator = nn.Linear(hidden, tgt_vocab_size)
        for embedding in (self.src_embed, self.tgt_embed):
            nn.init.normal_(embedding.weight, std=hidden**-0.5)
            embedding.weight.array[PAD] = 0

    def encode(self, src):
        """Shape: ``src`` ``(N, S)`` -> ``(outputs (N, S, H), state, keep (N, S) bool)``.

        Padding sits at the end of each row; the LSTM reads it after the real tokens, so the
        real outputs are untouched and attention ignores the padded ones. The state passed to
        the decoder starts from is the top layer's output at the row's last real token (every
        layer's h; c at zero), so padding never reaches it either."""
        src = _ids(src, "src")
        keep = src != PAD
        out, _ = self.encoder(self.dropout(self.src_embed(src)))
        last = np.maximum(keep.sum(1) - 1, 0)
        h = out[xp.arange(src.shape[0]), last]  # (N, H), in the graph
        h0 = stack([h] * self.config["layers"])
        return out, (h0, Tensor(xp.zeros(h0.shape, dtype=h0.dtype))), keep

    def decode(self, tgt, memory, keep, state):
        """Logits for the next token at each position, and the decoder's state after them.

        Shape: ``tgt`` ``(N, T)``, memory ``(N, S, H)``, ``keep`` ``(N, S)`` ->
        ``(logits (N, T, tgt_vocab_size), state)``."""
        tgt = _ids(tgt, "tgt")
        h, state = self.decoder(self.dropout(self.tgt_embed(tgt)), state)
        scores = h @ memory.transpose(1, 2)  # (N, T, S) dot-product attention
        weights = F.softmax(scores + Tensor(xp.where(keep[:, None, :], 0.0, -1e9).astype(scores.dtype)), dim=-1)
        context = weights @ memory
        mixed = F.tanh(self.attn_out(cat([h, context], dim=-1)))
        return self.generator(self.dropout(mixed)), state

    def forward(self, src, tgt):
        """Teacher-forced logits. Shape: ``src`` ``(N, S)``, ``tgt`` ``(N, T)`` ->
        ``(N, T, tgt_vocab_size)``."""
        memory, state, keep = self.encode(src)
        return self.decode(tgt, memory, keep, state)[0]

    def greedy_decode(self, src, max_len: int = 64) -> list[list[int]]:
        """The most likely token at each step, the batch at once, carrying the LSTM state."""
        with no_grad():
            was_training = self.training
            self.eval()
            memory, state, keep = self.encode(src)
            N = memory.shape[0]
            token = xp.full((N, 1), BOS, dtype=np.int64)
            out = np.zeros((N, 0), dtype=np.int64)
            done = np.zeros(N, dtype=bool)
            for _ in range(max_len):
                logits, state = self.decode(token, memory, keep, state)
                token = to_numpy(_finite_logits(logits.array[:, -1]).argmax(-1))[:, None].astype(np.int64)
                out = np.concatenate([out, token], axis=1)
                done |= token[:, 0] == EOS
                if done.all():
                    break
            self.train(was_training)
        result = []
        for row in out.tolist():
            result.append(row[: row.index(EOS)] if EOS in row else row)
        return result
