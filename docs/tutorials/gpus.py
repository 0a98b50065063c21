# %% [markdown]
# # GPUs: what works with CuPy
#
# numformer computes on an NVIDIA GPU through CuPy (`pip install 'numformer[gpu]'`, the CUDA 12
# wheel), with PyTorch's spelling:
#
# | works as in PyTorch | |
# |---|---|
# | `model.to("cuda")`, `tensor.to("cuda")`, `.cpu()`, `.device` | moves parameters, buffers and tensors |
# | `nf.zeros(..., device="cuda")`, `nf.randn(..., device="cuda")` | factories take `device=` |
# | `nf.cuda.is_available()`, `device_count()`, `manual_seed`, `synchronize` | `torch.cuda`'s queries |
# | `numformer train --device cuda`, `numformer generate --device cuda` | the command line |
# | checkpoints and model folders | the same files from either device |
#
# and its limits:
#
# - **one GPU per process** (`cuda:0`); `cuda:1` is refused. Use [MPI](distributed.md) for more.
# - **one device at a time**: a new tensor without `device=` is made where numformer computes,
#   which is the GPU once a model has moved there (PyTorch would make it on the CPU).
# - an op on tensors of two devices is an error naming both; `.numpy()` on a GPU tensor asks for
#   `.cpu().numpy()` (as PyTorch).
# - random draws come from the host's generator, so `manual_seed` gives the same weights and
#   dropout masks on either device.
# - the CPU speed tricks (numformer's thread pool, BLAS thread control, tiling) step aside on the
#   GPU: CuPy and cuBLAS run the arrays.
# - no lower-precision compute: numformer runs every op in the tensors' own dtype (float32 by
#   default); an enabled `nf.autocast` warns once and runs the block in float32.

# %%
import numpy as np

import numformer as nf
from numformer.models import GPT, GPTConfig

print("GPU usable here:", nf.cuda.is_available())
try:
    nf.ones(2).to("cuda")
except RuntimeError as err:
    print("RuntimeError:", err)

# %% [markdown]
# ## 1. The device logic, shown without a GPU
#
# numformer's tests prove the device logic on machines without a GPU by registering a stand-in
# array module (`numformer.testing.stand_in_arrays`, NumPy's API with arrays of their own type
# that refuse to mix with NumPy's) as the "cuda" device. The same trick lets this page run
# anywhere: **below, "cuda" is that CPU stand-in, not a GPU.** Every move really changes the
# array type, and every error is the one a GPU gives.

# %%
from numformer import backend
from numformer.testing import stand_in_arrays

real_gpu = nf.cuda.is_available()
if not real_gpu:
    backend.register_device("cuda", stand_in_arrays())  # the stand-in, for this page only

t = nf.tensor([1.0, 2.0, 3.0])
g = t.to("cuda")
print(t.device, "->", g.device, "|", repr(g.device), "| array type:", type(g.array).__name__)
print("back on the host:", g.cpu().tolist())
try:
    g.numpy()
except TypeError as err:
    print("TypeError:", err)
try:
    t + g
except RuntimeError as err:
    print("RuntimeError:", err)

# %% [markdown]
# ## 2. A model trains with the host's bits
#
# `manual_seed` draws on the host, so a model built and trained on either device starts from the
# same weights; the step's arithmetic then runs on the device (on a real GPU, cuBLAS sums in
# another order than OpenBLAS: results agree to float32 round-off, which `tests/gpu` checks with
# `NUMFORMER_TEST_DEVICE=cuda`).


# %%
def train(device, steps=5):
    nf.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=32, block_size=16, n_layer=1, n_head=2, d_model=16)).to(device)
    opt = nf.optim.AdamW(model.parameters(), lr=1e-2)
    rng = np.random.default_rng(0)
    for _ in range(steps):
        x = rng.integers(0, 32, size=(4, 16))
        _, loss = model(x, np.roll(x, -1, axis=1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {k: backend.to_numpy(v.array) for k, v in model.state_dict().items()}, loss.item()


cpu_weights, cpu_loss = train("cpu")
dev_weights, dev_loss = train("cuda")
backend.set_array_module(np)  # compute on the host again
gap = max(float(np.abs(cpu_weights[k] - dev_weights[k]).max()) for k in cpu_weights)
print(f"loss after 5 steps: cpu {cpu_loss:.6f}, cuda {dev_loss:.6f}; largest weight difference {gap:.1e}")
print("(on this machine 'cuda' is the CPU stand-in, so the two are equal bit for bit)" if not real_gpu else "")

# %% [markdown]
# ## 3. On a machine with a GPU
#
# ```bash
# pip install 'numformer[gpu]'                        # cupy-cuda12x
# numformer train --data notes.txt --out runs/gpu --device cuda
# numformer generate --model runs/gpu --prompt "The " --device cuda
# NUMFORMER_TEST_DEVICE=cuda pytest tests/gpu        # numformer on the GPU against the CPU
# ```
#
# In Python, as in PyTorch:
#
# ```python
# model = GPT(config).to("cuda")
# x = nf.tensor(batch, device="cuda")
# logits, loss = model(x, y)
# loss.backward()
# print(loss.item())                 # one number back to the host
# weights = model.state_dict()       # on the GPU; save_model writes the same file as from the CPU
# ```
#
# `bench/gpu_vs_torch.py` times numformer on the GPU beside PyTorch on the same GPU.
