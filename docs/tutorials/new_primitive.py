# %% [markdown]
# # Writing a new primitive, with its backward
#
# A primitive is one class in `numformer/ops/`: `forward` on arrays, `backward` returning one
# vector-Jacobian product per input, and optionally `infer`, a cheaper path for when no gradient
# is wanted. Adding one never touches the engine (`autograd.py`) — HIPS autograd's rule: forward
# and backward live side by side.
#
# We build **Swish with a learned slope**, `y = x · σ(βx)` (Ramachandran et al., 2017,
# "Searching for Activation Functions"), with β a trainable scalar. It has two inputs, so the
# backward returns two gradients, and β's must be summed over every element it touched.
#
# The derivatives, with s = σ(βx):
#
# - ∂y/∂x = s + βx·s(1 − s)
# - ∂y/∂β = x²·s(1 − s)

# %%
import matplotlib.pyplot as plt
import numpy as np

import numformer as nf
from numformer import nn
from numformer.autograd import Function, unbroadcast
from numformer.backend import xp
from numformer.testing import gradcheck

# %% [markdown]
# ## 1. The primitive
#
# Rules the kernels in `numformer/ops` follow:
#
# - compute through `xp` (NumPy, or CuPy on a GPU), never `np` directly, so the op runs on
#   either device;
# - keep the input's dtype (float32 stays float32: `astype(x.dtype, copy=False)`);
# - no Python loops over batch, heads or positions: whole-array expressions;
# - save on `self` only what backward reads, and say so (`saves_inputs`), so the engine's
#   version check can refuse a value changed in place after it was saved;
# - a gradient for an input that was broadcast is summed back to its shape (`unbroadcast`).


# %%
def _sigmoid(z):
    e = xp.exp(-xp.abs(z))  # never overflows
    return xp.where(z >= 0, 1, e) / (1 + e)


class Swish(Function):
    """y = x * sigmoid(beta * x); beta broadcasts against x."""

    saves_inputs = True  # backward reads x and beta

    def forward(self, x, beta):
        s = _sigmoid(beta * x)
        self.x, self.beta, self.s = x, beta, s
        return (x * s).astype(x.dtype, copy=False)

    def infer(self, x, beta):  # no gradient wanted: keep nothing
        return (x * _sigmoid(beta * x)).astype(x.dtype, copy=False)

    def backward(self, g):
        x, beta, s = self.x, self.beta, self.s
        ds = s * (1 - s)
        grad_x = g * (s + beta * x * ds) if self.needs_grad[0] else None
        grad_beta = unbroadcast(g * x * x * ds, beta.shape) if self.needs_grad[1] else None
        return grad_x, grad_beta


def swish(x, beta):
    """The functional form: tensors in, a tensor out (Function.apply records the node)."""
    return Swish.apply(x, beta)


x = nf.linspace(-4, 4, 9)
beta = nf.tensor(1.0)
print(swish(x, beta))

# %% [markdown]
# ## 2. Check the backward: finite differences, then PyTorch
#
# The check every primitive in numformer has: float64 central differences over both inputs.

# %%
x64 = nf.randn(3, 4, dtype=nf.float64, requires_grad=True)
beta64 = nf.tensor(0.7, dtype=nf.float64, requires_grad=True)
print("gradcheck:", gradcheck(swish, [x64, beta64]))

# %% [markdown]
# And the parity check, where PyTorch is installed (it is numformer's test oracle, never a
# dependency):

# %%
try:
    import torch
except ImportError:
    print("PyTorch is not installed here: parity check skipped (pip install torch to run it)")
else:
    tx = torch.tensor(x64.numpy(), requires_grad=True)
    tb = torch.tensor(beta64.item(), dtype=torch.float64, requires_grad=True)
    (tx * torch.sigmoid(tb * tx)).sum().backward()
    x64.grad = beta64.grad = None
    swish(x64, beta64).sum().backward()
    print("x.grad matches PyTorch:", np.allclose(x64.grad.numpy(), tx.grad.numpy()))
    print("beta.grad matches PyTorch:", np.isclose(beta64.grad.item(), tb.grad.item()))

# %% [markdown]
# ## 3. The inference path agrees with forward
#
# Under `no_grad`, `apply` runs `infer` and records nothing; tests check the two give the same
# bits.

# %%
x32 = nf.randn(1000)
with nf.no_grad():
    inferred = swish(x32, beta).numpy()
recorded = swish(x32.requires_grad_(), beta).detach().numpy()
print("infer == forward:", np.array_equal(inferred, recorded), "| dtype kept:", inferred.dtype)

# %% [markdown]
# ## 4. A module with a trainable β
#
# Wrap it in a `Module` with a `Parameter`, and train β to fit a target activation: SiLU with
# slope 2.5.


# %%
class LearnedSwish(nn.Module):
    def __init__(self, beta: float = 1.0):
        super().__init__()
        self.beta = nn.Parameter(nf.tensor(beta))

    def forward(self, x):
        """Shape: ``(*)`` -> ``(*)``."""
        return swish(x, self.beta)


act = LearnedSwish()
opt = nf.optim.Adam(act.parameters(), lr=0.1)
inputs = nf.linspace(-5, 5, 201)
target = inputs * (2.5 * inputs).sigmoid()
betas = []
for _ in range(150):
    opt.zero_grad()
    loss = ((act(inputs) - target) ** 2).mean()
    loss.backward()
    opt.step()
    betas.append(act.beta.item())
print(f"beta after 150 steps: {betas[-1]:.3f} (target 2.5)")

fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.3))
for b in (0.5, 1.0, 2.5, 10.0):
    with nf.no_grad():
        left.plot(inputs.numpy(), swish(inputs, nf.tensor(b)).numpy(), label=f"beta = {b}")
left.legend(fontsize=8)
left.set_title("x * sigmoid(beta x)")
right.plot(betas)
right.axhline(2.5, ls=":", color="k")
right.set_xlabel("step")
right.set_title("beta learned by Adam")
plt.show()

# %% [markdown]
# ## 5. Making it fast, the rules
#
# - **A kernel is the only place a speed trick may live.** Thread chunking, BLAS control and
#   in-place buffers stay inside the primitive's file, through the one internal API
#   `numformer.ops._threads` (`parallel_for(n, fn)` splits `range(n)` into contiguous chunks on
#   numformer's threads; `matmul` is the threaded GEMM). Layers and models never import it.
# - **`infer` is the fast path**, and it must give `forward`'s result: a test checks they agree.
# - **Fuse where it pays.** Softmax, layer norm, attention and cross-entropy are each one
#   primitive with a hand-derived backward, not a graph of small ops: fewer temporaries and
#   fewer passes over memory. The derivation goes in the docstring, in two or three lines.
# - **Measure in `bench/`**, not in comments: `bench/bench_ops.py` times kernels against PyTorch,
#   and the results go to `bench/results/`.
#
# In the repository, the class goes to the `ops/` file named for what it computes, its
# functional form to `nn/functional.py` (with a `Shape:` docstring), and its tests to `tests/ops/`:
# a float64 gradcheck and a PyTorch parity test of values and gradients over hypothesis-drawn
# shapes. `CONTRIBUTING.md` lists the steps.
