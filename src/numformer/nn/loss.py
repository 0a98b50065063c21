"""Loss modules with PyTorch's names, arguments, defaults and state: each holds its options
(and, as PyTorch's, its ``weight``/``pos_weight`` as buffers) and calls its
``nn.functional`` loss in ``forward(input, target)``.

``_Loss`` and ``_WeightedLoss`` are PyTorch's base classes, for programs that subclass them
(``from torch.nn.modules.loss import _Loss``). ``size_average`` and ``reduce`` are PyTorch's
deprecated spelling of ``reduction``, read as PyTorch reads them.
"""

from __future__ import annotations

from numformer.nn import checks
from numformer.nn import functional as F
from numformer.nn.module import Module
from numformer.tensor import Tensor


class _Loss(Module):
    """Base of the losses: ``reduction`` ("mean", "sum" or "none")."""

    def __init__(self, size_average=None, reduce=None, reduction: str = "mean"):
        super().__init__()
        self.reduction = checks.legacy_reduction(type(self).__name__, size_average, reduce, reduction)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}" if self.reduction != "mean" else ""


class _WeightedLoss(_Loss):
    """Base of the losses with a per-class (or per-element) ``weight``, kept as a buffer."""

    def __init__(self, weight: Tensor | None = None, size_average=None, reduce=None, reduction: str = "mean"):
        super().__init__(size_average, reduce, reduction)
        self.register_buffer("weight", weight)


class CrossEntropyLoss(_WeightedLoss):
    """Cross-entropy from logits against class indices or probabilities (``F.cross_entropy``).

    Args:
        weight: a rescaling weight per class ``(C,)``, or None.
        size_average: PyTorch's deprecated flag (with ``reduce``): mapped to ``reduction``.
        reduce: PyTorch's deprecated flag: mapped to ``reduction``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        ignore_index: a target class that contributes nothing (nor counts in the mean).
        label_smoothing: the mass in [0, 1] spread uniformly over the classes (Szegedy et al., 2016).

    Shape:
        input ``(N, C)`` logits, target ``(N,)`` class indices -> ``()`` (see ``forward``).

    Examples:
        >>> import numformer as nf
        >>> loss_fn = nf.nn.CrossEntropyLoss(label_smoothing=0.1)
        >>> logits = nf.randn(4, 5, requires_grad=True)
        >>> loss = loss_fn(logits, nf.tensor([0, 2, 4, 1]))
        >>> loss.shape, loss.ndim
        ((), 0)
        >>> loss.backward()
        >>> logits.grad.shape
        (4, 5)
    """

    def __init__(
        self,
        weight: Tensor | None = None,
        size_average=None,
        ignore_index: int = -100,
        reduce=None,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
    ):
        super().__init__(weight, size_average, reduce, reduction)
        self.ignore_index, self.label_smoothing = ignore_index, label_smoothing

    def forward(self, input, target):  # noqa: A002 - PyTorch's argument name
        """The loss of logits ``input`` against ``target``.

        Shape: input ``(N, C)``, ``(C,)`` or ``(N, C, d1, ...)``; target class indices ``(N,)``,
        ``()`` or ``(N, d1, ...)``, or probabilities of input's shape -> ``()``, or the target's
        shape for "none".

        Raises:
            ValueError: bad shapes or arguments, as ``F.cross_entropy`` raises them."""
        return F.cross_entropy(
            input,
            target,
            weight=self.weight,
            ignore_index=self.ignore_index,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
        )


class NLLLoss(_WeightedLoss):
    """Negative log-likelihood of class targets from log-probabilities (``F.nll_loss``).

    Args:
        weight: a rescaling weight per class ``(C,)``, or None.
        size_average: PyTorch's deprecated flag (with ``reduce``): mapped to ``reduction``.
        reduce: PyTorch's deprecated flag: mapped to ``reduction``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        ignore_index: a target class that contributes nothing.
    """

    def __init__(
        self,
        weight: Tensor | None = None,
        size_average=None,
        ignore_index: int = -100,
        reduce=None,
        reduction: str = "mean",
    ):
        super().__init__(weight, size_average, reduce, reduction)
        self.ignore_index = ignore_index

    def forward(self, input, target):  # noqa: A002
        """The loss of log-probabilities ``input`` against class indices ``target``.

        Shape: input ``(N, C)``, ``(C,)`` or ``(N, C, d1, ...)``; target ``(N,)``, ``()`` or
        ``(N, d1, ...)`` -> ``()``, or the target's shape for "none".

        Raises:
            ValueError: bad shapes or arguments, as ``F.nll_loss`` raises them."""
        return F.nll_loss(input, target, weight=self.weight, ignore_index=self.ignore_index, reduction=self.reduction)


class MSELoss(_Loss):
    """Mean squared error (``F.mse_loss``).

    Args:
        size_average: PyTorch's deprecated flag (with ``reduce``): mapped to ``reduction``.
        reduce: PyTorch's deprecated flag: mapped to ``reduction``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
    """

    def forward(self, input, target):  # noqa: A002
        """(input - target)^2, reduced.

        Shape: input and target ``(*)`` -> ``()``, or ``(*)`` for "none".

        Raises:
            ValueError: bad shapes or arguments, as ``F.mse_loss`` raises them."""
        return F.mse_loss(input, target, reduction=self.reduction)


class L1Loss(_Loss):
    """Mean absolute error (``F.l1_loss``).

    Args:
        size_average: PyTorch's deprecated flag (with ``reduce``): mapped to ``reduction``.
        reduce: PyTorch's deprecated flag: mapped to ``reduction``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
    """

    def forward(self, input, target):  # noqa: A002
        """|input - target|, reduced.

        Shape: input and target ``(*)`` -> ``()``, or ``(*)`` for "none".

        Raises:
            ValueError: bad shapes or arguments, as ``F.l1_loss`` raises them."""
        return F.l1_loss(input, target, reduction=self.reduction)


class SmoothL1Loss(_Loss):
    """Smooth L1 with threshold ``beta`` (``F.smooth_l1_loss``).

    Args:
        size_average: PyTorch's deprecated flag (with ``reduce``): mapped to ``reduction``.
        reduce: PyTorch's deprecated flag: mapped to ``reduction``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        beta: where the loss turns from quadratic to linear.
    """

    def __init__(self, size_average=None, reduce=None, reduction: str = "mean", beta: float = 1.0):
        super().__init__(size_average, reduce, reduction)
        self.beta = beta

    def forward(self, input, target):  # noqa: A002
        """0.5 d^2 / beta inside |d| < beta, |d| - beta / 2 outside, reduced.

        Shape: input and target ``(*)`` -> ``()``, or ``(*)`` for "none".

        Raises:
            ValueError: bad shapes or arguments, as ``F.smooth_l1_loss`` raises them."""
        return F.smooth_l1_loss(input, target, reduction=self.reduction, beta=self.beta)


class HuberLoss(_Loss):
    """Huber loss with threshold ``delta`` (``F.huber_loss``).

    Args:
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        delta: where the loss turns from quadratic to linear.
    """

    def __init__(self, reduction: str = "mean", delta: float = 1.0):
        super().__init__(reduction=reduction)
        self.delta = delta

    def forward(self, input, target):  # noqa: A002
        """0.5 d^2 inside |d| < delta, delta (|d| - delta / 2) outside, reduced.

        Shape: input and target ``(*)`` -> ``()``, or ``(*)`` for "none".

        Raises:
            ValueError: bad shapes or arguments, as ``F.huber_loss`` raises them."""
        return F.huber_loss(input, target, reduction=self.reduction, delta=self.delta)


class BCELoss(_WeightedLoss):
    """Binary cross-entropy of probabilities (``F.binary_cross_entropy``); ``weight`` rescales
    each element.

    Args:
        weight: a rescaling weight per element (broadcast to the input), or None.
        size_average: PyTorch's deprecated flag (with ``reduce``): mapped to ``reduction``.
        reduce: PyTorch's deprecated flag: mapped to ``reduction``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
    """

    def forward(self, input, target):  # noqa: A002
        """-(t log p + (1 - t) log(1 - p)), logs clamped to >= -100, reduced.

        Shape: input and target ``(*)`` -> ``()``, or ``(*)`` for "none".

        Raises:
            ValueError: bad shapes or arguments, as ``F.binary_cross_entropy`` raises them."""
        return F.binary_cross_entropy(input, target, weight=self.weight, reduction=self.reduction)


class BCEWithLogitsLoss(_Loss):
    """Binary cross-entropy of logits, stable for any logit
    (``F.binary_cross_entropy_with_logits``); ``weight`` rescales each element, ``pos_weight``
    the positive term per class. Both are buffers, as PyTorch's.

    Args:
        weight: a rescaling weight per element, or None.
        size_average: PyTorch's deprecated flag (with ``reduce``): mapped to ``reduction``.
        reduce: PyTorch's deprecated flag: mapped to ``reduction``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``.
        pos_weight: a weight of the positive term per class, or None.
    """

    def __init__(
        self,
        weight: Tensor | None = None,
        size_average=None,
        reduce=None,
        reduction: str = "mean",
        pos_weight: Tensor | None = None,
    ):
        super().__init__(size_average, reduce, reduction)
        self.register_buffer("weight", weight)
        self.register_buffer("pos_weight", pos_weight)

    def forward(self, input, target):  # noqa: A002
        """(1 - t) x + (1 + (pos_weight - 1) t) log(1 + exp(-x)), reduced.

        Shape: input and target ``(*)`` -> ``()``, or ``(*)`` for "none".

        Raises:
            ValueError: bad shapes or arguments, as ``F.binary_cross_entropy_with_logits`` raises them."""
        return F.binary_cross_entropy_with_logits(
            input, target, weight=self.weight, reduction=self.reduction, pos_weight=self.pos_weight
        )


class KLDivLoss(_Loss):
    """Kullback-Leibler divergence of log-probabilities ``input`` from ``target``
    (``F.kl_div``); ``reduction="batchmean"`` is KL's definition.

    Args:
        size_average: PyTorch's deprecated flag (with ``reduce``): mapped to ``reduction``.
        reduce: PyTorch's deprecated flag: mapped to ``reduction``.
        reduction: ``"mean"``, ``"sum"`` or ``"none"``, ``"batchmean"``.
        log_target: ``target`` holds log-probabilities.
    """

    def __init__(self, size_average=None, reduce=None, reduction: str = "mean", log_target: bool = False):
        super().__init__(size_average, reduce, reduction)
        self.log_target = log_target

    def forward(self, input, target):  # noqa: A002
        """target (log target - input) pointwise, reduced.

        Shape: input ``(N, *)``, target broadcasting with it -> ``()``, or the broadcast shape
        for "none".

        Raises:
            ValueError: bad shapes or arguments, as ``F.kl_div`` raises them."""
        return F.kl_div(input, target, reduction=self.reduction, log_target=self.log_target)
