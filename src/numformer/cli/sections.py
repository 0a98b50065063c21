"""The demo: seed sections 2-5 computed with numformer's own modules, printed as tables."""

from __future__ import annotations

import numpy as np

import numformer as nf
from numformer import nn
from numformer.cli.tables import heading, say, table


def self_attention(seed: int) -> None:
    """Seed section 2: one head over a 5-word sentence with 8-dim embeddings."""
    heading("2. Self-attention: softmax(Q K^T / sqrt(d_k)) V")
    nf.manual_seed(seed)
    words = ["The", "cat", "sat", "on", "mat"]
    x = nf.randn(len(words), 8)
    attention = nn.MultiheadAttention(8, num_heads=1)
    out, weights = attention(x, x, x, need_weights=True)
    w = weights.numpy()
    say(f"input {x.shape} -> output {out.shape}; each row of weights sums to 1")
    table("Attention weights (row attends to column)", [""] + words,
          [[word] + [f"{v:.2f}" for v in row] for word, row in zip(words, w)])  # fmt: skip
    table("Strongest attention", ["word", "attends most to", "weight"],
          [[word, words[int(row.argmax())], f"{row.max():.3f}"] for word, row in zip(words, w)])  # fmt: skip


def multi_head(seed: int) -> None:
    """Seed section 3: 4 heads over a 6-word sentence, all heads in one batched kernel call."""
    heading("3. Multi-head attention: Concat(head_1..head_h) W^O")
    nf.manual_seed(seed)
    words = ["The", "quick", "brown", "fox", "jumps", "over"]
    x = nf.randn(len(words), 16)
    mha = nn.MultiheadAttention(16, num_heads=4)
    out, weights = mha(x, x, x, need_weights=True, average_attn_weights=False)
    w = weights.numpy()  # (heads, L, L)
    say(f"input {x.shape} -> output {out.shape}; 4 heads of dimension {mha.head_dim}")
    rows = [[word] + [f"{words[int(w[h, i].argmax())]} ({w[h, i].max():.2f})" for h in range(4)]
            for i, word in enumerate(words)]  # fmt: skip
    table("Top attention per head", ["word"] + [f"head {h + 1}" for h in range(4)], rows)


def positional_encoding() -> None:
    """Seed section 4: the sinusoidal table, similarity by distance, and the shift property."""
    heading("4. Positional encoding: PE(pos, 2i) = sin(pos / 10000^(2i/d)), cos for 2i+1")
    pe = nn.functional.sinusoidal_positional_encoding(50, 16, dtype=np.float64)
    table("First 5 positions, first 8 dimensions", ["pos"] + [f"dim{d}" for d in range(8)],
          [[pos] + [f"{pe[pos, d]:.2f}" for d in range(8)] for pos in range(5)])  # fmt: skip
    unit = pe / np.linalg.norm(pe, axis=1, keepdims=True)
    table("Cosine similarity to position 10", ["position", "distance", "similarity"],
          [[p, abs(p - 10), f"{unit[10] @ unit[p]:.4f}"] for p in (10, 11, 12, 15, 20, 40)])  # fmt: skip
    k = 3
    rotation = np.zeros((16, 16))
    for i in range(8):
        angle = k / 10000 ** (2 * i / 16)
        c, s = np.cos(angle), np.sin(angle)
        rotation[2 * i : 2 * i + 2, 2 * i : 2 * i + 2] = [[c, s], [-s, c]]
    error = np.abs(pe[:-k] @ rotation.T - pe[k:]).max()
    say(f"PE(pos + {k}) = R_{k} PE(pos) for every position: one fixed block rotation, "
        f"max error {error:.1e}")  # fmt: skip


def encoder(seed: int) -> None:
    """Seed section 5: a 2-layer pre-LN encoder, d_model=32, 4 heads, d_ff=64."""
    heading("5. Transformer encoder (pre-LN: x + f(LayerNorm(x)))")
    nf.manual_seed(seed)
    d, h, d_ff, layers, seq = 32, 4, 64, 2, 8
    words = ["The", "neural", "network", "learns", "complex", "patterns", "from", "data"]
    positions = nn.SinusoidalPositionalEncoding(d, max_len=512)
    layer = nn.TransformerEncoderLayer(d, h, d_ff, dropout=0.0, norm_first=True)
    model = nn.TransformerEncoder(layer, layers)
    model.eval()
    x = nf.randn(seq, d)
    with nf.no_grad():
        out = model(positions(x))
    table("Configuration", ["setting", "value"],
          [["layers", layers], ["model dimension", d], ["attention heads", h],
           ["head dimension", d // h], ["feed-forward dim", d_ff]])  # fmt: skip
    table(f"Input {x.shape} vs output {out.shape} (first 4 dims of first 4 tokens)",
          ["token", "input", "output"],
          [[words[i], " ".join(f"{v:5.2f}" for v in x.numpy()[i, :4]),
            " ".join(f"{v:5.2f}" for v in out.numpy()[i, :4])] for i in range(4)])  # fmt: skip
    seed_formula = layers * (4 * d * d + (2 * d * d_ff + d_ff + d))
    extra = model.num_parameters() - seed_formula
    say(f"parameters: numformer {model.num_parameters():,}; the seed's formula {seed_formula:,} "
        f"(+{extra} = LayerNorm scales and shifts and attention biases, which the seed omits)")  # fmt: skip


def run(seed: int = 42) -> None:
    say("[bold]numformer[/bold]: the seed's sections 2-5, computed with numformer's modules")
    self_attention(seed)
    multi_head(seed)
    positional_encoding()
    encoder(seed)
