"""SASRec: self-attentive sequential recommendation (Kang and McAuley, 2018; seed section 8:
recommendation), and the recurrent baseline in the manner of GRU4Rec (Hidasi et al., 2016),
built on ``nn.LSTM``.

A user's history is a sequence of item ids (1..num_items; 0 is padding), left-padded to
``max_len`` so the newest item sits in the last position. The model's state at position t
scores every item as the next one by a dot product with the shared item embeddings (the same
table embeds the inputs). Training, padding positions ignored: ``bce_loss``, binary
cross-entropy of the true next item against one sampled negative per position (the paper's
loss), or ``softmax_loss``, cross-entropy against the whole catalogue.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

import numpy as np

from numformer import nn
from numformer.backend import xp
from numformer.nn import functional as F
from numformer.ops.masks import Equal, NotEqual
from numformer.serialization.configs import Config
from numformer.tensor import Tensor, array_of


@dataclass
class SASRecConfig(Config):
    num_items: int
    max_len: int = 50
    d_model: int = 64
    nhead: int = 1
    num_layers: int = 2
    dropout: float = 0.2
    dim_feedforward: int | None = None  # None: d_model, the paper's
    activation: str = "relu"  # the feed-forward's: the paper's relu, or gelu (RecBole's SASRec)

    def __post_init__(self):
        super().__post_init__()
        if self.dim_feedforward is None:
            self.dim_feedforward = self.d_model
        for name in ("num_items", "max_len", "d_model", "nhead", "num_layers", "dim_feedforward"):
            value = getattr(self, name)
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
                raise ValueError(f"SASRecConfig: {name} must be an integer >= 1, got {value!r}")
        if self.d_model % self.nhead:
            raise ValueError(f"SASRecConfig: d_model ({self.d_model}) must be divisible by nhead ({self.nhead})")
        if self.activation not in ("relu", "gelu"):
            raise ValueError(f"SASRecConfig: activation must be 'relu' or 'gelu', got {self.activation!r}")
        if not isinstance(self.dropout, numbers.Real) or not 0 <= self.dropout < 1:
            raise ValueError(f"SASRecConfig: dropout must be in [0, 1), got {self.dropout}")


def _check(seq, c: SASRecConfig) -> np.ndarray:
    s = array_of(seq)
    if s.ndim != 2 or s.dtype.kind not in "iu" or s.shape[1] != c.max_len:
        raise ValueError(f"sequences must be integer (N, max_len={c.max_len}), got {s.dtype} {s.shape}")
    if s.size and (s.min() < 0 or s.max() > c.num_items):
        raise ValueError(f"item ids must be in [0, {c.num_items}] (0 = padding), got [{s.min()}, {s.max()}]")
    return s


def _item_embedding(c: SASRecConfig) -> nn.Embedding:
    """Items 1..num_items (row 0 is padding, kept at zero), N(0, 1/d) as in the paper's code."""
    table = nn.Embedding(c.num_items + 1, c.d_model, padding_idx=0)
    nn.init.normal_(table.weight, std=c.d_model**-0.5)
    table.weight.array[0] = 0
    return table


def _real(seq: np.ndarray, dtype) -> Tensor:
    """1 at the real items of ``seq`` ``(N, L)``, 0 at padding: ``(N, L, 1)`` of ``dtype``."""
    return NotEqual.apply(Tensor(seq), value=0).unsqueeze(-1).to(dtype)


class SASRec(nn.Module):
    """Item and learned position embeddings, causal pre-LN self-attention blocks, a final
    LayerNorm; scores are dot products with the item embeddings."""

    def __init__(self, config: SASRecConfig):
        super().__init__()
        c = self.config = config
        self.item_emb = _item_embedding(c)
        self.pos_emb = nn.LearnedPositionalEmbedding(c.max_len, c.d_model)
        self.dropout = nn.Dropout(c.dropout)
        layer = nn.TransformerEncoderLayer(
            c.d_model, c.nhead, c.dim_feedforward, c.dropout, activation=c.activation, batch_first=True, norm_first=True
        )
        self.encoder = nn.TransformerEncoder(layer, c.num_layers, nn.LayerNorm(c.d_model))

    def forward(self, seq):
        """Each position's state: what it predicts comes next.

        Shape: ``seq`` integer ``(N, max_len)``, 0 for padding -> ``(N, max_len, d_model)``;
        position t reads only positions <= t, and padding changes no real position's state.

        Raises:
            ValueError: sequences of another length, or ids outside [0, num_items]."""
        s = _check(seq, self.config)
        padding = Equal.apply(Tensor(s), value=0).array  # a primitive: traced forwards see it
        x = self.dropout(self.pos_emb(self.item_emb(s) * (self.config.d_model**0.5)))
        causal = nn.Transformer.generate_square_subsequent_mask(self.config.max_len)
        h = self.encoder(x, mask=causal, src_key_padding_mask=padding)
        return h * _real(s, h.dtype)

    def score(self, states, items=None):
        """Dot products of states with item embeddings (``item_scores``)."""
        return item_scores(self.item_emb, states, items)


def item_scores(item_emb: nn.Embedding, states, items=None):
    """Dot products of states with item embeddings.

    Shape: states ``(N, d)`` or ``(N, L, d)``; items integer of the same leading shape plus a
    candidates dim (``(N, C)`` / ``(N, L, C)``), or None for every item -> scores of that shape
    (``(..., num_items + 1)`` for every item, column 0 the padding id)."""
    if items is None:
        return states @ item_emb.weight.transpose(0, 1)
    return (item_emb(items) * states.unsqueeze(-2)).sum(dim=-1)


class RecurrentRecommender(nn.Module):
    """GRU4Rec's recipe with an LSTM: the item embedding sequence through ``nn.LSTM``, each
    state scoring the next item by a dot product with the shared item embeddings; dropout on
    the embeddings and on the recurrent states (GRU4Rec's ``dropout_p_embed`` and
    ``dropout_p_hidden``)."""

    def __init__(self, config: SASRecConfig):
        super().__init__()
        c = self.config = config
        self.item_emb = _item_embedding(c)
        self.dropout = nn.Dropout(c.dropout)
        self.lstm = nn.LSTM(c.d_model, c.d_model, num_layers=1, batch_first=True)
        self.norm = nn.LayerNorm(c.d_model)

    def forward(self, seq):
        """Shape: ``(N, max_len)`` -> ``(N, max_len, d_model)`` (left padding: the LSTM reads
        zero embeddings first, which a real position's state then carries; the state at a
        padding position is zeroed)."""
        s = _check(seq, self.config)
        h, _ = self.lstm(self.dropout(self.item_emb(s)))
        h = self.norm(self.dropout(h))
        return h * _real(s, h.dtype)

    def score(self, states, items=None):
        """Dot products of states with item embeddings (``item_scores``)."""
        return item_scores(self.item_emb, states, items)


def bce_loss(model, seq, positives, negatives):
    """The paper's loss: -log sigmoid(s_pos) - log(1 - sigmoid(s_neg)) at every non-padding
    position, averaged.

    Shape: all integer ``(N, max_len)``; ``positives`` is 0 where there is no target."""
    h = model(seq)
    pos = model.score(h, positives[..., None])[..., 0]
    neg = model.score(h, negatives[..., None])[..., 0]
    keep = Tensor((positives != 0).astype(np.float32))
    # -log sigmoid(x) = softplus(-x); softplus(z) = relu(z) + log(1 + exp(-|z|)), stable
    loss = _softplus(-pos) + _softplus(neg)
    return (loss * keep).sum() / max(float(keep.array.sum()), 1.0)


def _softplus(z):
    return F.relu(z) + ((-(z.abs())).exp() + 1.0).log()


def softmax_loss(model, seq, positives):
    """Cross-entropy of the true next item against the whole catalogue (items 1..num_items;
    the padding id is no class) at every position that has a target: the "full softmax"
    (Klenitskiy and Vasilev, 2023, "Turning Dross Into Gold Loss", find it lifts SASRec well
    above its one-sampled-negative loss).

    Shape: both integer ``(N, max_len)``; ``positives`` is 0 where there is no target.

    Raises:
        ValueError: no position has a target."""
    h = model(seq)
    targets = xp.asarray(positives).reshape(-1)
    rows = xp.flatnonzero(targets)  # only positions with a target are scored against the catalogue
    if not len(rows):
        raise ValueError("softmax_loss: no position has a target (positives are all 0)")
    logits = model.score(h.reshape(-1, h.shape[-1])[rows])[:, 1:]  # (targets, num_items): padding is no class
    return F.cross_entropy(logits, targets[rows] - 1)
