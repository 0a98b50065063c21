# %% [markdown]
# # Autograd from the inside
#
# Every gradient in numformer comes from one short file, `numformer/autograd.py`. This notebook
# opens it up: what a graph node is, how `backward` orders the nodes, how gradients of a value
# used twice add up, what `no_grad` skips, and how in-place changes are caught.
#
# The ideas are micrograd's (one closure-like backward per operation, a topological sort) with
# PyTorch's semantics: the graph is made of the *operations* recorded (`grad_fn` nodes), each a
# `Function` with a `forward` on arrays and a `backward` that returns one vector-Jacobian
# product per input.

# %%
import numpy as np

import numformer as nf
from numformer.autograd import _toposort
from numformer.testing import gradcheck

# %% [markdown]
# ## 1. A graph is recorded as you compute
#
# Operations on tensors that require grad record a node; the result points at it through
# `grad_fn`, and each node keeps its `parents`: per input, the node that made it (with which
# output) or the leaf tensor itself.

# %%
a = nf.tensor([1.0, 2.0, 3.0], requires_grad=True)
b = nf.tensor([4.0, 5.0, 6.0], requires_grad=True)
c = a * b
d = c.sum() + (a**2).sum()
print(d, "is a leaf?", d.is_leaf)


def describe(node, depth=0):
    print("  " * depth + node.name)
    for parent in node.parents:
        if isinstance(parent, tuple):
            describe(parent[0], depth + 1)
        elif parent is not None:
            print("  " * (depth + 1) + f"leaf {parent.tolist()}")


describe(d.grad_fn)

# %% [markdown]
# ## 2. Backward: a topological order, then one vector-Jacobian product per node
#
# `backward` sorts the nodes so each comes after every node that uses its outputs, then calls
# each node's `backward(grad)` in that order. `a` is used twice (in `a * b` and in `a ** 2`), so
# its gradient is the sum of the two contributions: `b + 2a`.

# %%
print("order:", [node.name for node in _toposort(d.grad_fn)])
d.backward()
print("a.grad", a.grad.tolist(), " expected b + 2a =", (b.detach() + 2 * a.detach()).tolist())
print("b.grad", b.grad.tolist(), " expected a =", a.detach().tolist())

# %% [markdown]
# ## 3. What a node computes
#
# A primitive subclasses `Function`: `forward(*arrays)` computes on NumPy arrays and keeps what
# backward needs on `self`; `backward(grad)` returns one gradient per input. Here is the
# multiplication node above, called by hand:

# %%
node = c.grad_fn
print(type(node).__module__ + "." + type(node).__name__)
mul = type(node)()
mul.needs_grad = (True, True)
out = mul.forward(np.array([1.0, 2.0, 3.0]), np.array([4.0, 5.0, 6.0]))
print("forward:", out, " backward(ones):", [gi.tolist() for gi in mul.backward(np.ones(3))])

# %% [markdown]
# ## 4. No graph when no gradient is wanted
#
# Under `no_grad` (or when no input requires grad), `Function.apply` runs the primitive's
# `infer` path and records nothing, so inference is as cheap as the arithmetic: every module has
# one `forward`, fast in both modes.

# %%
with nf.no_grad():
    e = a * b
print("under no_grad: grad_fn =", e.grad_fn, ", requires_grad =", e.requires_grad)
print("detach() also cuts the graph:", (a * b).detach().grad_fn)

# %% [markdown]
# ## 5. Checking gradients against finite differences
#
# `numformer.testing.gradcheck(fn, inputs)` projects the output on a random direction r and
# compares `backward`'s d(r·f)/dx with central differences in float64. Every primitive in
# numformer has such a test (and a PyTorch parity test).

# %%
x = nf.randn(4, 5, dtype=nf.float64, requires_grad=True)
w = nf.randn(5, 3, dtype=nf.float64, requires_grad=True)
print("matmul + tanh + softmax:", gradcheck(lambda x, w: (x @ w).tanh().softmax(-1), [x, w]))

# %% [markdown]
# ## 6. In-place changes are caught, never silently wrong
#
# As in PyTorch, every tensor has a version counter bumped by in-place operations. A node
# records the versions of the values its backward will read; changing one afterwards makes
# `backward` refuse, naming the node:

# %%
x = nf.tensor([1.0, 2.0, 3.0], requires_grad=True)
y = x * 2
z = y * y  # backward needs y's value
y.add_(1)  # ... which changes here
try:
    z.sum().backward()
except RuntimeError as err:
    print("RuntimeError:", err)

# %% [markdown]
# ## 7. Hooks and non-leaf gradients
#
# `retain_grad()` keeps `.grad` on an intermediate tensor; `register_hook(fn)` sees (and may
# replace) a gradient as it passes.

# %%
x = nf.tensor([1.0, -2.0, 3.0], requires_grad=True)
h = x.relu()
h.retain_grad()
seen = []
h.register_hook(lambda g: seen.append(g.tolist()))
(h * h).sum().backward()
print("dL/dh =", h.grad.tolist(), " hook saw", seen, " dL/dx =", x.grad.tolist())

# %% [markdown]
# **Next:** [write a primitive of your own](new_primitive.md), with its backward.
