"""numformer: Transformers from scratch in NumPy, verified against PyTorch.

The engine (``Tensor``, ``backward``, ``no_grad``) sits on NumPy alone; ``numformer.nn``
builds layers on it. As after ``import torch``, the namespaces are attributes of the package:
``nf.nn``, ``nf.nn.functional``, ``nf.nn.utils``, ``nf.nn.parallel``, ``nf.optim``,
``nf.optim.lr_scheduler``, ``nf.utils.data``, ``nf.distributed``, ``nf.amp``, ``nf.cuda`` and
``nf.backends``. Float32 by default (``set_default_dtype`` to change), and every random draw
goes through one generator seeded by ``manual_seed``.

Fast by default, as PyTorch sets its intra-op threads on import: importing numformer runs its
kernels on every core this process may use (``set_num_threads``; NumPy's OpenBLAS is then pinned
to one thread while numformer's threads split work) and keeps NumPy's large temporaries in the
heap (``tune_allocator``, glibc only). Both are process-wide. Environment variables change them:
``NUMFORMER_NUM_THREADS=n`` (``1``: numformer's kernels and BLAS on the calling thread)
and ``NUMFORMER_TUNE_ALLOCATOR=0`` (glibc's defaults).
"""

# ruff: noqa: F401, E402 - the facade hands names on
import builtins as _builtins
import os as _os
import warnings as _warnings

import numpy as _np

# The tensor API's one table, installed as Tensor's methods before anything uses them.
from numformer import functions as _functions

_functions.install()

# The namespaces PyTorch users reach through the package (``torch.nn``, ``torch.optim``, ...).
import numformer.nn.functional  # noqa: E402, F401
import numformer.nn.parallel  # noqa: E402, F401
import numformer.nn.utils  # noqa: E402, F401
import numformer.optim.lr_scheduler  # noqa: E402, F401
import numformer.utils.data  # noqa: E402, F401
from numformer import accelerator, amp, backends, cuda, distributed, nn, optim, utils  # noqa: E402
from numformer.amp import autocast  # noqa: E402
from numformer.autograd import (  # noqa: E402
    enable_grad,
    inference_mode,
    is_grad_enabled,
    is_inference_mode_enabled,
    no_grad,
    set_grad_enabled,
)
from numformer.backend import Device as device  # noqa: E402, N813 - PyTorch's name
from numformer.backend import (  # noqa: E402
    Generator,
    default_generator,
    get_default_dtype,
    get_rng_state,
    initial_seed,
    manual_seed,
    set_default_dtype,
    set_rng_state,
    tune_allocator,
)
from numformer.backend import bfloat16 as _backend_bfloat16  # noqa: E402
from numformer.backends import get_float32_matmul_precision, set_float32_matmul_precision  # noqa: E402
from numformer.compiler import compile  # noqa: E402, A004 - PyTorch's name
from numformer.creation import (  # noqa: E402
    arange,
    as_tensor,  # noqa: E402
    empty,
    empty_like,
    eye,
    from_numpy,
    full,
    full_like,
    is_floating_point,
    is_tensor,
    linspace,
    meshgrid,
    ones,
    ones_like,
    rand,
    rand_like,
    randint,
    randn,
    randn_like,
    randperm,
    tensor,
    zeros,
    zeros_like,
)
from numformer.functions import TABLE as _TABLE  # noqa: E402
from numformer.ops._threads import get_num_threads, set_num_threads  # noqa: E402
from numformer.serialization.pickled import load, save  # noqa: E402 - torch.save/torch.load
from numformer.tensor import Tensor, cat, concatenate, split, stack  # noqa: E402

globals().update({name: fn for name, fn in _TABLE.items() if name not in ("split", "matmul")})
globals().update(_functions.MODULE)
from numformer.functions import where_ as where  # noqa: E402
from numformer.tensor import matmul  # noqa: E402

concat = cat


def _threads_from_env() -> int:
    """``NUMFORMER_NUM_THREADS`` as a positive int, or every core this process may use."""
    from numformer.ops._threads import default_num_threads

    value = _os.environ.get("NUMFORMER_NUM_THREADS", "").strip()
    if not value:  # unset or empty
        return default_num_threads()
    if not value.strip().isdigit() or _builtins.int(value) < 1:
        _warnings.warn(
            f"NUMFORMER_NUM_THREADS must be a positive integer, got {value!r}; using every core", stacklevel=2
        )
        return default_num_threads()
    return _builtins.int(value)


_tune = _os.environ.get("NUMFORMER_TUNE_ALLOCATOR", "1").strip().lower()
if _tune not in ("0", "false", "no", "off", "1", "true", "yes", "on", ""):
    _warnings.warn(f"NUMFORMER_TUNE_ALLOCATOR must be 0 or 1, got {_tune!r}; tuning the allocator", stacklevel=2)
if _tune not in ("0", "false", "no", "off"):
    tune_allocator()  # before the kernel threads start: each would otherwise take an arena of its own
set_num_threads(_threads_from_env())

# dtypes, with PyTorch's names (NumPy's dtypes: ``t.dtype == numformer.float32``)
float32 = float = _np.dtype(_np.float32)  # noqa: A001 - PyTorch's names
float64 = double = _np.dtype(_np.float64)
float16 = half = _np.dtype(_np.float16)
bfloat16 = _backend_bfloat16  # ml_dtypes' where installed; naming it never fails
int64 = long = _np.dtype(_np.int64)
int32 = int = _np.dtype(_np.int32)  # noqa: A001
int16 = short = _np.dtype(_np.int16)
int8 = _np.dtype(_np.int8)
uint8 = _np.dtype(_np.uint8)
bool = bool_ = _np.dtype(_np.bool_)  # noqa: A001


def _tensor_type(name: str, dtype):
    def make(*data):
        """A tensor of this type from data or a size (PyTorch's legacy ``torch.LongTensor(...)``)."""
        if len(data) == 1 and not isinstance(data[0], (_builtins.int, _builtins.float)):
            return tensor(data[0], dtype=dtype)
        return zeros(*data, dtype=dtype)

    make.__name__ = make.__qualname__ = name
    return make


FloatTensor = _tensor_type("FloatTensor", float32)
DoubleTensor = _tensor_type("DoubleTensor", float64)
HalfTensor = _tensor_type("HalfTensor", float16)
LongTensor = _tensor_type("LongTensor", int64)
IntTensor = _tensor_type("IntTensor", int32)
ByteTensor = _tensor_type("ByteTensor", uint8)
BoolTensor = _tensor_type("BoolTensor", bool_)

# einops on numformer tensors: its backend is defined when einops loads (never imported here)
from numformer import _einops  # noqa: E402

_einops.install()

__version__ = "0.1.0"

# ``from numformer import *`` gives every public name but the dtypes named like Python's types
__all__ = sorted(n for n in globals() if not n.startswith("_") and not hasattr(_builtins, n))
