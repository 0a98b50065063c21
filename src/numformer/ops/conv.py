"""2-D convolution and pooling over ``(N, C, H, W)`` images, each one primitive with a
hand-derived backward (1-D is the 2-D case with H = 1, in ``nn.functional``).

All of them read the input through the same windows: for kernel tap (i, j), the strided slice
``x[:, :, i dh :: sh, j dw :: sw]`` (``Ho`` x ``Wo`` of it) holds that tap's input for every
output position at once. So the loops here run over the kernel's taps (KH KW of them, a few to a
few hundred), never over the batch or the output positions, and each step is one vectorised
copy or compare. Backward scatters through the same windows (``_fold``).

Convolution is im2col: the taps' slices stacked into columns ``(N, G, C/G KH KW, Ho Wo)``, then one
batched GEMM with the weights (Chellapilla et al., 2006). When the stride equals the kernel and
nothing overlaps or pads (a ViT's patch embedding) the columns are one reshape and transpose of
the input.
"""

from __future__ import annotations

from numformer.autograd import Function
from numformer.backend import xp


def output_size(size: int, kernel: int, stride: int, padding: int, dilation: int, ceil_mode: bool = False) -> int:
    """Outputs along one dim: floor (or ceil) of (size + 2 padding - dilation (kernel - 1) - 1) /
    stride, plus one; with ``ceil_mode`` a last window must start inside the input or its left
    padding (PyTorch's rule)."""
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    if ceil_mode:
        out = -(-span // stride) + 1
        if (out - 1) * stride >= size + padding:
            out -= 1
        return out
    return span // stride + 1


def _window(i: int, j: int, dilation, stride, out_hw) -> tuple:
    """The index of tap (i, j)'s slice of a padded input: (..., Ho rows, Wo columns)."""
    (dh, dw), (sh, sw), (Ho, Wo) = dilation, stride, out_hw
    return (
        Ellipsis,
        slice(i * dh, i * dh + sh * (Ho - 1) + 1, sh),
        slice(j * dw, j * dw + sw * (Wo - 1) + 1, sw),
    )


def _padded(x, pads, value, extra=(0, 0)):
    """``x`` ``(N, C, H, W)`` padded by ``pads`` ((top, bottom), (left, right)) with ``value``, and
    ``extra`` more rows and columns at the bottom and right (pooling's ceil mode); ``x`` itself
    when there is nothing to add."""
    (top, bottom), (left, right) = pads
    bottom, right = bottom + extra[0], right + extra[1]
    if not (top or bottom or left or right):
        return x
    N, C, H, W = x.shape
    out = xp.full((N, C, top + H + bottom, left + W + right), value, dtype=x.dtype)
    out[:, :, top : top + H, left : left + W] = x
    return out


def _fold(taps, shape, pads, kernel, dilation, stride, out_hw):
    """The adjoint of reading the windows: ``taps(i, j)`` ``(N, C, Ho, Wo)`` (or None) summed into
    a zero padded input of ``shape`` at tap (i, j)'s window, then the padding cut off."""
    (top, bottom), (left, right) = pads
    N, C, H, W = shape
    full = xp.zeros((N, C, top + H + bottom, left + W + right), dtype=taps(0, 0).dtype)
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            part = taps(i, j)
            if part is not None:
                full[_window(i, j, dilation, stride, out_hw)] += part
    return full[:, :, top : top + H, left : left + W]


def _fold_extended(taps, shape, pads, extra, kernel, dilation, stride, out_hw):
    """``_fold`` over an input padded by ``pads`` plus ``extra`` rows and columns (ceil mode)."""
    (top, bottom), (left, right) = pads
    return _fold(taps, shape, ((top, bottom + extra[0]), (left, right + extra[1])), kernel, dilation, stride, out_hw)


def _is_patchify(kernel, stride, dilation, pads) -> bool:
    """Whether the windows tile the input without overlap or padding (stride = kernel)."""
    return tuple(stride) == tuple(kernel) and tuple(dilation) == (1, 1) and not any(p for pair in pads for p in pair)


class Conv2d(Function):
    """2-D cross-correlation, PyTorch's ``F.conv2d``: ``x`` ``(N, C, H, W)``, ``w``
    ``(O, C/G, KH, KW)``, optionally ``b`` ``(O,)``; options ``stride``, ``dilation`` (pairs),
    ``padding`` ((top, bottom), (left, right)) of zeros, ``groups`` G. Output ``(N, O, Ho, Wo)``.

    With the columns X ``(N, G, K, P)`` (K = C/G KH KW, P = Ho Wo) and W ``(G, O/G, K)``:
    Y = W X + b. Backward: dW = sum_n dY X^T, db = sum dY, dX = W^T dY, folded back through the
    windows (overlapping taps add).
    """

    saves_inputs = (1,)  # the weight; the input only where the columns are a view of it (forward says)

    def forward(self, x, w, *b, stride=(1, 1), padding=((0, 0), (0, 0)), dilation=(1, 1), groups=1):
        N, C, H, W = x.shape
        O, Cg, KH, KW = w.shape
        G = groups
        self.options = (stride, padding, dilation, (KH, KW))
        self.x_shape = x.shape
        patchify = _is_patchify((KH, KW), stride, dilation, padding)
        if patchify:  # stride = kernel, no padding: the windows tile the input
            Ho, Wo = H // KH, W // KW
            tiles = x[:, :, : Ho * KH, : Wo * KW].reshape(N, C, Ho, KH, Wo, KW)
            cols = tiles.transpose(0, 1, 3, 5, 2, 4).reshape(N, G, Cg * KH * KW, Ho * Wo)
        else:
            xpad = _padded(x, padding, 0)
            Ho = output_size(xpad.shape[2], KH, stride[0], 0, dilation[0])
            Wo = output_size(xpad.shape[3], KW, stride[1], 0, dilation[1])
            cols = xp.empty((N, C, KH, KW, Ho, Wo), dtype=x.dtype)
            for i in range(KH):
                for j in range(KW):
                    cols[:, :, i, j] = xpad[_window(i, j, dilation, stride, (Ho, Wo))]
            cols = cols.reshape(N, G, Cg * KH * KW, Ho * Wo)
        self.out_hw, self.patchify = (Ho, Wo), patchify
        weights = w.reshape(G, O // G, Cg * KH * KW)
        out = xp.matmul(weights, cols).reshape(N, O, Ho, Wo)  # (G, O/G, K) @ (N, G, K, P)
        if b:
            out += b[0].reshape(O, 1, 1)
        self.cols = cols if self.needs_grad[1] else None  # only dW reads the columns
        if self.cols is not None and xp.may_share_memory(cols, x):  # 1x1 tiles: the input itself
            self.saves_inputs = (0, 1)
        self.weights = weights
        return out

    def backward(self, g):
        stride, padding, dilation, kernel = self.options
        N, C, H, W = self.x_shape
        G, Og, K = self.weights.shape
        Ho, Wo = self.out_hw
        grads = g.reshape(N, G, Og, Ho * Wo)
        dx = dw = None
        if self.needs_grad[0]:
            dcols = xp.matmul(self.weights.transpose(0, 2, 1), grads)  # (N, G, K, P)
            if self.patchify:
                KH, KW = kernel
                tiles = dcols.reshape(N, C, KH, KW, Ho, Wo).transpose(0, 1, 4, 2, 5, 3).reshape(N, C, Ho * KH, Wo * KW)
                dx = tiles if (Ho * KH, Wo * KW) == (H, W) else _fold_crop(tiles, self.x_shape)
            else:
                dcols = dcols.reshape(N, C, kernel[0], kernel[1], Ho, Wo)
                dx = _fold(lambda i, j: dcols[:, :, i, j], self.x_shape, padding, kernel, dilation, stride, (Ho, Wo))
        if self.needs_grad[1]:
            if G == 1:  # one GEMM over the batch and positions together
                dw = xp.tensordot(grads[:, 0], self.cols[:, 0], axes=([0, 2], [0, 2]))[None]
            else:
                dw = xp.matmul(grads, self.cols.transpose(0, 1, 3, 2)).sum(axis=0)
            dw = dw.reshape(G * Og, C // G, *kernel)
        db = g.sum(axis=(0, 2, 3)) if len(self.needs_grad) > 2 and self.needs_grad[2] else None
        return (dx, dw) + ((db,) if len(self.needs_grad) > 2 else ())


def _fold_crop(tiles, shape):
    """Tiles ``(N, C, Ho KH, Wo KW)`` placed in a zero input of ``shape`` (the rows and columns no
    window reached get no gradient)."""
    out = xp.zeros(shape, dtype=tiles.dtype)
    out[:, :, : tiles.shape[2], : tiles.shape[3]] = tiles
    return out


class MaxPool2d(Function):
    """The maximum over each window, PyTorch's ``F.max_pool2d``: ``x`` ``(N, C, H, W)``; options
    ``kernel``, ``stride``, ``dilation`` (pairs), ``padding`` (a pair: -inf on both sides),
    ``out_hw`` (from ``output_size``; ``ceil_mode`` says how it was rounded, for export),
    ``return_indices``. The first maximum of a window wins,
    a NaN beats any number (PyTorch's rule).

    Backward: each window's gradient goes to the element that won it (windows that share a
    winner add). With ``return_indices`` a second output holds each winner's flat index into
    its channel's H W (no gradient).
    """

    saves_inputs = False

    def forward(self, x, kernel, stride, padding, dilation, out_hw, return_indices=False, ceil_mode=False):
        N, C, H, W = x.shape
        Ho, Wo = out_hw
        KH, KW = kernel
        extra = (
            max(0, (Ho - 1) * stride[0] + dilation[0] * (KH - 1) + 1 - (H + 2 * padding[0])),
            max(0, (Wo - 1) * stride[1] + dilation[1] * (KW - 1) + 1 - (W + 2 * padding[1])),
        )
        pads = ((padding[0], padding[0]), (padding[1], padding[1]))
        xpad = _padded(x, pads, -xp.inf, extra)
        best = xpad[_window(0, 0, dilation, stride, out_hw)].copy()
        winner = xp.zeros(best.shape, dtype=xp.int32)  # which tap won, i KW + j
        for i in range(KH):
            for j in range(KW):
                if i == j == 0:
                    continue
                v = xpad[_window(i, j, dilation, stride, out_hw)]
                better = (v > best) | xp.isnan(v)
                xp.copyto(best, v, where=better)
                winner[better] = i * KW + j
        self.winner, self.shape, self.pads, self.extra = winner, x.shape, pads, extra
        self.options = (kernel, dilation, stride, out_hw)
        if not return_indices:
            return best
        rows = xp.arange(Ho).reshape(Ho, 1) * stride[0] - padding[0] + (winner // KW) * dilation[0]
        cols = xp.arange(Wo) * stride[1] - padding[1] + (winner % KW) * dilation[1]
        return best, (rows * W + cols).astype(xp.int64)

    def backward(self, g, *_):
        kernel, dilation, stride, out_hw = self.options
        KW = kernel[1]
        winner = self.winner

        def taps(i, j):
            return xp.where(winner == i * KW + j, g, 0)

        return (_fold_extended(taps, self.shape, self.pads, self.extra, kernel, dilation, stride, out_hw),)


class AvgPool2d(Function):
    """The mean over each window, PyTorch's ``F.avg_pool2d``: ``x`` ``(N, C, H, W)``; options
    ``kernel``, ``stride``, ``padding`` (pairs; zeros on both sides), ``out_hw`` (and
    ``ceil_mode``, as ``MaxPool2d``'s), ``count_include_pad``, ``divisor_override``.

    Each window's sum is divided by its count: ``divisor_override`` if given, else the number of
    its positions inside the padded input (``count_include_pad``) or inside the input itself
    (ceil mode's extra positions never count), PyTorch's rule. Backward: each window's gradient
    over its count, spread over its positions.
    """

    saves_inputs = False

    def forward(
        self, x, kernel, stride, padding, out_hw, count_include_pad=True, divisor_override=None, ceil_mode=False
    ):
        N, C, H, W = x.shape
        Ho, Wo = out_hw
        KH, KW = kernel
        extra = (
            max(0, (Ho - 1) * stride[0] + KH - (H + 2 * padding[0])),
            max(0, (Wo - 1) * stride[1] + KW - (W + 2 * padding[1])),
        )
        pads = ((padding[0], padding[0]), (padding[1], padding[1]))
        xpad = _padded(x, pads, 0, extra)
        total = xp.zeros((N, C, Ho, Wo), dtype=x.dtype)
        for i in range(KH):
            for j in range(KW):
                total += xpad[_window(i, j, (1, 1), stride, out_hw)]
        if divisor_override:
            counts = xp.asarray(divisor_override, dtype=x.dtype)
        else:  # the windows' counts: the same pooling over a mask of the positions that count
            mask = xp.zeros((1, 1) + xpad.shape[2:], dtype=x.dtype)
            if count_include_pad:
                mask[..., : H + 2 * padding[0], : W + 2 * padding[1]] = 1
            else:
                mask[..., padding[0] : padding[0] + H, padding[1] : padding[1] + W] = 1
            counts = xp.zeros((1, 1, Ho, Wo), dtype=x.dtype)
            for i in range(KH):
                for j in range(KW):
                    counts += mask[_window(i, j, (1, 1), stride, out_hw)]
        self.counts, self.shape, self.pads, self.extra = counts, x.shape, pads, extra
        self.options = (kernel, stride, out_hw)
        return total / counts

    def backward(self, g):
        kernel, stride, out_hw = self.options
        share = g / self.counts
        return (_fold_extended(lambda i, j: share, self.shape, self.pads, self.extra, kernel, (1, 1), stride, out_hw),)
