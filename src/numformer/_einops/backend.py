"""numformer's einops backend: defining ``NumformerBackend`` registers it with einops (see
``numformer._einops``). Every operation is a numformer tensor op, so gradients flow through
``rearrange`` (reshape and permute), ``repeat`` (unsqueeze and expand), ``reduce`` and
``einsum`` as through the ops themselves.

Source: einops (Rogozhnikov, ICLR 2022) and its backend interface, ``einops._backends``.
"""

from __future__ import annotations

from einops._backends import AbstractBackend

from numformer import backend as _backend
from numformer import functions
from numformer.creation import arange, tensor
from numformer.tensor import Tensor, cat, stack


class NumformerBackend(AbstractBackend):
    """einops' operations on ``numformer.Tensor``, as its PyTorch backend does them on
    ``torch.Tensor`` (same reductions, expand for new axes, ``einsum``)."""

    framework_name = "numformer"

    def is_appropriate_type(self, tensor) -> bool:
        return isinstance(tensor, Tensor)

    def from_numpy(self, x):
        return tensor(x, requires_grad=_backend.is_floating(x.dtype))

    def to_numpy(self, x):
        return x.detach().numpy()

    def arange(self, start, stop):
        return arange(start, stop)

    def reduce(self, x, operation, reduced_axes):
        axes = tuple(reduced_axes)
        if operation in ("min", "max"):
            return getattr(x, "a" + operation)(dim=axes)
        if operation in ("sum", "mean"):
            return getattr(x, operation)(dim=axes)
        if operation in ("prod", "any", "all"):  # one dim at a time, as PyTorch's
            for axis in sorted(axes, reverse=True):
                x = getattr(x, operation)(dim=axis)
            return x
        raise NotImplementedError(f"einops reduction {operation!r} is not one numformer has")

    def transpose(self, x, axes):
        return x.permute(tuple(axes))

    def stack_on_zeroth_dimension(self, tensors: list):
        return stack(tensors)

    def add_axis(self, x, new_position):
        return x.unsqueeze(new_position)

    def add_axes(self, x, n_axes, pos2len):
        sizes = [-1] * n_axes
        for position, length in pos2len.items():
            x = x.unsqueeze(position)
            sizes[position] = length
        return x.expand(sizes)

    def tile(self, x, repeats):
        return x.repeat(tuple(repeats))

    def concat(self, tensors, axis: int):
        return cat(tensors, dim=axis)

    def is_float_type(self, x) -> bool:
        return _backend.is_floating(x.dtype)

    def einsum(self, pattern, *x):
        return functions.einsum(pattern, *x)
