# %% [markdown]
# # Positional encoding
#
# *The seed's section 4.* Attention compares every query with every key, and nothing in that
# comparison knows where a token sits: permute the inputs and the outputs permute with them.
# Order has to be added. The original Transformer adds a fixed table of sines and cosines
# (Vaswani et al., 2017, §3.5):
#
# `PE(pos, 2i) = sin(pos / 10000^(2i/d))`, `PE(pos, 2i+1) = cos(pos / 10000^(2i/d))`
#
# numformer has that table (`nn.SinusoidalPositionalEncoding`), GPT-2's learned table
# (`nn.LearnedPositionalEmbedding`) and rotary embeddings (`nn.RotaryEmbedding`, used by Llama).

# %%
import math

import matplotlib.pyplot as plt
import numpy as np

import numformer as nf
from numformer import nn
from numformer.nn import functional as F

nf.manual_seed(0)

# %% [markdown]
# ## 1. Attention alone ignores order
#
# Shuffle the tokens and self-attention's outputs are shuffled the same way: it is
# permutation-equivariant.

# %%
mha = nn.MultiheadAttention(16, 2, batch_first=True)
x = nf.randn(1, 6, 16)
perm = np.array([3, 0, 5, 1, 4, 2])
with nf.no_grad():
    out = mha(x, x, x)[0].numpy()[0]
    out_perm = mha(x[:, perm], x[:, perm], x[:, perm])[0].numpy()[0]
print("outputs of the shuffled input == shuffled outputs:", np.allclose(out_perm, out[perm], atol=1e-6))

# %% [markdown]
# ## 2. The sinusoidal table
#
# Each pair of dimensions is a clock of its own frequency, from one turn every 2π positions to
# one turn every 10000·2π.

# %%
pe = F.sinusoidal_positional_encoding(100, 64, dtype=np.float64)  # (max_len, d_model)
print("first 4 positions, first 6 dimensions:\n", np.round(pe[:4, :6], 3))
fig, ax = plt.subplots(figsize=(7, 3.2))
im = ax.imshow(pe.T, aspect="auto", cmap="RdBu", origin="lower")
ax.set_xlabel("position")
ax.set_ylabel("dimension")
ax.set_title("sinusoidal positional encoding (100 positions x 64 dimensions)")
fig.colorbar(im, ax=ax)
plt.show()

# %% [markdown]
# ## 3. Nearby positions look alike
#
# The cosine similarity of two encodings falls with their distance, the same way wherever the
# pair starts:

# %%
unit = pe / np.linalg.norm(pe, axis=1, keepdims=True)
distances = np.arange(41)
from_10 = [float(unit[10] @ unit[10 + d]) for d in distances]
mean_all = [float(np.mean(np.sum(unit[: 100 - d] * unit[d:], axis=1))) for d in distances]
fig, ax = plt.subplots(figsize=(5, 3.2))
ax.plot(distances, from_10, label="from position 10")
ax.plot(distances, mean_all, "--", label="mean over all positions")
ax.set_xlabel("distance |a - b|")
ax.set_ylabel("cosine similarity")
ax.legend()
plt.show()

# %% [markdown]
# ## 4. A shift is a rotation
#
# The seed's key property: for every shift k there is one matrix R_k, a block of 2x2 rotations
# by the angles k·ω_i, with PE[pos + k] = R_k PE[pos] for *every* position. Relative position is
# a linear function of absolute position, which attention's linear projections can use.


# %%
def shift_rotation(d_model, k):
    R = np.zeros((d_model, d_model))
    for i in range(d_model // 2):
        angle = k / 10000 ** (2 * i / d_model)
        c, s = math.cos(angle), math.sin(angle)
        R[2 * i : 2 * i + 2, 2 * i : 2 * i + 2] = [[c, s], [-s, c]]
    return R


for k in (1, 3, 10):
    error = np.abs(pe[:-k] @ shift_rotation(64, k).T - pe[k:]).max()
    print(f"shift {k:2d}: max |R_k PE[pos] - PE[pos + k]| over all positions = {error:.1e}")

# %% [markdown]
# ## 5. The module adds the table to its input
#
# `nn.SinusoidalPositionalEncoding(d_model, max_len)` holds the table as a buffer (saved with
# the model, never trained) and returns `dropout(x + PE[offset : offset + L])`; `offset` serves
# decoding with a cache, where the new token's position is the cache's length.

# %%
encode = nn.SinusoidalPositionalEncoding(16, max_len=64)
with nf.no_grad():
    shuffled = encode(x[:, perm])  # positions 0..5 now belong to other tokens
    out_encoded = mha(shuffled, shuffled, shuffled)[0].numpy()[0]
print("still just a shuffle of the outputs?", np.allclose(out_encoded, out[perm], atol=1e-6))
print("buffers:", [name for name, _ in encode.named_buffers()])

# %% [markdown]
# ## 6. Rotary embeddings: relative positions by construction
#
# RoPE (Su et al., 2021) rotates queries and keys instead of adding to the input, so the score
# q_p · k_s depends only on p − s. Move both positions by the same amount and the score stays:

# %%
rope = nn.RotaryEmbedding(8, max_len=256)
q, k = nf.randn(1, 8), nf.randn(1, 8)


def score(p, s):
    with nf.no_grad():
        return float((rope(q, offset=p) * rope(k, offset=s)).sum())


for p, s in [(5, 2), (50, 47), (200, 197)]:
    print(f"q at {p:3d}, k at {s:3d} (distance {p - s}): score {score(p, s):+.6f}")

# %% [markdown]
# **Next:** [the encoder](encoder.md) puts attention, positions, feed-forward layers, residuals
# and layer norm together.
