# %% [markdown]
# # Self-attention from scratch
#
# *The seed's sections 1 and 2.* A recurrent network reads a sequence one step at a time: each
# hidden state needs the previous one. Attention lets every position look at every other
# position in one batched computation:
#
# `Attention(Q, K, V) = softmax(Q Kᵀ / √d_k) V`
#
# This notebook writes that formula in NumPy, runs numformer's fused kernel on the same numbers,
# and shows what the weights mean, what a causal mask does, and that gradients reach the inputs.

# %%
import time

import matplotlib.pyplot as plt
import numpy as np

import numformer as nf
from numformer import nn
from numformer.nn import functional as F

nf.manual_seed(0)

# %% [markdown]
# ## 1. The sequential bottleneck
#
# numformer's `nn.RNN` runs its time loop inside one primitive; `nn.MultiheadAttention` computes
# every position at once. Timing both (float32, no gradients, the median of five calls) on this
# machine as the page is built:


# %%
def median_ms(fn, repeats=5):
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


rnn = nn.RNN(64, 64, batch_first=True)
attention = nn.MultiheadAttention(64, num_heads=1, batch_first=True)
lengths = [50, 100, 200, 400]
rnn_ms, attn_ms = [], []
with nf.no_grad():
    for T in lengths:
        x = nf.randn(1, T, 64)
        rnn_ms.append(median_ms(lambda x=x: rnn(x)))
        attn_ms.append(median_ms(lambda x=x: attention(x, x, x, need_weights=False)))
for T, r, a in zip(lengths, rnn_ms, attn_ms):
    print(f"T = {T:4d}   RNN {r:7.3f} ms   attention {a:7.3f} ms")

fig, ax = plt.subplots(figsize=(5, 3.2))
ax.loglog(lengths, rnn_ms, "o-", label="RNN (T dependent steps)")
ax.loglog(lengths, attn_ms, "s-", label="attention (one pass)")
ax.set_xlabel("sequence length T")
ax.set_ylabel("time (ms)")
ax.legend()
plt.show()

# %% [markdown]
# On a CPU with few cores attention's O(T²) work catches up with the RNN's O(T) at long
# lengths; the point is the *dependency chain*: the RNN's T steps must run in order, attention's
# three matrix products need not. A GPU turns that independence into speed.
#
# ## 2. The formula in NumPy
#
# A five-word "sentence" with 8-dimensional embeddings and random projections, as in the seed:


# %%
def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))  # subtract the max: no overflow
    return e / e.sum(axis=axis, keepdims=True)


def attention_numpy(Q, K, V):
    scores = Q @ K.T / np.sqrt(Q.shape[-1])  # (L, S): how well each query matches each key
    weights = softmax(scores)  # each row sums to 1
    return weights @ V, weights


words = ["The", "cat", "sat", "on", "mat"]
rng = np.random.default_rng(42)
X = rng.standard_normal((5, 8)).astype(np.float32)
W_Q, W_K, W_V = (rng.standard_normal((8, 8)).astype(np.float32) * 0.5 for _ in range(3))
out_np, weights_np = attention_numpy(X @ W_Q, X @ W_K, X @ W_V)
print("output", out_np.shape, "weights", weights_np.shape, "row sums", weights_np.sum(1).round(6))

# %% [markdown]
# ## 3. The same numbers through numformer
#
# `F.scaled_dot_product_attention` is one primitive with a hand-derived backward (PyTorch's
# name and arguments). `F.scaled_dot_product_attention_with_weights` also returns the weights,
# inside the graph.

# %%
x = nf.tensor(X, requires_grad=True)
q, k, v = x @ nf.tensor(W_Q), x @ nf.tensor(W_K), x @ nf.tensor(W_V)
out, weights = F.scaled_dot_product_attention_with_weights(q, k, v)
print("largest difference from NumPy:", float(np.abs(out.numpy() - out_np).max()))

fig, ax = plt.subplots(figsize=(4, 3.5))
im = ax.imshow(weights.detach().numpy(), cmap="viridis", vmin=0)
ax.set_xticks(range(5), words)
ax.set_yticks(range(5), words)
ax.set_xlabel("key (attended to)")
ax.set_ylabel("query (attending)")
for i in range(5):
    for j in range(5):
        ax.text(j, i, f"{weights.detach().numpy()[i, j]:.2f}", ha="center", va="center", color="w", fontsize=8)
fig.colorbar(im, ax=ax)
ax.set_title("self-attention weights")
plt.show()

# %%
for i, word in enumerate(words):
    row = weights.detach().numpy()[i]
    print(f"{word!r:6} attends most to {words[int(row.argmax())]!r} ({row.max():.3f})")

# %% [markdown]
# ## 4. Why divide by √d_k
#
# For random unit-variance queries and keys the dot product has variance d_k. Without the
# scaling, softmax saturates as d_k grows: one weight near 1, the rest near 0, and tiny
# gradients. The largest weight of a row, averaged over rows:

# %%
for d_k in (4, 64, 1024):
    qk = rng.standard_normal((256, d_k)) @ rng.standard_normal((d_k, 256))
    unscaled = softmax(qk).max(1).mean()
    scaled = softmax(qk / np.sqrt(d_k)).max(1).mean()
    print(f"d_k = {d_k:4d}: largest weight unscaled {unscaled:.3f}, scaled {scaled:.3f}")

# %% [markdown]
# ## 5. A causal mask
#
# A language model must not look ahead. `is_causal=True` lets query i see keys 0..i only
# (numformer takes a dedicated kernel for it). A boolean `attn_mask` marks with `True` the pairs
# that take part, as in PyTorch; a float mask is added to the scores.

# %%
causal = F.scaled_dot_product_attention_with_weights(q, k, v, is_causal=True)[1].detach().numpy()
print(np.round(causal, 2))
mask = nf.tensor(np.tril(np.ones((5, 5), dtype=bool)))
same = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
print("boolean mask == is_causal:", np.allclose(same.detach().numpy(), causal @ v.detach().numpy(), atol=1e-6))

# %% [markdown]
# ## 6. Gradients reach the inputs
#
# The weights are part of the graph, so a loss on the output (or on the weights themselves)
# has gradients for `x`. `numformer.testing.gradcheck` compares `backward` with float64 central
# differences:

# %%
from numformer.testing import gradcheck

out.sum().backward()
print("x.grad:", x.grad.shape, x.grad.dtype)
x64 = nf.tensor(X.astype(np.float64), requires_grad=True)
w64 = [nf.tensor(w.astype(np.float64)) for w in (W_Q, W_K, W_V)]
print(
    "gradcheck:",
    gradcheck(lambda t: F.scaled_dot_product_attention(t @ w64[0], t @ w64[1], t @ w64[2]), [x64]),
)

# %% [markdown]
# **Next:** [multi-head attention](multi_head_attention.md) runs several of these in parallel.
