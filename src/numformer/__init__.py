"""numformer: Transformers from scratch in NumPy, verified against PyTorch.

The engine (``Tensor``, ``backward``, ``no_grad``) sits on NumPy alone; ``numformer.nn``
builds layers on it. As after ``import torch``, the namespaces are attributes of the package:
``nf.nn``, ``nf.nn.functional``, ``nf.nn.utils``, ``nf.optim``, ``nf.optim.lr_scheduler`` and
``nf.utils.data``. Float32 by default (``set_default_dtype`` to change), and every random draw
goes through one generator seeded by ``manual_seed``.

Fast by default, as PyTorch sets its intra-op threads on import: importing numformer runs its
kernels on every core this process may use (``set_num_threads``; NumPy's OpenBLAS is then pinned
to one thread while numformer's threads split work) and keeps NumPy's large temporaries in the
heap (``tune_allocator``, glibc only). Both are process-wide. Environment variables change them:
``NUMFORMER_NUM_THREADS=n`` (``1``: numformer's kernels on the calling thread, BLAS untouched)
and ``NUMFORMER_TUNE_ALLOCATOR=0`` (glibc's defaults).
"""

import os as _os
import warnings as _warnings

import numpy as _np

# The namespaces PyTorch users reach through the package (``torch.nn``, ``torch.optim``, ...).
import numformer.nn.functional  # noqa: F401
import numformer.nn.utils  # noqa: F401
import numformer.optim.lr_scheduler  # noqa: F401
import numformer.utils.data  # noqa: F401
from numformer import nn, optim, utils
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
from numformer.tensor import Tensor, as_tensor, cat, concatenate, masked_fill, matmul, split, stack, where


def _threads_from_env() -> int:
    """``NUMFORMER_NUM_THREADS`` as a positive int, or every core this process may use."""
    from numformer.ops._threads import default_num_threads

    value = _os.environ.get("NUMFORMER_NUM_THREADS", "").strip()
    if not value:  # unset or empty
        return default_num_threads()
    if not value.strip().isdigit() or int(value) < 1:
        _warnings.warn(
            f"NUMFORMER_NUM_THREADS must be a positive integer, got {value!r}; using every core", stacklevel=2
        )
        return default_num_threads()
    return int(value)


set_num_threads(_threads_from_env())
_tune = _os.environ.get("NUMFORMER_TUNE_ALLOCATOR", "1").strip().lower()
if _tune not in ("0", "false", "no", "off", "1", "true", "yes", "on", ""):
    _warnings.warn(f"NUMFORMER_TUNE_ALLOCATOR must be 0 or 1, got {_tune!r}; tuning the allocator", stacklevel=2)
if _tune not in ("0", "false", "no", "off"):
    tune_allocator()

float32 = _np.float32
float64 = _np.float64
int64 = _np.int64
bool_ = _np.bool_

__version__ = "0.1.0"

__all__ = [
    "nn",
    "optim",
    "utils",
    "as_tensor",
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
