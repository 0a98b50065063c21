"""Optimisers with PyTorch's update rules, parameter groups and state dicts.

Updates run in place on each parameter's array in its own dtype (float32 stays float32), so
references held elsewhere (the state dict, a model copy) see the new values.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from numformer.autograd import enable_grad
from numformer.backend import device_of, to_device, xp
from numformer.ops.updates import update_each
from numformer.tensor import Tensor, array_of


class Optimizer:
    """Base class: ``param_groups`` (list of dicts with ``"params"`` and hyperparameters), per-
    parameter ``state``, ``zero_grad()``, ``step()``, ``state_dict()`` / ``load_state_dict()``.

    Args:
        params: an iterable of tensors that require grad, or of dicts (parameter groups) each with
            ``"params"`` and the hyperparameters that differ from ``defaults``.
        defaults: the hyperparameters of a group that does not set them.

    Raises:
        ValueError: no parameters, or a group without any.
        TypeError: a parameter that is not a tensor requiring grad."""

    def __init__(self, params, defaults: dict):
        self.defaults = defaults
        groups = list(params)
        if not groups:
            raise ValueError(f"{type(self).__name__}: got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        self.param_groups: list[dict] = []
        self.state: defaultdict = defaultdict(dict)  # parameter -> its state, as PyTorch's
        for g in groups:
            self.add_param_group(g)

    def add_param_group(self, group: dict) -> None:
        params = list(group["params"])
        if not params:
            raise ValueError(f"{type(self).__name__}: a parameter group has no parameters")
        for p in params:
            if not isinstance(p, Tensor) or not p.requires_grad:
                raise TypeError(
                    f"{type(self).__name__}: can only optimise tensors that require grad, got {type(p).__name__}"
                )
        full = {**self.defaults, **group, "params": params}
        self._validate(full)
        self.param_groups.append(full)

    def _validate(self, group: dict) -> None:
        name = type(self).__name__
        if not group["lr"] > 0:
            raise ValueError(f"{name}: lr must be > 0, got {group['lr']}")
        if group.get("weight_decay", 0.0) < 0:
            raise ValueError(f"{name}: weight_decay must be >= 0, got {group['weight_decay']}")
        if "betas" in group:
            b1, b2 = group["betas"]
            if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
                raise ValueError(f"{name}: betas must be in [0, 1), got {group['betas']}")
        if group.get("eps", 1.0) < 0:
            raise ValueError(f"{name}: eps must be >= 0, got {group['eps']}")

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none or p.grad is None:
                    p.grad = None
                else:
                    p.grad.array[...] = 0

    def step(self, closure=None):
        """One update of every parameter with a gradient; ``closure`` (re-evaluating the model
        and returning the loss) is called first, with gradients recorded, and its loss returned.
        Each updated parameter's version counter moves on, as PyTorch's in-place update does."""
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        todo = [(p, group, self.state[p]) for group in self.param_groups for p in group["params"] if p.grad is not None]
        # each update touches only its parameter's arrays: update_each may run them on threads
        update_each(todo, [p.array.size for p, _, _ in todo], lambda p, g, s: self._update(p, p.grad.array, g, s))
        for p, _, _ in todo:
            p._bump()
        return loss

    def _update(self, p: Tensor, grad: np.ndarray, group: dict, state: dict) -> None:
        raise NotImplementedError

    # --- state dicts: parameters are referred to by their position, as in PyTorch ------------
    def _ordered_params(self) -> list[Tensor]:
        return [p for g in self.param_groups for p in g["params"]]

    def state_dict(self) -> dict:
        """PyTorch's layout: ``{"state": {index: {name: tensor or number}}, "param_groups":
        [{..., "params": [index, ...]}]}``, parameters numbered in group order; tensors are
        copies; Adam's ``step`` is a float32 0-d tensor, as PyTorch's."""
        index = {id(p): i for i, p in enumerate(self._ordered_params())}
        groups, start = [], 0
        for g in self.param_groups:
            n = len(g["params"])
            groups.append({**{k: v for k, v in g.items() if k != "params"}, "params": list(range(start, start + n))})
            start += n
        state = {}
        for p, s in self.state.items():
            if id(p) in index:
                state[index[id(p)]] = {k: _saved(k, v) for k, v in s.items() if not k.startswith("_")}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore a state dict of ``state_dict()``'s layout (numformer's or PyTorch's: values may
        be numformer tensors, NumPy arrays or CPU torch tensors), each value on its parameter's
        device in its dtype.

        Raises:
            ValueError: groups of other sizes than this optimiser's, or a value whose shape
            differs from its parameter's."""
        groups = state_dict["param_groups"]
        if len(groups) != len(self.param_groups) or any(
            len(a["params"]) != len(b["params"]) for a, b in zip(groups, self.param_groups)
        ):
            raise ValueError(
                f"{type(self).__name__}.load_state_dict: the saved state has groups of "
                f"sizes {[len(g['params']) for g in groups]}, this optimiser has "
                f"{[len(g['params']) for g in self.param_groups]}"
            )
        # the saved groups' parameter ids, in order, name this optimiser's parameters in order
        ids = {
            saved: p for old, new in zip(groups, self.param_groups) for saved, p in zip(old["params"], new["params"])
        }
        self.state = defaultdict(dict)
        for saved, s in state_dict["state"].items():
            p = ids[saved] if saved in ids else ids[int(saved)]  # a key from JSON is a string
            self.state[p] = {k: _restored(type(self).__name__, k, v, p) for k, v in s.items()}
        for saved, group in zip(groups, self.param_groups):
            group.update({k: v for k, v in saved.items() if k != "params"})

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {v}" for k, v in g.items() if k != "params"]
        return "\n".join(lines + [")"])


def _speed_options(name: str, differentiable: bool) -> None:
    """PyTorch's ``foreach``, ``fused`` and ``capturable`` choose among kernels of one update,
    and numformer's update is one in-place pass already: they are accepted and change nothing.
    ``differentiable`` (a graph through the step) is refused.

    Raises:
        NotImplementedError: ``differentiable=True``."""
    if differentiable:
        raise NotImplementedError(f"{name}: differentiable=True (gradients through the step) is not supported")


def _saved(key: str, value):
    """A state value as ``state_dict`` gives it: arrays as tensors of their own, ``step`` as a
    float32 0-d tensor (PyTorch's), other numbers as they are."""
    if key == "step":
        return Tensor(np.asarray(value, dtype=np.float32))
    if isinstance(value, xp.ndarray) or hasattr(value, "__cuda_array_interface__"):
        return Tensor._wrap_on(value.copy(), False)
    return value


def _restored(optimizer: str, key: str, value, p: Tensor):
    """A saved state value back in the optimiser's form: ``step`` an int, arrays on the
    parameter's device in its dtype (copies)."""
    if key == "step":
        return int(float(value.item() if hasattr(value, "item") else value))
    if not hasattr(value, "shape") or isinstance(value, np.generic):
        return value
    array = array_of(value) if isinstance(value, Tensor) else value
    if not isinstance(array, (np.ndarray, xp.ndarray)):  # a torch tensor
        array = value.detach().cpu().numpy()
    if tuple(array.shape) != p.shape:
        raise ValueError(
            f"{optimizer}.load_state_dict: state {key!r} has shape {tuple(array.shape)}, its parameter {p.shape}"
        )
    return to_device(array, device_of(p.array)).astype(p.dtype, copy=True)


class SGD(Optimizer):
    """SGD with momentum and Nesterov, and coupled L2 ``weight_decay`` (g += wd * p):
    buf = momentum * buf + (1 - dampening) * g; step along buf (or g + momentum * buf).
    PyTorch's ``torch.optim.SGD`` (Sutskever et al., 2013, for Nesterov's momentum).

    Args:
        params: the parameters to optimise (``model.parameters()``), or parameter groups
            (dicts with ``"params"`` and their own hyperparameters).
        lr: the learning rate.
        momentum: the momentum factor (0: plain SGD).
        dampening: the damping of the momentum's new gradient.
        weight_decay: coupled L2 penalty added to the gradient.
        nesterov: Nesterov momentum (needs ``momentum > 0`` and ``dampening = 0``).
        maximize: ascend the objective instead of descending it.
        foreach: accepted for PyTorch's programs; numformer's update is one in-place pass.
        differentiable: gradients through the step; True raises NotImplementedError.
        fused: accepted for PyTorch's programs (changes nothing).

    Raises:
        ValueError: a negative learning rate, momentum or weight decay, or Nesterov without
            momentum.

    Examples:
        >>> import numformer as nf
        >>> w = nf.nn.Parameter(nf.tensor([1.0, -2.0]))
        >>> opt = nf.optim.SGD([w], lr=0.1, momentum=0.9)
        >>> (w**2).sum().backward()
        >>> opt.step()
        >>> w
        Parameter containing:
        tensor([ 0.8000, -1.6000], requires_grad=True)
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
        foreach=None,
        differentiable: bool = False,
        fused=None,
    ):
        _speed_options("SGD", differentiable)
        if momentum < 0:
            raise ValueError(f"SGD: momentum must be >= 0, got {momentum}")
        if nesterov and (momentum <= 0 or dampening != 0):
            raise ValueError("SGD: nesterov needs momentum > 0 and dampening = 0")
        super().__init__(
            params,
            {
                "lr": lr,
                "momentum": momentum,
                "dampening": dampening,
                "weight_decay": weight_decay,
                "nesterov": nesterov,
                "maximize": maximize,
            },
        )

    def _update(self, p, grad, group, state):
        g = -grad if group["maximize"] else grad
        if group["weight_decay"]:
            g = g + group["weight_decay"] * p.array
        momentum = group["momentum"]
        if momentum:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = xp.array(g, dtype=p.dtype, copy=True)
            else:
                buf *= momentum
                buf += (1 - group["dampening"]) * g
            g = g + momentum * buf if group["nesterov"] else buf
        p.array -= group["lr"] * g


class Adam(Optimizer):
    """Adam (Kingma and Ba, 2015, "Adam: A Method for Stochastic Optimization") with PyTorch's
    bias correction; ``weight_decay`` is coupled L2 (added to the gradient). ``AdamW`` decouples it.

    Args:
        params: the parameters to optimise (``model.parameters()``), or parameter groups
            (dicts with ``"params"`` and their own hyperparameters).
        lr: the learning rate.
        betas: the decay rates of the first and second moment estimates.
        eps: added to the denominator for numerical stability.
        weight_decay: coupled L2 penalty added to the gradient.
        amsgrad: use the maximum of past second moments (Reddi et al., 2018).
        maximize: ascend the objective instead of descending it.
        capturable: accepted for PyTorch's programs (changes nothing).
        decoupled_weight_decay: decay the weights directly, as ``AdamW``.
        foreach: accepted for PyTorch's programs; numformer's update is one in-place pass.
        differentiable: gradients through the step; True raises NotImplementedError.
        fused: accepted for PyTorch's programs (changes nothing).

    Raises:
        ValueError: a hyperparameter out of range (negative lr, eps or weight decay; betas
            outside [0, 1))."""

    decoupled = False

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas=(0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        foreach=None,
        maximize: bool = False,
        capturable: bool = False,
        differentiable: bool = False,
        fused=None,
        decoupled_weight_decay: bool = False,
    ):
        _speed_options(type(self).__name__, differentiable)
        self.decoupled = self.decoupled or decoupled_weight_decay  # Adam(decoupled_weight_decay=True) is AdamW
        super().__init__(
            params,
            {
                "lr": lr,
                "betas": tuple(betas),
                "eps": eps,
                "weight_decay": weight_decay,
                "amsgrad": amsgrad,
                "maximize": maximize,
            },
        )

    def _update(self, p, grad, group, state):
        lr, (beta1, beta2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
        g = -grad if group["maximize"] else grad
        if not state:
            state["step"] = 0
            state["exp_avg"] = xp.zeros_like(p.array)
            state["exp_avg_sq"] = xp.zeros_like(p.array)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = xp.zeros_like(p.array)
        state["step"] += 1
        step = state["step"]
        if wd:
            if self.decoupled:
                p.array *= 1 - lr * wd
            else:
                g = g + wd * p.array
        m, v = state["exp_avg"], state["exp_avg_sq"]
        dt = p.dtype.type
        tmp = xp.subtract(g, m, out=xp.empty_like(m))  # a scratch of this update only, not kept
        tmp *= dt(1 - beta1)
        m += tmp  # m = m + (g - m)(1 - beta1): PyTorch's lerp form
        xp.multiply(g, g, out=tmp)
        tmp *= dt(1 - beta2)
        v *= dt(beta2)
        v += tmp
        if group["amsgrad"]:
            xp.maximum(state["max_exp_avg_sq"], v, out=state["max_exp_avg_sq"])
            v = state["max_exp_avg_sq"]
        bias1 = 1 - beta1**step
        bias2_sqrt = math.sqrt(1 - beta2**step)
        xp.sqrt(v, out=tmp)  # denominator, reusing the scratch buffer
        tmp /= dt(bias2_sqrt)
        tmp += dt(eps)
        xp.divide(m, tmp, out=tmp)
        tmp *= dt(lr / bias1)
        p.array -= tmp


class AdamW(Adam):
    """Adam with decoupled weight decay: p *= 1 - lr * weight_decay before the Adam step
    (Loshchilov and Hutter, 2019, "Decoupled Weight Decay Regularization"; PyTorch's AdamW).

    Args:
        params: the parameters to optimise (``model.parameters()``), or parameter groups
            (dicts with ``"params"`` and their own hyperparameters).
        lr: the learning rate.
        betas: the decay rates of the first and second moment estimates.
        eps: added to the denominator for numerical stability.
        weight_decay: the decoupled decay rate (PyTorch's default 1e-2).
        amsgrad: use the maximum of past second moments.
        maximize: ascend the objective instead of descending it.
        capturable: accepted for PyTorch's programs (changes nothing).
        foreach: accepted for PyTorch's programs; numformer's update is one in-place pass.
        differentiable: gradients through the step; True raises NotImplementedError.
        fused: accepted for PyTorch's programs (changes nothing).

    Raises:
        ValueError: a hyperparameter out of range.

    Examples:
        >>> import numformer as nf
        >>> model = nf.nn.Linear(4, 1)
        >>> opt = nf.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
        >>> loss = model(nf.randn(8, 4)).pow(2).mean()
        >>> opt.zero_grad()
        >>> loss.backward()
        >>> opt.step()
        >>> opt.param_groups[0]["lr"], opt.state[model.weight]["step"]
        (0.01, 1)
    """

    decoupled = True

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas=(0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
        foreach=None,
        capturable: bool = False,
        differentiable: bool = False,
        fused=None,
    ):
        super().__init__(
            params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize, differentiable=differentiable
        )
