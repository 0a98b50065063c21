# %% [markdown]
# # The learning-rate finder
#
# *The seed's section 7, first part.* The learning rate is the most important setting: too low
# and training crawls, too high and the loss explodes. The range test (Smith, 2017, "Cyclical
# Learning Rates for Training Neural Networks", §3.3) raises the learning rate exponentially over
# one short run and records the loss; a good learning rate sits where the loss falls fastest,
# well before it blows up.
#
# `numformer.train.lr_find` runs the sweep on your model and restores the weights, the optimiser
# and the random state afterwards, so the sweep leaves no trace.

# %%
import matplotlib.pyplot as plt
import numpy as np

import numformer as nf
from numformer import nn, optim
from numformer.nn import functional as F
from numformer.train import lr_find

nf.manual_seed(0)

# %% [markdown]
# ## 1. A model, a loss and a source of batches
#
# `lr_find(model, loss_fn, data)`: `loss_fn(model, batch)` returns a scalar tensor; `data(rng)`
# returns a batch drawn from the NumPy generator it is given (or pass a list of batches).

# %%
true_w = np.array([1.5, -2.0, 0.5, 3.0])


def data(rng):
    x = rng.standard_normal((100, 4))
    y = x @ true_w + 0.1 * rng.standard_normal(100)
    return x.astype(np.float32), y[:, None].astype(np.float32)


def loss_fn(model, batch):
    x, y = batch
    return F.mse_loss(model(nf.tensor(x)), nf.tensor(y))


model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))
before = model[0].weight.detach().numpy().copy()
result = lr_find(model, loss_fn, data, start_lr=1e-6, end_lr=1.0, num_steps=80)
print("weights unchanged by the sweep:", np.array_equal(before, model[0].weight.detach().numpy()))
print("stopped early (diverged):", result.diverged)
for rule, lr in result.suggestions.items():
    print(f"{rule:>10}: {lr:.2e}")

# %% [markdown]
# ## 2. Read the curve
#
# The raw losses are noisy; the finder keeps an exponentially smoothed copy (the suggestions
# come from it). `steepest` is where the smoothed loss falls fastest per decade; `valley` is
# fastai's rule; `min_div_3` is the seed's rule, a third of the learning rate at the minimum.
# `result.plot(path)` writes the same figure as a PNG; here it is drawn inline:

# %%
fig, ax = plt.subplots(figsize=(6, 3.6))
ax.semilogx(result.lrs, result.losses, alpha=0.35, label="loss")
ax.semilogx(result.lrs, result.smoothed, label="smoothed")
for (rule, lr), marker in zip(result.suggestions.items(), "o^sv"):
    i = int(np.argmin(np.abs(np.log(result.lrs) - np.log(lr))))
    ax.plot(lr, result.smoothed[i], marker, label=f"{rule} {lr:.1e}")
ax.set_ylim(0, 3 * max(result.smoothed[0], 1e-3))
ax.set_xlabel("learning rate")
ax.set_ylabel("loss")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# ## 3. Does the suggestion train well?
#
# Train the same model for 60 steps of SGD with momentum at the suggested learning rate, at a
# tenth of it and at ten times it:

# %%
suggested = result.suggestions["valley"]
rng_batches = [data(np.random.default_rng(i)) for i in range(60)]
fig, ax = plt.subplots(figsize=(6, 3.4))
for scale in (0.1, 1.0, 10.0):
    nf.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))
    opt = optim.SGD(m.parameters(), lr=suggested * scale, momentum=0.9)
    curve = []
    with np.errstate(all="ignore"):  # ten times too high overflows: that is the lesson
        for b in rng_batches:
            opt.zero_grad()
            loss = loss_fn(m, b)
            loss.backward()
            opt.step()
            curve.append(loss.item())
    print(f"lr {suggested * scale:.2e}: final loss {curve[-1]:.4g}")
    ax.semilogy(curve, label=f"{scale:g} x suggested ({suggested * scale:.1e})")
ax.set_xlabel("step")
ax.set_ylabel("MSE")
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# Ten times the suggestion overflows to a non-finite loss within a few steps (the
# [health monitor](debugging.md) would stop such a run and say why).
#
# The command line runs the same sweep for a language model: `numformer lr-find --config my.toml`
# writes the plot and prints the suggestions.
#
# **Next:** [batch norm and gradient clipping](batchnorm_clipping.md).
