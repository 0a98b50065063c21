"""Primitives: each a ``Function`` with its forward and backward side by side.

- ``elementwise``: arithmetic, unary maths, activations, where, clip, cast
- ``reduce``: sum, mean, var, max
- ``shape``: reshape, permute, broadcast, getitem, cat, stack
- ``linalg``: matmul
- ``fused``: softmax, log_softmax, layer_norm, dropout, embedding, cross_entropy, mse_loss,
  scaled_dot_product_attention (hand-derived backward, no graph inside)
"""
