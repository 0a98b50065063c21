# %% [markdown]
# # Regularisation: dropout and weight decay
#
# *The seed's section 6.* A network with more parameters than data points can memorise the
# noise in its training set. Two classic remedies:
#
# - **dropout** (Srivastava et al., 2014): during training, zero each activation with
#   probability p and scale the survivors by 1/(1 − p) ("inverted" dropout), so that nothing
#   changes at evaluation, when dropout is off;
# - **L2 regularisation / weight decay**: penalise large weights. `optim.Adam(weight_decay=λ)`
#   adds λw to the gradient (L2, as PyTorch's Adam); `optim.AdamW` decays the weights directly
#   (Loshchilov & Hutter, 2019).

# %%
import matplotlib.pyplot as plt
import numpy as np

import numformer as nf
from numformer import nn, optim
from numformer.nn import functional as F

# %% [markdown]
# ## 1. Inverted dropout
#
# The seed's NumPy version: a Bernoulli mask, then a rescale. numformer's `nn.Dropout` does the
# same in training mode and nothing in eval mode (`model.eval()`):


# %%
def dropout_numpy(x, p, rng):
    keep = rng.random(x.shape) >= p
    return x * keep / (1 - p)


values = np.arange(1.0, 11.0, dtype=np.float32)
print("NumPy    ", dropout_numpy(values, 0.3, np.random.default_rng(0)).round(2))
drop = nn.Dropout(p=0.3)
nf.manual_seed(0)
for _ in range(3):
    print("training ", drop(nf.tensor(values)).numpy().round(2))
drop.eval()
print("eval     ", drop(nf.tensor(values)).numpy().round(2))

# %% [markdown]
# The expected value is kept: averaged over many draws, a dropped-out vector equals the input.

# %%
drop.train()
many = np.mean([drop(nf.tensor(values)).numpy() for _ in range(2000)], axis=0)
print("mean of 2000 draws:", many.round(2))

# %% [markdown]
# ## 2. The overfitting experiment
#
# 30 noisy samples of sin(x) and a network with 50 hidden units, trained full-batch with Adam
# long enough to memorise the noise: once plainly, once with dropout 0.3 and weight decay. The
# test set is the true function on a fine grid.

# %%
rng = np.random.default_rng(3)
x_train = np.sort(rng.uniform(-3, 3, 30))
y_train = np.sin(x_train) + rng.standard_normal(30) * 0.3
x_test = np.linspace(-3, 3, 200)
y_test = np.sin(x_test)
column = lambda a: nf.tensor(a[:, None].astype(np.float32))  # noqa: E731
X, Y, X_test, Y_test = column(x_train), column(y_train), column(x_test), column(y_test)


def train(regularise, steps=2500, every=100):
    nf.manual_seed(3)  # the same initial weights for both networks
    model = nn.Sequential(nn.Linear(1, 50), nn.ReLU(), nn.Dropout(0.3 if regularise else 0.0), nn.Linear(50, 1))
    opt = optim.Adam(model.parameters(), lr=0.01, weight_decay=2e-3 if regularise else 0.0)
    curve = {"step": [], "train": [], "test": []}
    for step in range(1, steps + 1):
        opt.zero_grad()
        F.mse_loss(model(X), Y).backward()
        opt.step()
        if step % every == 0:
            model.eval()  # dropout off to measure
            with nf.no_grad():
                curve["step"].append(step)
                curve["train"].append(F.mse_loss(model(X), Y).item())
                curve["test"].append(F.mse_loss(model(X_test), Y_test).item())
            model.train()
    return model.eval(), curve


plain, plain_curve = train(regularise=False)
regular, regular_curve = train(regularise=True)
print(f"{'':22} train MSE   test MSE")
print(f"{'no regularisation':22} {plain_curve['train'][-1]:9.4f}  {plain_curve['test'][-1]:9.4f}")
print(f"{'dropout + L2':22} {regular_curve['train'][-1]:9.4f}  {regular_curve['test'][-1]:9.4f}")

# %%
fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.6))
for name, curve, style in (("plain", plain_curve, "-"), ("dropout + L2", regular_curve, "--")):
    left.semilogy(curve["step"], curve["train"], style, label=f"{name}: train")
    left.semilogy(curve["step"], curve["test"], style, label=f"{name}: test")
left.set_xlabel("step")
left.set_ylabel("MSE")
left.legend(fontsize=8)
left.set_title("train and test error")
with nf.no_grad():
    right.plot(x_test, plain(X_test).numpy()[:, 0], label="no regularisation")
    right.plot(x_test, regular(X_test).numpy()[:, 0], "--", label="dropout + L2")
right.plot(x_test, y_test, ":", color="k", label="sin(x)")
right.scatter(x_train, y_train, s=12, color="k", label="training samples")
right.legend(fontsize=8)
right.set_title("fitted functions")
plt.show()

# %% [markdown]
# The plain network fits the training points better and the true function worse: the gap
# between its train and test error is overfitting. Regularisation trades a little training error
# for a smoother function.
#
# **Next:** [the learning-rate finder](lr_finder.md).
