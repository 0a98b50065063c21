# %% [markdown]
# # Exporting to ONNX
#
# `import numformer.onnx` takes the place of `torch.onnx`: `numformer.onnx.export(model, args,
# "model.onnx", input_names=..., output_names=..., dynamic_axes=..., opset_version=...)` has
# `torch.onnx.export`'s arguments and meanings. It runs the forward under `no_grad` while the
# engine reports every primitive it runs, maps each primitive to ONNX operators, and stores the
# parameters as initializers under their state-dict names. The result runs in ONNX Runtime,
# anywhere, without numformer.
#
# Needs `pip install 'numformer[onnx]'` (onnx and onnxruntime); the core never imports either.

# %%
import importlib.util

import numpy as np

import numformer as nf
from numformer.models import GPT, GPTConfig

missing = [m for m in ("onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
if missing:
    raise SystemExit(f"this tutorial needs {', '.join(missing)}: pip install 'numformer[onnx]'")
import onnxruntime as ort

import numformer.onnx
import onnx

nf.manual_seed(0)

# %% [markdown]
# ## 1. Export a small GPT with a dynamic batch and sequence
#
# The forward is traced with each dynamic axis at three sizes, and every size, slice bound or
# position the forward derives from its inputs is checked to follow the inputs' shapes and
# computed from them in the graph (`Shape`, `Gather`, `Range`), never baked in at the traced
# size. Whatever could not be is an error naming the primitive and the module.

# %%
model = GPT(GPTConfig(vocab_size=64, block_size=32, n_layer=2, n_head=2, d_model=32, positions="rotary")).eval()
example = np.random.default_rng(0).integers(0, 64, size=(2, 10))
numformer.onnx.export(
    model,
    (example,),
    "gpt.onnx",
    input_names=["idx"],
    output_names=["logits"],
    dynamic_axes={"idx": {0: "batch", 1: "sequence"}, "logits": {0: "batch", 1: "sequence"}},
)
graph = onnx.load("gpt.onnx").graph
ops = sorted({node.op_type for node in graph.node})
print(f"{len(graph.node)} nodes, {len(graph.initializer)} initializers; operators: {', '.join(ops)}")
print("parameters under their state-dict names:", [i.name for i in graph.initializer if not i.name.startswith("/")][:4])

# %% [markdown]
# ## 2. Run it in ONNX Runtime at other sizes
#
# The exported graph takes any batch and sequence length up to the context, and gives
# numformer's logits:

# %%
session = ort.InferenceSession("gpt.onnx", providers=["CPUExecutionProvider"])
rng = np.random.default_rng(1)
for batch, length in [(1, 5), (3, 17), (2, 32)]:
    idx = rng.integers(0, 64, size=(batch, length))
    (onnx_logits,) = session.run(None, {"idx": idx})
    with nf.no_grad():
        ours = model(idx)
        ours = (ours[0] if isinstance(ours, tuple) else ours).numpy()
    print(
        f"batch {batch}, length {length:2d}: logits {onnx_logits.shape}, "
        f"largest difference from numformer {np.abs(onnx_logits - ours).max():.1e}"
    )

# %% [markdown]
# ## 3. What cannot be exported is an error, not a wrong graph
#
# A forward that turns a tensor's *values* into a Python number (here, how many entries are
# positive, used as a slice bound) would bake that number into the graph. Traced at three sizes,
# the exporter sees the number change and refuses, naming the primitive and the module, rather
# than writing a graph that is silently wrong at other inputs:

# %%
from numformer import nn


class KeepsPositives(nn.Module):
    def forward(self, x):
        n = int((x > 0).sum())  # a value, not a shape: the graph cannot compute it this way
        return x[:, :n]


try:
    numformer.onnx.export(
        KeepsPositives(), (nf.randn(2, 3),), "bad.onnx", input_names=["x"], dynamic_axes={"x": {0: "batch"}}
    )
except numformer.onnx.OnnxExporterError as err:
    print("OnnxExporterError:", str(err)[:400])

# %% [markdown]
# From the command line: `numformer export onnx runs/demo/model gpt.onnx` exports a model folder
# (or `all-MiniLM-L6-v2`), and `numformer app NAME export` an application's trained models.
# `tests/onnx` checks every `nn` module and model within 1e-6 of numformer's forward.
