"""Basic layers with PyTorch's names, arguments, defaults, initialisation and state-dict keys."""

from __future__ import annotations

import math

import numpy as np

from numformer.backend import xp
from numformer.nn import functional as F
from numformer.nn import init
from numformer.nn.checks import check_dim, check_features, dtype_or_default
from numformer.nn.module import Module, Parameter
from numformer.tensor import Tensor


def _empty(*shape, dtype=None) -> Parameter:
    return Parameter(xp.zeros(shape, dtype=dtype_or_default(dtype)))


def _place(module: Module, device) -> None:
    """PyTorch's ``device=`` factory argument: the new module's parameters and buffers on
    ``device`` (None: where numformer makes them, the host)."""
    if device is not None:
        module.to(device)


class Identity(Module):
    def forward(self, x):
        """Return ``x`` unchanged.

        Shape: any ``(*)`` -> the same."""
        return x


class Flatten(Module):
    """Flatten dims ``start_dim`` to ``end_dim`` into one (PyTorch's default keeps the batch dim).

    Args:
        start_dim: the first dimension to flatten.
        end_dim: the last dimension to flatten (inclusive).
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim, self.end_dim = start_dim, end_dim

    def forward(self, input):  # noqa: A002 - PyTorch's argument name
        """``input.flatten(start_dim, end_dim)``.

        Shape: ``(N, *dims)`` -> ``(N, prod(dims))`` with the defaults."""
        return input.flatten(self.start_dim, self.end_dim)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Unflatten(Module):
    """Split dim ``dim`` into ``unflattened_size`` (one entry may be -1), the inverse of ``Flatten``.

    Args:
        dim: the dimension to split.
        unflattened_size: the sizes it becomes (their product is its size; one may be -1).
    """

    def __init__(self, dim: int, unflattened_size):
        super().__init__()
        self.dim, self.unflattened_size = dim, tuple(unflattened_size)

    def forward(self, input):  # noqa: A002
        """``input`` with dim ``dim`` reshaped to ``unflattened_size``.

        Shape: ``(*, S, *)`` -> ``(*, *unflattened_size, *)``, prod(unflattened_size) = S.

        Raises:
            ValueError: ``dim`` out of range, or sizes whose product is not S."""
        axis = check_dim("Unflatten", self.dim, input.ndim)
        sizes = self.unflattened_size
        known = math.prod(s for s in sizes if s != -1)
        if sizes.count(-1) > 1 or (-1 not in sizes and known != input.shape[axis]) or input.shape[axis] % max(known, 1):
            raise ValueError(
                f"Unflatten: unflattened_size {sizes} does not hold dim {self.dim} of size {input.shape[axis]} "
                f"(input shape {input.shape})"
            )
        return input.reshape(input.shape[:axis] + sizes + input.shape[axis + 1 :])

    def extra_repr(self) -> str:
        return f"dim={self.dim}, unflattened_size={self.unflattened_size}"


class ReLU(Module):
    """max(x, 0); ``inplace=True`` writes the result into the input, as PyTorch's.

    Args:
        inplace: write the result into the input (its graph records the change).
    """

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def forward(self, x):
        """max(x, 0) elementwise; NaN stays NaN.

        Shape: ``(*)`` -> ``(*)``, dtype kept."""
        return F.relu(x, self.inplace)

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class Tanh(Module):
    def forward(self, x):
        """tanh(x) elementwise.

        Shape: ``(*)`` -> ``(*)``, dtype kept."""
        return F.tanh(x)


class GELU(Module):
    """GELU; ``approximate="tanh"`` for the tanh form (GPT-2's).

    Gaussian error linear unit (Hendrycks and Gimpel, 2016): x * Phi(x).

    Args:
        approximate: ``"none"`` for the exact erf form, ``"tanh"`` for the tanh approximation.
    """

    def __init__(self, approximate: str = "none"):
        super().__init__()
        self.approximate = approximate

    def forward(self, x):
        """x * Phi(x) (Hendrycks and Gimpel, 2016), or its tanh approximation.

        Shape: ``(*)`` -> ``(*)``, floating dtype kept.

        Raises:
            TypeError: integer input. ValueError: ``approximate`` not "none" or "tanh"."""
        return F.gelu(x, self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class Dropout(Module):
    """Inverted dropout while training; the identity in eval mode.

    Srivastava et al., 2014: zero each element with probability ``p`` and scale the kept ones by
    1 / (1 - p), so the expected value is unchanged and eval mode needs no rescaling.

    Args:
        p: the probability of zeroing an element, in [0, 1].
        inplace: write the result into the input.

    Raises:
        ValueError: ``p`` outside [0, 1].

    Examples:
        >>> import numformer as nf
        >>> drop = nf.nn.Dropout(p=0.5)
        >>> y = drop(nf.ones(1000))
        >>> sorted(set(y.tolist()))  # zeroed or scaled by 1 / (1 - p)
        [0.0, 2.0]
        >>> drop.eval()(nf.ones(3))
        tensor([1., 1., 1.])
    """

    def __init__(self, p: float = 0.5, inplace: bool = False):
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{type(self).__name__}: p must be in [0, 1], got {p}")
        self.p, self.inplace = p, inplace

    def forward(self, x):
        """Zero each element with probability ``p`` and scale the rest by 1/(1 - p) in training
        (Srivastava et al., 2014); the identity in eval mode or for p = 0. Draws come from
        ``manual_seed``'s generator.

        Shape: ``(*)`` -> ``(*)``."""
        return F.dropout(x, self.p, self.training, self.inplace)

    def extra_repr(self) -> str:
        return f"p={self.p}" + (", inplace=True" if self.inplace else "")


class Dropout1d(Dropout):
    """Channel dropout for ``(N, C, L)``: whole channels zeroed (Tompson et al., 2015).

    Args:
        p: the probability of zeroing a channel.
        inplace: write the result into the input.
    """

    def forward(self, x):
        """``F.dropout1d`` in training, the identity in eval mode.

        Shape: ``(N, C, L)`` or ``(C, L)`` -> the same."""
        return F.dropout1d(x, self.p, self.training, self.inplace)


class Dropout2d(Dropout):
    """Channel dropout for ``(N, C, H, W)``: whole feature maps zeroed (Tompson et al., 2015).

    Args:
        p: the probability of zeroing a channel.
        inplace: write the result into the input.
    """

    def forward(self, x):
        """``F.dropout2d`` in training, the identity in eval mode.

        Shape: ``(N, C, H, W)`` -> the same."""
        return F.dropout2d(x, self.p, self.training, self.inplace)


class Linear(Module):
    """y = x W^T + b. Input ``(*, in_features)``, output ``(*, out_features)``.

    ``weight`` is ``(out_features, in_features)``; both initialised U(-1/sqrt(in), 1/sqrt(in)),
    PyTorch's default.

    Args:
        in_features: the size of each input's last dimension.
        out_features: the size of each output's last dimension.
        bias: learn an additive bias.
        device: where the parameters are made (``"cpu"`` or ``"cuda"``; default: where numformer
            computes, as PyTorch's factory argument).
        dtype: the parameters' floating dtype (default: numformer's default dtype).

    Shape:
        ``(*, in_features)`` -> ``(*, out_features)``.

    Examples:
        >>> import numformer as nf
        >>> layer = nf.nn.Linear(4, 3)
        >>> layer(nf.randn(2, 5, 4)).shape
        (2, 5, 3)
        >>> [name for name, _ in layer.named_parameters()]
        ['weight', 'bias']
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, device=None, dtype=None):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = _empty(out_features, in_features, dtype=dtype)
        self.bias = _empty(out_features, dtype=dtype) if bias else None
        self.reset_parameters()
        _place(self, device)

    def reset_parameters(self) -> None:
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features) if self.in_features > 0 else 0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x):
        """y = x W^T + b.

        Shape: ``(*, in_features)`` -> ``(*, out_features)``; dtype of the weight.

        Raises:
            ValueError: the last dim is not ``in_features``. TypeError: dtypes differ."""
        check_features("Linear", x, self.in_features)
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def linear_then(linear: Module, activation: Module, x):
    """``activation(linear(x))``, in one kernel when ``linear`` is a plain ``Linear`` and
    ``activation`` a plain ``ReLU`` or ``GELU`` (``F.linear_relu``, ``F.linear_gelu``: the
    activation runs on each thread's block of the GEMM's result while it is in cache); otherwise,
    or with a forward hook on either module (hooks see each module's own output) or a
    ``forward`` set on either instance, the two calls.
    The same values and gradients either way. Feed-forward blocks call it between their layers.

    Shape: ``(*, in_features)`` -> ``(*, out_features)``."""
    plain = (  # no hook, no forward of the instance's own (an adapter's, a tracer's)
        type(linear) is Linear
        and not linear.has_forward_hooks()
        and not activation.has_forward_hooks()
        and "forward" not in vars(linear)
        and "forward" not in vars(activation)
    )
    if plain:
        if type(activation) is ReLU:
            check_features("Linear", x, linear.in_features)
            return F.linear_relu(x, linear.weight, linear.bias)
        if type(activation) is GELU and activation.approximate in ("none", "tanh"):
            check_features("Linear", x, linear.in_features)
            return F.linear_gelu(x, linear.weight, linear.bias, activation.approximate)
    return activation(linear(x))


class NonDynamicallyQuantizableLinear(Linear):
    """``Linear`` under the name PyTorch gives ``MultiheadAttention.out_proj`` (its quantisation
    tooling skips that layer by this name; numformer has no such tooling, so it is ``Linear``
    in all but name). Programs name it when they allow classes for loading whole models."""


class Embedding(Module):
    """Lookup table ``weight`` ``(num_embeddings, embedding_dim)``, N(0, 1) initialised; the
    ``padding_idx`` row starts at zero and never gets a gradient.

    Args:
        num_embeddings: the number of rows (the vocabulary's size).
        embedding_dim: the width of each row.
        padding_idx: a row kept at zero and never updated (padding tokens), or None.
        device: where the parameters are made (``"cpu"`` or ``"cuda"``; default: where numformer
            computes, as PyTorch's factory argument).
        dtype: the table's floating dtype.

    Shape:
        integer ids ``(*)`` -> ``(*, embedding_dim)``.

    Examples:
        >>> import numformer as nf
        >>> embed = nf.nn.Embedding(10, 4, padding_idx=0)
        >>> embed(nf.tensor([[0, 3, 9]])).shape
        (1, 3, 4)
        >>> embed.weight[0].tolist()
        [0.0, 0.0, 0.0, 0.0]
    """

    def __init__(
        self, num_embeddings: int, embedding_dim: int, padding_idx: int | None = None, *, device=None, dtype=None
    ):
        super().__init__()
        self.num_embeddings, self.embedding_dim = num_embeddings, embedding_dim
        if padding_idx is not None:
            if not -num_embeddings <= padding_idx < num_embeddings:
                raise ValueError(
                    f"Embedding: padding_idx must be in [-{num_embeddings}, {num_embeddings}), got {padding_idx}"
                )
            padding_idx %= num_embeddings
        self.padding_idx = padding_idx
        self.weight = _empty(num_embeddings, embedding_dim, dtype=dtype)
        init.normal_(self.weight)
        if padding_idx is not None:
            self.weight.array[padding_idx] = 0
        _place(self, device)

    def forward(self, indices):
        """The rows of ``weight`` at ``indices``.

        Shape: integer ``(*)`` -> ``(*, embedding_dim)``.

        Raises:
            TypeError: indices not integers. IndexError: an index outside [0, num_embeddings)."""
        return F.embedding(indices, self.weight, self.padding_idx)

    def extra_repr(self) -> str:
        pad = f", padding_idx={self.padding_idx}" if self.padding_idx is not None else ""
        return f"{self.num_embeddings}, {self.embedding_dim}{pad}"


class LayerNorm(Module):
    """Layer normalisation over the trailing ``normalized_shape`` dims (fused kernel).

    Ba et al., 2016, "Layer Normalization": ``(x - mean) / sqrt(var + eps) * weight + bias``, with
    the biased variance, over the trailing ``normalized_shape`` dims; one primitive with a
    hand-derived backward.

    Args:
        normalized_shape: the trailing shape to normalise over (an int for the last dim).
        eps: added to the variance.
        elementwise_affine: learn ``weight`` (ones) and ``bias`` (zeros).
        bias: learn ``bias`` too (with ``elementwise_affine``).
        device: where the parameters are made (``"cpu"`` or ``"cuda"``; default: where numformer
            computes, as PyTorch's factory argument).
        dtype: the parameters' floating dtype.

    Shape:
        ``(*, *normalized_shape)`` -> the same.

    Examples:
        >>> import numformer as nf
        >>> norm = nf.nn.LayerNorm(8)
        >>> y = norm(nf.randn(2, 3, 8) * 5 + 1)
        >>> abs(float(y.mean())) < 1e-6, round(float(y.std(-1, unbiased=False).mean()), 3)
        (True, 1.0)
    """

    def __init__(
        self,
        normalized_shape,
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
        device=None,
        dtype=None,
    ):
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        self.normalized_shape, self.eps = shape, eps
        self.weight = self.bias = None
        if elementwise_affine:
            self.weight = Parameter(xp.ones(shape, dtype=dtype_or_default(dtype)))
            if bias:
                self.bias = Parameter(xp.zeros(shape, dtype=dtype_or_default(dtype)))
        _place(self, device)

    def forward(self, x):
        """(x - mean) / sqrt(var + eps) * weight + bias over the trailing ``normalized_shape``
        dims, biased variance (Ba et al., 2016; PyTorch's ``nn.LayerNorm``).

        Shape: ``(*, *normalized_shape)`` -> the same, floating dtype kept.

        Raises:
            ValueError: the input does not end with ``normalized_shape``. TypeError: integer input."""
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def add_and_norm(self, x, residual):
        """``self(x + residual)`` with the add fused into the kernel (``F.add_layer_norm``).
        With forward hooks registered, or operands that would broadcast, it is exactly that
        call, so hooks still see the sum as the input."""
        if self._forward_hooks or x.shape != residual.shape or x.dtype != residual.dtype:
            return self(x + residual)
        return F.add_layer_norm(x, residual, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.weight is not None}"


class _BatchNorm(Module):
    """Batch normalisation over ``(N, C, *)`` inputs (seed section 7): each channel normalised
    over the batch and every position.

    Training: normalise with the batch's mean and biased variance; update
    ``running = (1 - momentum) * running + momentum * batch`` with the *unbiased* variance
    (PyTorch's convention), and count ``num_batches_tracked``. ``momentum=None`` uses a
    cumulative average. Eval: normalise with the running statistics.

    Args:
        num_features: C, the channels.
        eps: added to the variance.
        momentum: the running statistics' update factor, or None for a cumulative average.
        affine: learn a per-channel ``weight`` and ``bias``.
        track_running_stats: keep running statistics (and use them in eval mode).
        device: accepted for PyTorch's signature (the default device).
        dtype: the parameters' and statistics' floating dtype.
    """

    ndims = (2, 3)  # the input dims this variant takes
    layouts = ""

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device=None,
        dtype=None,
    ):
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        d = dtype_or_default(dtype)
        self.weight = Parameter(xp.ones(num_features, dtype=d)) if affine else None
        self.bias = Parameter(xp.zeros(num_features, dtype=d)) if affine else None
        if track_running_stats:
            self.register_buffer("running_mean", xp.zeros(num_features, dtype=d))
            self.register_buffer("running_var", xp.ones(num_features, dtype=d))
            self.register_buffer("num_batches_tracked", xp.zeros((), dtype=np.int64))
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None
        if device is not None:
            self.to(device)

    def forward(self, x):
        """Normalise each channel over the batch (and positions) (Ioffe and Szegedy, 2015):
        batch statistics in training, the running ones in eval mode.

        Shape: ``(N, C, *)`` (the variant's dims) -> the same.

        Raises:
            ValueError: the channel dim is not ``num_features``, or a training batch has one value
            per channel (no variance)."""
        name = type(self).__name__
        if x.ndim not in self.ndims or x.shape[1] != self.num_features:
            raise ValueError(
                f"{name}: input must be {self.layouts.replace('C', str(self.num_features))}, got shape {x.shape}"
            )
        axes = (0,) + tuple(range(2, x.ndim))
        shape = (1, self.num_features) + (1,) * (x.ndim - 2)
        use_batch = self.training or not self.track_running_stats
        if use_batch:
            n = x.numel() // self.num_features
            if n <= 1:
                raise ValueError(f"{name}: training needs more than 1 value per channel, got input shape {x.shape}")
            mean = x.mean(dim=axes, keepdim=True)
            var = x.var(dim=axes, keepdim=True, correction=0)
            if self.training and self.track_running_stats:
                self._update_running(mean.array.reshape(-1), var.array.reshape(-1) * n / (n - 1))
        else:
            mean = Tensor(self.running_mean.array.reshape(shape))
            var = Tensor(self.running_var.array.reshape(shape))
        y = (x - mean) / (var + self.eps).sqrt()
        if self.affine:
            y = y * self.weight.reshape(shape) + self.bias.reshape(shape)
        return y

    def _update_running(self, mean: np.ndarray, unbiased_var: np.ndarray) -> None:
        self.num_batches_tracked.array += 1
        m = self.momentum
        if m is None:
            m = 1.0 / float(self.num_batches_tracked.array)
        self.running_mean.array[...] = (1 - m) * self.running_mean.array + m * mean
        self.running_var.array[...] = (1 - m) * self.running_var.array + m * unbiased_var

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}"


class BatchNorm1d(_BatchNorm):
    """Batch normalisation over ``(N, C)`` or ``(N, C, L)`` inputs (see ``_BatchNorm``).

    Args:
        num_features: C, the channels.
        eps: added to the variance.
        momentum: the running statistics' update factor, or None for a cumulative average.
        affine: learn a per-channel ``weight`` and ``bias``.
        track_running_stats: keep running statistics (and use them in eval mode).
        device: accepted for PyTorch's signature (the default device).
        dtype: the parameters' and statistics' floating dtype.
    """

    ndims, layouts = (2, 3), "(N, C) or (N, C, L)"

    def forward(self, x):
        """Normalise each channel over the batch (and length) (Ioffe and Szegedy, 2015).

        Shape: ``(N, C)`` or ``(N, C, L)`` -> the same.

        Raises:
            ValueError: the channel dim is not ``num_features``, or a training batch has one value
            per channel (no variance)."""
        return super().forward(x)


class BatchNorm2d(_BatchNorm):
    """Batch normalisation over images ``(N, C, H, W)`` (the seed's CNNs; see ``_BatchNorm``).

    Args:
        num_features: C, the channels.
        eps: added to the variance.
        momentum: the running statistics' update factor, or None for a cumulative average.
        affine: learn a per-channel ``weight`` and ``bias``.
        track_running_stats: keep running statistics (and use them in eval mode).
        device: accepted for PyTorch's signature (the default device).
        dtype: the parameters' and statistics' floating dtype.
    """

    ndims, layouts = (4,), "(N, C, H, W)"

    def forward(self, x):
        """Normalise each channel over the batch and every pixel (Ioffe and Szegedy, 2015).

        Shape: ``(N, C, H, W)`` -> the same.

        Raises:
            ValueError: the channel dim is not ``num_features``, or a training batch has one value
            per channel."""
        return super().forward(x)


class FeedForward(Module):
    """The position-wise feed-forward network (seed section 5):
    ``linear2(dropout(activation(linear1(x))))``, ``(*, d_model) -> (*, d_model)``.

    Args:
        d_model: the input's and output's width.
        d_ff: the hidden width.
        activation: ``"relu"``, ``"gelu"``, ``"gelu_tanh"``, ``"tanh"`` or a module.
        dropout: dropout after the activation (training only).
    """

    def __init__(self, d_model: int, d_ff: int, activation: str = "relu", dropout: float = 0.0):
        super().__init__()
        self.linear1 = Linear(d_model, d_ff)
        self.activation = get_activation(activation)
        self.dropout = Dropout(dropout)
        self.linear2 = Linear(d_ff, d_model)

    def forward(self, x):
        """``linear2(dropout(activation(linear1(x))))``.

        Shape: ``(*, d_model)`` -> ``(*, d_model)`` through ``(*, d_ff)``."""
        return self.linear2(self.dropout(linear_then(self.linear1, self.activation, x)))


def get_activation(activation) -> Module:
    """A module for ``"relu"``, ``"gelu"``, ``"gelu_tanh"`` or ``"tanh"``, or the module given."""
    if isinstance(activation, Module):
        return activation
    table = {"relu": ReLU, "gelu": GELU, "tanh": Tanh, "gelu_tanh": lambda: GELU(approximate="tanh")}
    if activation not in table:
        raise ValueError(f"activation must be one of {sorted(table)} or a Module, got {activation!r}")
    return table[activation]()


# --- the Llama family's layers: SiLU and RMSNorm ---------------------------------------------


class SiLU(Module):
    """SiLU (swish), x * sigmoid(x): the activation of Llama's gated feed-forward layers.
    ``inplace`` is accepted for PyTorch's signature; a new tensor comes back either way.

    Args:
        inplace: accepted for PyTorch's signature.
    """

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def forward(self, x):
        """x * sigmoid(x) elementwise (Elfwing et al., 2018; one fused kernel).

        Shape: ``(*)`` -> ``(*)``, floating dtype kept.

        Raises:
            TypeError: integer input."""
        return F.silu(x)


class RMSNorm(Module):
    """Root-mean-square normalisation over the trailing ``normalized_shape`` dims, scaled by a
    learned ``weight`` (ones at first), no bias (Zhang and Sennrich, 2019; Llama's norm; PyTorch's
    ``nn.RMSNorm``). ``eps=None`` takes the input dtype's machine epsilon, as PyTorch does;
    Llama-family checkpoints set it (``rms_norm_eps``, 1e-5 or 1e-6).

    Args:
        normalized_shape: the trailing shape to normalise over (an int for the last dim).
        eps: added to the mean square (None: the dtype's machine epsilon).
        elementwise_affine: learn ``weight`` (ones).
        device: where the parameters are made (``"cpu"`` or ``"cuda"``; default: where numformer
            computes, as PyTorch's factory argument).
        dtype: the weight's floating dtype.
    """

    def __init__(
        self, normalized_shape, eps: float | None = None, elementwise_affine: bool = True, device=None, dtype=None
    ):
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
        self.normalized_shape, self.eps = shape, eps
        self.weight = Parameter(xp.ones(shape, dtype=dtype_or_default(dtype))) if elementwise_affine else None
        _place(self, device)

    def forward(self, x):
        """x / sqrt(mean(x^2) + eps) * weight over the trailing ``normalized_shape`` dims.

        Shape: ``(*, *normalized_shape)`` -> the same, floating dtype kept.

        Raises:
            ValueError: the input does not end with ``normalized_shape``. TypeError: integer input."""
        return F.rms_norm(x, self.normalized_shape, self.weight, self.eps)

    def extra_repr(self) -> str:
        return f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.weight is not None}"
