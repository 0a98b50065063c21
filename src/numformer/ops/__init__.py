"""Primitives: each a ``Function`` with its forward and backward side by side.

- ``elementwise``: arithmetic, unary maths, activations (ReLU, GELU), where, clip, cast
- ``reduce``: sum, mean, var, max
- ``shape``: reshape, permute, broadcast, getitem, cat, stack
- ``linalg``: matmul and the linear layer's ``x W^T + b`` (a decoding step's few rows in blocks)
- ``softmax``: softmax, log_softmax
- ``normalization``: layer norm, layer norm of a sum (post-LN's "add & norm"), RMS norm
- ``gated``: SiLU and the SwiGLU product silu(gate) * up
- ``rotary``: rotary position embedding of queries and keys
- ``attention``: scaled dot-product attention, plain and blocked (flash attention's algorithm)
- ``loss``: cross-entropy, NLL, and the elementwise losses (MSE, L1, smooth L1, Huber, binary
  cross-entropy of probabilities and of logits, KL divergence)
- ``activation``: the pointwise activations beyond ReLU and GELU (leaky ReLU, ELU/SELU/CELU,
  softplus, hardtanh, log-sigmoid, hardsigmoid, hardswish, mish, softsign)
- ``conv``: 2-D convolution (im2col and one GEMM), max and average pooling
- ``pad``: padding (constant, reflect, replicate, circular); ``normalize``: unit p-norm vectors
- ``embedding``, ``dropout``
- ``recurrent``: one RNN, LSTM or GRU layer's loop over time (backpropagation through time)
- ``masks``: position ids, padding masks and the attention's merged mask (no gradient)

The fused kernels (softmax, layer norm, attention, the losses, convolution and pooling, the
recurrent layers' time loops) have hand-derived backward passes, no graph inside. ``_threads`` is
the one internal API through which a kernel splits its work over threads and controls BLAS;
outside ``numformer.ops`` only the package's facade (``set_num_threads``), the command line and
the MPI ranks (which set the count) and DataLoader workers (one thread each) import it.
"""
