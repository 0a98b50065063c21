# %% [markdown]
# # Batch normalisation and gradient clipping
#
# *The seed's section 7, second part.* Two tools that keep training well-conditioned:
#
# - **batch normalisation** (Ioffe & Szegedy, 2015) standardises each feature over the batch,
#   `y = γ (x − mean) / √(var + ε) + β`, and keeps running averages of the statistics for
#   evaluation;
# - **gradient clipping** bounds the update when a gradient spikes: by the global norm
#   (`clip_grad_norm_`, Pascanu et al., 2013) or element by element (`clip_grad_value_`).

# %%
import matplotlib.pyplot as plt
import numpy as np

import numformer as nf
from numformer import nn
from numformer.nn.utils import clip_grad_norm_, clip_grad_value_

# %% [markdown]
# ## 1. Batch norm from scratch, then numformer's
#
# Four features on wildly different scales:

# %%
scales = np.array([0.1, 10.0, 100.0, 0.01])
rng = np.random.default_rng(42)
x = (rng.standard_normal((32, 4)) * scales).astype(np.float32)


def batch_norm_numpy(x, eps=1e-5):
    mean, var = x.mean(0), x.var(0)  # the biased variance normalises, as in PyTorch
    return (x - mean) / np.sqrt(var + eps)


bn = nn.BatchNorm1d(4)
y = bn(nf.tensor(x)).detach().numpy()
print("std before     ", x.std(0).round(4))
print("std after      ", y.std(0).round(4))
print("mean after     ", y.mean(0).round(6))
print("NumPy == numformer:", np.allclose(batch_norm_numpy(x), y, atol=1e-5))

# %% [markdown]
# The 0.01-scale feature comes out with a standard deviation below 1: its variance (1e-4) is
# not far above ε = 1e-5, and the output's std is √(var / (var + ε)).

# %%
var = x.astype(np.float64).var(0)
print("sqrt(var / (var + eps)):", np.sqrt(var / (var + bn.eps)).round(4))

# %% [markdown]
# ## 2. Running statistics
#
# In training mode every batch updates `running_mean` and `running_var` with momentum 0.1 (the
# running variance uses the unbiased estimate, as PyTorch's); `bn.eval()` normalises with them
# instead of the batch's. They start at 0 and 1, so they need a few dozen batches to settle:

# %%
history = [bn.running_var.numpy().copy()]
for _ in range(40):
    bn(nf.tensor((rng.standard_normal((32, 4)) * scales).astype(np.float32)))
    history.append(bn.running_var.numpy().copy())
ratio = np.array(history) / scales**2
fig, ax = plt.subplots(figsize=(5.5, 3.4))
for i in range(4):
    ax.semilogy(ratio[:, i], label=f"feature {i} (scale {scales[i]:g})")
ax.axhline(1.0, color="k", lw=0.8, ls=":")
ax.set_xlabel("batches seen")
ax.set_ylabel("running var / true var")
ax.legend(fontsize=8)
plt.show()

bn.eval()
test = (rng.standard_normal((4, 4)) * scales).astype(np.float32)
print("eval mode uses the running statistics; one sample works:", bn(nf.tensor(test[:1])).shape)

# %% [markdown]
# ## 3. Gradient clipping
#
# Simulated exploding gradients on three parameters. `clip_grad_norm_(parameters, max_norm)`
# rescales all gradients together so that their joint L2 norm is at most `max_norm`, and returns
# the norm before clipping; `clip_grad_value_` clamps each element:

# %%
grads = [rng.standard_normal((10, 20)) * 5.0, rng.standard_normal((20, 5)) * 8.0, rng.standard_normal(5) * 3.0]
params = [nf.zeros(g.shape, dtype=nf.float64, requires_grad=True) for g in grads]
for p, g in zip(params, grads):
    p.grad = nf.tensor(g)
before = clip_grad_norm_(params, max_norm=5.0)
after = np.sqrt(sum(float((p.grad.numpy() ** 2).sum()) for p in params))
print(f"by norm:  total norm {float(before):.2f} -> {after:.4f}")
directions = [
    float((p.grad.numpy() * g).sum() / (np.linalg.norm(p.grad.numpy()) * np.linalg.norm(g)))
    for p, g in zip(params, grads)
]
print("directions kept (cosine with the original):", np.round(directions, 6))

for p, g in zip(params, grads):
    p.grad = nf.tensor(g)
clip_grad_value_(params, clip_value=1.0)
print(
    f"by value: largest |g| {max(np.abs(g).max() for g in grads):.2f} -> "
    f"{max(float(np.abs(p.grad.numpy()).max()) for p in params):.2f}"
)

# %% [markdown]
# Clipping by norm keeps the update's direction and shrinks its length; clipping by value
# changes the direction. The `Trainer` clips by norm (`TrainConfig(clip_grad_norm=1.0)`) after
# averaging the gradients and before the optimiser step, and the
# [health monitor](debugging.md) reports the norms it sees.
