# %% [markdown]
# # Multi-head attention
#
# *The seed's section 3.* One attention head learns one kind of relation. Multi-head attention
# runs h heads side by side, each on its own d_k = d_model / h slice of learned projections, and
# mixes their outputs:
#
# `MultiHead(Q, K, V) = Concat(head_1, ..., head_h) Wᴼ`, with `head_i = Attention(Q W_iQ, K W_iK, V W_iV)`
#
# The seed loops over heads; numformer's `nn.MultiheadAttention` computes all heads in one
# batched call. This notebook shows they give the same numbers, then looks at the heads.

# %%
import matplotlib.pyplot as plt
import numpy as np

import numformer as nf
from numformer import nn

nf.manual_seed(0)
words = ["The", "quick", "brown", "fox", "jumps", "over"]
L, E, H = len(words), 16, 4
d_k = E // H

# %% [markdown]
# ## 1. The module and its parameters
#
# Parameter names and layouts are PyTorch's: one packed `in_proj_weight` of shape (3E, E) holding
# the query, key and value projections, and `out_proj`. A PyTorch state dict loads as is.

# %%
mha = nn.MultiheadAttention(E, num_heads=H, batch_first=True)
for name, p in mha.named_parameters():
    print(f"{name:22} {tuple(p.shape)}")

# %% [markdown]
# ## 2. The seed's loop over heads, with the module's weights
#
# Split the packed projection into per-head matrices and run the seed's algorithm in NumPy:


# %%
def softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


x = nf.randn(1, L, E)  # (N, L, E): batch, sequence, embedding (batch_first=True)
X = x.numpy()[0]
W = mha.in_proj_weight.detach().numpy()
b = mha.in_proj_bias.detach().numpy()
Wq, Wk, Wv = W[:E], W[E : 2 * E], W[2 * E :]
bq, bk, bv = b[:E], b[E : 2 * E], b[2 * E :]
heads = []
for h in range(H):  # the seed's loop; numformer does this in one batched call
    s = slice(h * d_k, (h + 1) * d_k)
    Q, K, V = X @ Wq[s].T + bq[s], X @ Wk[s].T + bk[s], X @ Wv[s].T + bv[s]
    heads.append(softmax(Q @ K.T / np.sqrt(d_k)) @ V)
concat = np.concatenate(heads, axis=-1)  # (L, E)
seed_out = concat @ mha.out_proj.weight.detach().numpy().T + mha.out_proj.bias.detach().numpy()

out, weights = mha(x, x, x, need_weights=True, average_attn_weights=False)
print("output", tuple(out.shape), "weights", tuple(weights.shape), "(N, heads, L, S)")
print("largest difference from the loop:", float(np.abs(out.detach().numpy()[0] - seed_out).max()))

# %% [markdown]
# ## 3. Each head has its own pattern
#
# With random weights the patterns are arbitrary, but they differ: each head compares a
# different projection of the tokens.

# %%
w = weights.detach().numpy()[0]
fig, axes = plt.subplots(1, H, figsize=(12, 3.2))
for h, ax in enumerate(axes):
    ax.imshow(w[h], cmap="viridis", vmin=0, vmax=w.max())
    ax.set_title(f"head {h + 1}")
    ax.set_xticks(range(L), words, rotation=60, fontsize=7)
    ax.set_yticks(range(L), words if h == 0 else [], fontsize=7)
fig.suptitle("per-head attention weights (query rows, key columns)")
plt.tight_layout()
plt.show()

for i, word in enumerate(words):
    picks = [f"{words[int(w[h, i].argmax())]:>5} ({w[h, i].max():.2f})" for h in range(H)]
    print(f"{word:>5} ->", "  ".join(picks))

# %% [markdown]
# ## 4. Masks, padding and PyTorch's conventions
#
# - `batch_first=False` is the default, as in PyTorch: inputs are then `(L, N, E)`.
# - `key_padding_mask` `(N, S)`: `True` marks padding keys to ignore (PyTorch's meaning).
# - `attn_mask` `(L, S)` or `(N·heads, L, S)`: boolean `True` = *not allowed*, as
#   `nn.MultiheadAttention` in PyTorch (note: the opposite of `F.scaled_dot_product_attention`'s
#   boolean masks, also as in PyTorch); a float mask is added to the scores.
# - `need_weights=True` returns the weights averaged over heads unless
#   `average_attn_weights=False`.

# %%
padding = nf.tensor(np.array([[False, False, False, False, True, True]]))  # last two are padding
_, w_pad = mha(x, x, x, key_padding_mask=padding)
print("weight on padded keys:", float(w_pad.detach().numpy()[..., 4:].sum()))
causal = nn.Transformer.generate_square_subsequent_mask(L)
_, w_causal = mha(x, x, x, attn_mask=causal)
print("causal weights above the diagonal:", float(np.triu(w_causal.detach().numpy()[0], 1).sum()))

# %% [markdown]
# **Next:** [positions](positions.md): attention itself ignores word order.
