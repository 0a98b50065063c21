"""numformer: Transformers from scratch in NumPy, verified against PyTorch.

The engine (``Tensor``, ``backward``, ``no_grad``) sits on NumPy alone; ``numformer.nn``
builds layers on it. Float32 by default (``set_default_dtype`` to change), and every random
draw goes through one generator seeded by ``manual_seed``.
"""

import numpy as _np

from numformer.autograd import enable_grad, is_grad_enabled, no_grad
from numformer.backend import (
    get_default_dtype,
    get_rng_state,
    manual_seed,
    set_default_dtype,
    set_rng_state,
    tune_allocator,
)
from numformer.creation import arange, ones, ones_like, rand, randn, tensor, zeros, zeros_like
from numformer.ops._threads import get_num_threads, set_num_threads
from numformer.tensor import Tensor, cat, concatenate, masked_fill, matmul, split, stack, where

float32 = _np.float32
float64 = _np.float64
int64 = _np.int64
bool_ = _np.bool_

__version__ = "0.1.0"

__all__ = [
    "Tensor",
    "tensor",
    "zeros",
    "ones",
    "zeros_like",
    "ones_like",
    "randn",
    "rand",
    "arange",
    "cat",
    "concatenate",
    "stack",
    "split",
    "where",
    "masked_fill",
    "matmul",
    "no_grad",
    "enable_grad",
    "is_grad_enabled",
    "manual_seed",
    "get_rng_state",
    "set_rng_state",
    "tune_allocator",
    "set_num_threads",
    "get_num_threads",
    "set_default_dtype",
    "get_default_dtype",
    "float32",
    "float64",
    "int64",
    "bool_",
]
