# %% [markdown]
# # The Transformer encoder
#
# *The seed's section 5.* An encoder layer is two sub-layers, each wrapped in a residual
# connection and layer normalisation:
#
# 1. multi-head self-attention: every token gathers information from every other;
# 2. a position-wise feed-forward network, `Linear(E, F) → ReLU → Linear(F, E)`, applied to each
#    token alone.
#
# The paper normalises after the residual (post-LN: `LayerNorm(x + f(x))`, PyTorch's default,
# `norm_first=False`); most modern models normalise first (pre-LN: `x + f(LayerNorm(x))`,
# `norm_first=True`), which trains more stably when deep. numformer's `nn.TransformerEncoderLayer`
# and `nn.TransformerEncoder` have PyTorch's arguments and parameter names.

# %%
import matplotlib.pyplot as plt
import numpy as np

import numformer as nf
from numformer import nn, optim
from numformer.nn import functional as F

nf.manual_seed(0)

# %% [markdown]
# ## 1. Build the seed's encoder and count its parameters
#
# Two layers, d_model 32, 4 heads, feed-forward width 64. The seed counts the attention
# projections (without biases) and the feed-forward layers; a real layer also has the
# projections' biases and two LayerNorms (a scale and a shift each):

# %%
d, h, d_ff, layers = 32, 4, 64, 2
layer = nn.TransformerEncoderLayer(d, h, d_ff, dropout=0.0, batch_first=True)
encoder = nn.TransformerEncoder(layer, num_layers=layers)
seed_formula = layers * (4 * d * d + (d * d_ff + d_ff + d_ff * d + d))
layer_norms = layers * 2 * 2 * d
attention_biases = layers * 4 * d
print(f"the seed's formula        {seed_formula:6d}")
print(f"+ LayerNorm scale, shift  {layer_norms:6d}")
print(f"+ attention biases        {attention_biases:6d}")
print(f"= {seed_formula + layer_norms + attention_biases}; numformer counts {encoder.num_parameters()}")
print()
print(layer)

# %% [markdown]
# ## 2. Train it on a task that needs attention: reversing a sequence
#
# Each output position must copy the token from the mirrored input position, so every token has
# to find another by its *position*: attention plus positional encoding. A token embedding, the
# sinusoidal positions, the encoder, and a linear read-out:

# %%
V, L = 10, 8


class Reverser(nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(V, d)
        self.positions = nn.SinusoidalPositionalEncoding(d, max_len=L)
        self.encoder = nn.TransformerEncoder(
            nn.TransformerEncoderLayer(d, h, d_ff, dropout=0.0, batch_first=True, norm_first=True), layers
        )
        self.head = nn.Linear(d, V)

    def forward(self, tokens):  # (N, L) integers -> (N, L, V) logits
        return self.head(self.encoder(self.positions(self.embed(tokens))))


def batch(rng, n=32):
    x = rng.integers(0, V, size=(n, L))
    return nf.tensor(x), nf.tensor(x[:, ::-1].copy())


model = Reverser()
opt = optim.Adam(model.parameters(), lr=3e-3)
rng = np.random.default_rng(0)
losses, accuracy = [], []
for _ in range(120):
    x, y = batch(rng)
    logits = model(x)
    loss = F.cross_entropy(logits.reshape(-1, V), y.reshape(-1))
    opt.zero_grad()
    loss.backward()
    opt.step()
    losses.append(loss.item())
    accuracy.append(float((logits.argmax(-1) == y).float().mean()))
print(f"step 120: loss {losses[-1]:.3f}, token accuracy {accuracy[-1]:.3f}")

fig, ax = plt.subplots(figsize=(5, 3.2))
ax.plot(losses, label="cross-entropy")
ax.plot(accuracy, label="token accuracy")
ax.set_xlabel("step")
ax.legend()
ax.set_title("an encoder learns to reverse 8 digits")
plt.show()

# %% [markdown]
# ## 3. What the trained heads attend to
#
# Query position i should look at key position L − 1 − i: the anti-diagonal. Ask the first
# layer's attention for its weights on a fresh sequence:

# %%
model.eval()
x, _ = batch(np.random.default_rng(1), n=1)
with nf.no_grad():
    hidden = model.positions(model.embed(x))
    first = model.encoder.layers[0]
    normed = first.norm1(hidden)  # pre-LN: the layer normalises before attending
    _, weights = first.self_attn(normed, normed, normed, average_attn_weights=False)
    prediction = model(x).argmax(-1)
print("input     ", x.numpy()[0])
print("prediction", prediction.numpy()[0])
fig, axes = plt.subplots(1, h, figsize=(11, 2.9))
for head, ax in enumerate(axes):
    ax.imshow(weights.numpy()[0, head], cmap="viridis")
    ax.set_title(f"layer 1, head {head + 1}")
    ax.set_xlabel("key position")
axes[0].set_ylabel("query position")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## 4. Same weights, same numbers as PyTorch
#
# State-dict keys and layouts are PyTorch's (`layers.0.self_attn.in_proj_weight`, ...), so an
# encoder's weights load into `torch.nn.TransformerEncoder` built with the same arguments. The
# parity tests (`tests/nn`) check outputs and gradients; here, the keys:

# %%
print(list(encoder.state_dict())[:6])

# %% [markdown]
# **Next:** [regularisation](regularisation.md): dropout, weight decay and an overfitting
# experiment.
