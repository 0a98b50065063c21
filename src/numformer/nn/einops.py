"""einops' layers on ``numformer.nn.Module``: ``Rearrange``, ``Reduce`` and ``EinMix``, with the
arguments and behaviour of ``einops.layers.torch``'s.

``einops.layers.torch`` subclasses ``torch.nn.Module``, so its layers cannot sit in a numformer
model (``nn.Sequential`` refuses them, naming this module). These run einops' own functions
(``Rearrange``, ``Reduce``) and its framework-neutral EinMix mixin (the pattern parsing and the
weight shapes are einops'), so a PyTorch program ports by changing its import line::

    from einops.layers.torch import Rearrange   ->   from numformer.nn.einops import Rearrange

Needs einops (``pip install einops``); importing this module without it raises ImportError.

Source: einops (Rogozhnikov, ICLR 2022), ``einops.layers``.
"""

from __future__ import annotations

import einops
from einops.einops import _prepare_recipes_for_all_dims
from einops.layers._einmix import _EinmixMixin

from numformer.functions import einsum
from numformer.nn.module import Module, Parameter
from numformer.tensor import Tensor


def _checked(layer: Module, operation: str) -> None:
    """einops' parse of the pattern, now rather than at the first call (an ``EinopsError``
    naming the layer)."""
    try:
        _prepare_recipes_for_all_dims(layer.pattern, operation=operation, axes_names=tuple(layer.axes_lengths))
    except einops.EinopsError as err:
        raise einops.EinopsError(f" Error while preparing {layer!r}\n {err}") from None


class Rearrange(Module):
    """``einops.rearrange(input, pattern, **axes_lengths)`` as a layer. Its state is its pattern
    and lengths (plain data), so a model holding it saves and loads whole.

    Args:
        pattern: einops' pattern, e.g. ``"b c (h p1) (w p2) -> b (h w) (p1 p2 c)"``.
        **axes_lengths: sizes of axes the input alone does not fix (``p1=16``).

    Shape:
        Input: what the pattern's left side names. Output: its right side.

    Raises:
        einops.EinopsError: a pattern einops refuses, at construction.

    Example:
        >>> import numformer as nf
        >>> Rearrange("b c h w -> b (h w) c")(nf.zeros(2, 3, 4, 5)).shape
        (2, 20, 3)
    """

    def __init__(self, pattern: str, **axes_lengths) -> None:
        super().__init__()
        self.pattern, self.axes_lengths = pattern, axes_lengths
        _checked(self, "rearrange")

    def forward(self, input: Tensor) -> Tensor:
        return einops.rearrange(input, self.pattern, **self.axes_lengths)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.pattern!r}{''.join(f', {k}={v}' for k, v in self.axes_lengths.items())})"


class Reduce(Module):
    """``einops.reduce(input, pattern, reduction, **axes_lengths)`` as a layer.

    Args:
        pattern: einops' pattern; axes missing on the right are reduced.
        reduction: ``"min"``, ``"max"``, ``"sum"``, ``"mean"`` or ``"prod"``.
        **axes_lengths: sizes of axes the input alone does not fix.

    Shape:
        Input: what the pattern's left side names. Output: its right side.

    Raises:
        einops.EinopsError: a pattern or reduction einops refuses, at construction.

    Example:
        >>> import numformer as nf
        >>> Reduce("b c (h 2) (w 2) -> b c h w", "max")(nf.zeros(1, 3, 4, 4)).shape
        (1, 3, 2, 2)
    """

    def __init__(self, pattern: str, reduction: str, **axes_lengths) -> None:
        super().__init__()
        self.pattern, self.reduction, self.axes_lengths = pattern, reduction, axes_lengths
        _checked(self, reduction)

    def forward(self, input: Tensor) -> Tensor:
        return einops.reduce(input, self.pattern, self.reduction, **self.axes_lengths)

    def __repr__(self) -> str:
        lengths = "".join(f", {k}={v}" for k, v in self.axes_lengths.items())
        return f"{type(self).__name__}({self.pattern!r}, {self.reduction!r}{lengths})"


class EinMix(_EinmixMixin, Module):
    """einops' ``EinMix``: an ``einsum`` of the input with a weight (and an optional bias) whose
    shapes the pattern names, with rearranges before and after; weights drawn from
    U(-b, b) with einops' bound (numformer's generator, so ``manual_seed`` fixes them).

    Args:
        pattern: ``"input axes -> output axes"``.
        weight_shape: the weight's axes, e.g. ``"cin cout"``.
        bias_shape: the bias's axes, or None for no bias.
        **axes_lengths: the size of every axis of the weight and bias.

    Shape:
        Input: the pattern's left side. Output: its right side.

    Example:
        >>> import numformer as nf
        >>> EinMix("b t cin -> b t cout", weight_shape="cin cout", cin=4, cout=6)(nf.zeros(2, 3, 4)).shape
        (2, 3, 6)
    """

    def _create_parameters(self, weight_shape, weight_bound, bias_shape, bias_bound) -> None:
        from numformer.creation import zeros

        self.weight = Parameter(zeros(weight_shape).uniform_(-weight_bound, weight_bound))
        if bias_shape is not None:
            self.bias = Parameter(zeros(bias_shape).uniform_(-bias_bound, bias_bound))
        else:
            self.bias = None

    def _create_rearrange_layers(
        self, pre_reshape_pattern, pre_reshape_lengths, post_reshape_pattern, post_reshape_lengths
    ):
        self.pre_rearrange = (
            None if pre_reshape_pattern is None else Rearrange(pre_reshape_pattern, **pre_reshape_lengths)
        )
        self.post_rearrange = (
            None if post_reshape_pattern is None else Rearrange(post_reshape_pattern, **post_reshape_lengths)
        )

    def forward(self, input: Tensor) -> Tensor:
        if self.pre_rearrange is not None:
            input = self.pre_rearrange(input)
        result = einsum(self.einsum_pattern, input, self.weight)
        if self.bias is not None:
            result = result + self.bias
        if self.post_rearrange is not None:
            result = self.post_rearrange(result)
        return result
