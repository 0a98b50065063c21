"""Testing helpers: float64 finite-difference gradient checks."""

from __future__ import annotations

import numpy as np

from numformer.tensor import Tensor


class GradcheckError(AssertionError):
    """Analytic and numerical gradients disagree."""


def gradcheck(fn, inputs, eps: float = 1e-6, atol: float = 1e-6, rtol: float = 1e-5,
              seed: int = 0) -> bool:  # fmt: skip
    """Compare ``backward`` against central differences for every input that requires grad.

    ``fn(*inputs)`` returns a Tensor (any shape). Inputs must be float64 tensors. The output is
    projected on a fixed random direction ``r`` so one backward checks the whole Jacobian-vector
    product: analytic d(sum(r * fn))/dx against (f(x + eps e_i) - f(x - eps e_i)) / (2 eps).
    Returns True or raises ``GradcheckError`` naming the input, the worst element and both values.
    """
    inputs = list(inputs)
    for i, t in enumerate(inputs):
        if isinstance(t, Tensor) and t.requires_grad and t.dtype != np.float64:
            raise TypeError(f"gradcheck: input {i} must be float64 for finite differences, "
                            f"got {t.dtype}")  # fmt: skip
    for t in inputs:
        if isinstance(t, Tensor) and not t.data.flags.c_contiguous:
            t.data = t.data.copy(order="C")  # so the flat view below perturbs t itself
    out = fn(*inputs)
    r = np.random.default_rng(seed).standard_normal(out.shape)

    def scalar() -> float:
        return float(np.sum(fn(*inputs).data * r))

    for t in inputs:
        if isinstance(t, Tensor):
            t.grad = None
    (out * Tensor(r, dtype=np.float64)).sum().backward()
    for i, t in enumerate(inputs):
        if not (isinstance(t, Tensor) and t.requires_grad):
            continue
        analytic = np.zeros(t.shape) if t.grad is None else t.grad.astype(np.float64)
        numeric = np.zeros(t.shape)
        flat = t.data.reshape(-1)  # a view: perturb in place
        for j in range(flat.size):
            old = flat[j]
            flat[j] = old + eps
            plus = scalar()
            flat[j] = old - eps
            minus = scalar()
            flat[j] = old
            numeric.reshape(-1)[j] = (plus - minus) / (2 * eps)
        err = np.abs(analytic - numeric) - (atol + rtol * np.abs(numeric))
        if (err > 0).any():
            worst = np.unravel_index(np.argmax(err), t.shape)
            raise GradcheckError(
                f"gradcheck: input {i} (shape {t.shape}) at index {worst}: analytic "
                f"{analytic[worst]:.10g} vs numerical {numeric[worst]:.10g}"
            )
    return True
