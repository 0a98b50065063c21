"""``Module`` and ``Parameter``: PyTorch's module system, small enough to read in one go.

A module finds its parameters and submodules by looking at its own attributes, in the order
they were assigned; buffers are registered by name (``register_buffer``). State-dict keys are
dotted attribute paths, exactly as in PyTorch, so weights move between the two both ways.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict, namedtuple

import numpy as np

from numformer.backend import Device, as_dtype, device_of, is_floating, to_device, use_device, xp
from numformer.tensor import Tensor


class IncompatibleKeys(namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])):
    """What ``load_state_dict`` did not match, printed as PyTorch prints it (``<All keys matched
    successfully>`` when nothing is missing or unexpected)."""

    __slots__ = ()

    def __repr__(self) -> str:
        if not self.missing_keys and not self.unexpected_keys:
            return "<All keys matched successfully>"
        return super().__repr__()

    __str__ = __repr__


class StateDictError(RuntimeError, ValueError):
    """A state dict that does not fit a module: PyTorch's ``RuntimeError`` (what PyTorch programs
    catch) that is also a ``ValueError`` (what numformer raises for bad input)."""


class Parameter(Tensor):
    """A tensor that a ``Module`` owns and trains: ``requires_grad=True`` by default.

    Args:
        data: the values (a Tensor, an array or a list).
        requires_grad: whether it is trained (True by default, unlike a Tensor).
    """

    def __init__(self, data, requires_grad: bool = True):
        super().__init__(data.array if isinstance(data, Tensor) else data, requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


_hook_keys = itertools.count()


class _HookHandle:
    def __init__(self, hooks: dict, key: int):
        self.hooks, self.key = hooks, key

    def remove(self) -> None:
        self.hooks.pop(self.key, None)


class Module:
    """Base class of every layer: ``__call__`` runs ``forward`` (and any forward hooks)."""

    training: bool

    def __init__(self):
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_buffers", {})  # name -> persistent?
        object.__setattr__(self, "_forward_hooks", {})

    def forward(self, *args, **kwargs):
        """The computation of the layer, written by each subclass (called through ``__call__``).

        Shape:
            each subclass states its own.

        Raises:
            NotImplementedError: a subclass that does not define it."""
        raise NotImplementedError(f"{type(self).__name__} must implement forward")

    def __call__(self, *args, **kwargs):
        out = self.forward(*args, **kwargs)
        if not self._forward_hooks:
            return out
        for hook in list(self._forward_hooks.values()):
            result = hook(self, args, out)
            if result is not None:
                out = result
        return out

    def has_forward_hooks(self) -> bool:
        """Whether a forward hook is registered on this module (not its children)."""
        return bool(self._forward_hooks)

    def register_forward_hook(self, hook) -> _HookHandle:
        """``hook(module, inputs, output)`` runs after every forward; returns a removable handle."""
        key = next(_hook_keys)  # unique for the process: a removed handle never matches a later hook
        self._forward_hooks[key] = hook
        return _HookHandle(self._forward_hooks, key)

    def register_buffer(self, name: str, tensor, persistent: bool = True) -> None:
        """Keep non-trainable state (running statistics, tables) that moves with the module."""
        value = None if tensor is None else tensor if isinstance(tensor, Tensor) else Tensor(tensor)
        self._buffers[name] = persistent
        object.__setattr__(self, name, value)

    def add_module(self, name: str, module: Module | None) -> None:
        """Make ``module`` a child named ``name`` (what ``Sequential``, ``ModuleList`` and
        ``ModuleDict`` do with their modules).

        Raises:
            TypeError: ``module`` is neither a numformer ``Module`` nor None (PyTorch's error: a
            foreign layer, such as a PyTorch or einops module, would otherwise be skipped by
            ``children()`` and fail layers later), or ``name`` is not a string.
            KeyError: ``name`` is empty, contains ".", or is an attribute that is not a module."""
        if module is not None and not isinstance(module, Module):
            raise TypeError(_not_a_module(module))
        if not isinstance(name, str):
            raise TypeError(f"module name should be a string, got {type(name).__name__} {name!r}")
        if not name or "." in name:
            raise KeyError(f'module name can\'t be empty or contain ".", got {name!r}')
        if name in vars(self) and not isinstance(vars(self)[name], Module) and vars(self)[name] is not None:
            raise KeyError(f"attribute '{name}' already exists")
        object.__setattr__(self, name, module)

    def __setattr__(self, name: str, value) -> None:
        """Plain assignment, with PyTorch's one refusal: a child module replaced by something
        that is not a module (nor None) is a TypeError, never a module silently dropped from
        ``children()``, ``parameters()`` and the state dict."""
        current = self.__dict__.get(name)
        if isinstance(current, Module) and value is not None and not isinstance(value, Module):
            raise TypeError(
                f"cannot assign '{_typename(value)}' as child module '{name}' (numformer.nn.Module or None expected)"
            )
        object.__setattr__(self, name, value)

    # --- traversal --------------------------------------------------------------------------
    def named_children(self):
        for name, value in vars(self).items():
            if isinstance(value, Module):
                yield name, value

    def children(self):
        return (m for _, m in self.named_children())

    def named_modules(self, prefix: str = "", memo: set | None = None):
        memo = set() if memo is None else memo
        if id(self) in memo:
            return
        memo.add(id(self))
        yield prefix, self
        for name, child in self.named_children():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name, memo)

    def modules(self):
        return (m for _, m in self.named_modules())

    def _own_parameters(self):
        for name, value in vars(self).items():
            if isinstance(value, Parameter):
                yield name, value

    def named_parameters(self, prefix: str = "", recurse: bool = True):
        seen = set()
        modules = self.named_modules(prefix) if recurse else [(prefix, self)]
        for mod_name, mod in modules:
            for name, p in mod._own_parameters():
                if id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{mod_name}.{name}" if mod_name else name), p

    def parameters(self, recurse: bool = True):
        return (p for _, p in self.named_parameters(recurse=recurse))

    def named_buffers(self, prefix: str = ""):
        for mod_name, mod in self.named_modules(prefix):
            for name in mod._buffers:
                value = getattr(mod, name)
                if value is not None:
                    yield (f"{mod_name}.{name}" if mod_name else name), value

    def buffers(self):
        return (b for _, b in self.named_buffers())

    # --- state ------------------------------------------------------------------------------
    def state_dict(self, *, destination=None, prefix: str = "", keep_vars: bool = False) -> OrderedDict:
        """Dotted name -> tensor, detached and sharing the module's memory (as PyTorch's: a change
        to ``state_dict()[name]`` in place changes the module). ``keep_vars`` gives the
        parameters themselves.

        Order: each module's parameters, then its persistent buffers, then its children."""
        out = OrderedDict() if destination is None else destination
        self._collect_state(prefix, out, keep_vars)
        return out

    def _collect_state(self, prefix: str, out: OrderedDict, keep_vars: bool) -> None:
        for name, p in self._own_parameters():
            out[prefix + name] = p if keep_vars else p.detach()
        for name, persistent in self._buffers.items():
            value = getattr(self, name)
            if persistent and value is not None:
                out[prefix + name] = value if keep_vars else value.detach()
        for name, child in self.named_children():
            child._collect_state(f"{prefix}{name}.", out, keep_vars)

    def load_state_dict(self, state_dict, strict: bool = True) -> IncompatibleKeys:
        """Copy arrays (NumPy, numformer or CPU torch tensors) into this module, in place.

        Every key's shape must match. With ``strict`` (default) missing and unexpected keys are
        errors too; the error lists every offending key at once and nothing is changed.

        Raises:
            StateDictError: keys or shapes that do not fit; a ``RuntimeError`` as PyTorch's (and a
                ``ValueError``, numformer's kind for bad input)."""
        targets = {}
        for mod_name, mod in self.named_modules():
            prefix = f"{mod_name}." if mod_name else ""
            for name, p in mod._own_parameters():
                targets[prefix + name] = p
            for name, persistent in mod._buffers.items():
                if persistent and getattr(mod, name) is not None:
                    targets[prefix + name] = getattr(mod, name)
        arrays = {k: _as_numpy(v) for k, v in state_dict.items()}
        missing = [k for k in targets if k not in arrays]
        unexpected = [k for k in arrays if k not in targets]
        wrong = [
            f"{k}: expected shape {targets[k].shape}, got {arrays[k].shape}"
            for k in targets
            if k in arrays and arrays[k].shape != targets[k].shape
        ]
        problems = list(wrong)
        if strict:
            problems += [f"missing key {k}" for k in missing]
            problems += [f"unexpected key {k}" for k in unexpected]
        if problems:
            raise StateDictError(
                f"load_state_dict for {type(self).__name__}: {len(problems)} problem(s):\n  " + "\n  ".join(problems)
            )
        for key, target in targets.items():
            if key in arrays:  # copied onto the parameter's own device
                target.array[...] = to_device(arrays[key].astype(target.dtype, copy=False), device_of(target.array))
        return IncompatibleKeys(missing, unexpected)

    # --- modes and dtype --------------------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        for m in self.modules():
            object.__setattr__(m, "training", mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        for p in self.parameters():
            p.requires_grad = requires_grad
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self.parameters():
            if set_to_none or p.grad is None:
                p.grad = None
            else:
                p.grad.array[...] = 0

    def to(self, *args, device=None, dtype=None, non_blocking: bool = False) -> Module:
        """Move parameters and buffers to ``device`` and/or cast the floating parameters and
        persistent buffers to ``dtype``, in place (``model.to("cuda")``, ``model.to(np.float64)``;
        gradients are dropped). Non-persistent buffers (derived tables) keep their precision
        but move with the model.

        Raises:
            RuntimeError: a device that is not available (``cuda`` without CuPy or a GPU)."""
        for arg in args:
            if isinstance(arg, Device) or (isinstance(arg, str) and arg.partition(":")[0] in ("cpu", "cuda")):
                device = arg
            else:
                dtype = arg
        buffers = [(m, n, keep) for m in self.modules() for n, keep in m._buffers.items() if getattr(m, n) is not None]
        if device is not None:
            for t in list(self.parameters()) + [getattr(m, n) for m, n, _ in buffers]:
                moved = to_device(t.array, device)
                if moved is not t.array:
                    t.array, t.grad = moved, None
            # numformer computes on one device at a time: the model's, from now on, so that
            # host inputs (token ids, masks) become device arrays where the model reads them
            use_device(device)
        if dtype is not None:
            dtype = as_dtype(dtype)
            for t in list(self.parameters()) + [getattr(m, n) for m, n, keep in buffers if keep]:
                if is_floating(t.dtype) and t.dtype != dtype:
                    t.array, t.grad = t.array.astype(dtype), None
        return self

    def cuda(self, device=None) -> Module:
        return self.to("cuda" if device is None else device)

    def cpu(self) -> Module:
        return self.to("cpu")

    def double(self) -> Module:
        return self.to(np.float64)

    def float(self) -> Module:
        return self.to(np.float32)

    def apply(self, fn) -> Module:
        for m in self.modules():
            fn(m)
        return self

    def num_parameters(self, trainable_only: bool = False) -> int:
        return sum(p.numel() for p in self.parameters() if p.requires_grad or not trainable_only)

    # --- printing ---------------------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        """PyTorch's layout, with each module's parameter count as a trailing comment."""
        count = self.num_parameters()
        head = f"{type(self).__name__}({self.extra_repr()}"
        note = f"  # {count:,} params" if count else ""
        lines = [f"({name}): " + repr(child).replace("\n", "\n  ") for name, child in self.named_children()]
        if not lines:
            return head + ")" + note
        extra = [self.extra_repr()] if self.extra_repr() else []
        return f"{type(self).__name__}({note}\n  " + "\n  ".join(extra + lines) + "\n)"


def _typename(value) -> str:
    """``value``'s type with its module, as ``torch.typename`` writes it: ``einops.layers.torch.Rearrange``."""
    kind = type(value)
    return kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"


def _not_a_module(value) -> str:
    """PyTorch's message for a foreign object offered as a module, with what to do about it."""
    message = f"{_typename(value)} is not a Module subclass (a numformer.nn.Module is expected)"
    if type(value).__module__.startswith("einops.layers."):
        message += f": einops' layers for numformer are numformer.nn.einops.{type(value).__name__}"
    elif any(base.__module__.startswith("torch.") and base.__name__ == "Module" for base in type(value).__mro__):
        message += ": a PyTorch module cannot run inside a numformer model; write it as a numformer Module"
    elif callable(value):
        message += ": wrap the function in a Module subclass whose forward calls it"
    return message


def _as_numpy(value) -> np.ndarray:
    if isinstance(value, Tensor):
        return value.array
    if hasattr(value, "detach") and hasattr(value, "numpy"):  # a torch tensor, without importing torch
        return value.detach().cpu().numpy()
    return xp.asarray(value)


class Sequential(Module):
    """Modules applied in order; state-dict keys ``0.``, ``1.``, ... as in PyTorch, or the names
    of an ``OrderedDict`` given as the one argument.

    Args:
        *args: the modules, in order (or one ``OrderedDict`` of name -> module).

    Raises:
        TypeError: an argument that is not a numformer ``Module`` (PyTorch's error).

    Examples:
        >>> import numformer as nf
        >>> model = nf.nn.Sequential(nf.nn.Linear(4, 8), nf.nn.ReLU(), nf.nn.Linear(8, 1))
        >>> model(nf.randn(3, 4)).shape
        (3, 1)
        >>> list(model.state_dict())
        ['0.weight', '0.bias', '2.weight', '2.bias']
    """

    def __init__(self, *args):
        super().__init__()
        if len(args) == 1 and isinstance(args[0], OrderedDict):
            for name, m in args[0].items():
                self.add_module(name, m)
        else:
            for i, m in enumerate(args):
                self.add_module(str(i), m)

    def _items(self) -> list:
        return list(self.named_children())

    def __getitem__(self, idx):
        items = self._items()
        if isinstance(idx, slice):
            return Sequential(OrderedDict(items[idx]))
        return items[_index(idx, len(items), "Sequential")][1]

    def __setitem__(self, idx: int, module: Module) -> None:
        items = self._items()
        self.add_module(items[_index(idx, len(items), "Sequential")][0], module)

    def __delitem__(self, idx) -> None:
        items = self._items()
        doomed = items[idx] if isinstance(idx, slice) else [items[_index(idx, len(items), "Sequential")]]
        for name, _ in doomed:
            delattr(self, name)
        if all(name.isdigit() for name, _ in items):  # renumber 0, 1, ..., as PyTorch's
            kept = [m for _, m in self._items()]
            for name, _ in self._items():
                delattr(self, name)
            for i, m in enumerate(kept):
                self.add_module(str(i), m)

    def __len__(self) -> int:
        return len(self._items())

    def __iter__(self):
        return iter([m for _, m in self._items()])

    def append(self, module: Module) -> Sequential:
        self.add_module(str(len(self)), module)
        return self

    def extend(self, sequential) -> Sequential:
        for m in sequential:
            self.append(m)
        return self

    def insert(self, index: int, module: Module) -> Sequential:
        if not isinstance(module, Module):
            raise TypeError(_not_a_module(module))
        kept = list(self)
        kept.insert(index if index >= 0 else len(kept) + 1 + index, module)
        for name, _ in self._items():
            delattr(self, name)
        for i, m in enumerate(kept):
            self.add_module(str(i), m)
        return self

    def forward(self, x):
        """Each module applied to the previous one's output, in order.

        Shape: whatever the first module takes -> whatever the last one gives."""
        for m in self.children():
            x = m(x)
        return x


def _index(idx: int, n: int, container: str) -> int:
    """``idx`` (negative from the end) checked against ``n`` items."""
    if not -n <= idx < n:
        raise IndexError(f"{container}: index {idx} is out of range for {n} modules")
    return idx % n


class ModuleList(Module):
    """A list of modules whose parameters belong to the parent (keys ``0.``, ``1.``, ...).

    Raises:
        TypeError: an item that is not a numformer ``Module`` (PyTorch's error).

    Args:
        modules: an iterable of modules to hold, or None.
    """

    def __init__(self, modules=None):
        super().__init__()
        for m in modules or ():
            self.append(m)

    def append(self, module: Module) -> ModuleList:
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules) -> ModuleList:
        for m in modules:
            self.append(m)
        return self

    def insert(self, index: int, module: Module) -> None:
        if not isinstance(module, Module):
            raise TypeError(_not_a_module(module))
        kept = list(self)
        kept.insert(index, module)
        self._renumber(kept)

    def _renumber(self, modules: list) -> None:
        for name, _ in list(self.named_children()):
            delattr(self, name)
        for i, m in enumerate(modules):
            self.add_module(str(i), m)

    def __getitem__(self, i):
        items = list(self.children())
        return ModuleList(items[i]) if isinstance(i, slice) else items[_index(i, len(items), "ModuleList")]

    def __setitem__(self, i: int, module: Module) -> None:
        self.add_module(str(_index(i, len(self), "ModuleList")), module)

    def __delitem__(self, i) -> None:
        kept = list(self)
        del kept[i]
        self._renumber(kept)

    def __iadd__(self, modules) -> ModuleList:
        return self.extend(modules)

    def __len__(self) -> int:
        return sum(1 for _ in self.children())

    def __iter__(self):
        return iter(list(self.children()))


class ModuleDict(Module):
    """A dict of modules, keyed by name.

    Raises:
        TypeError: a value that is not a numformer ``Module`` (PyTorch's error).

    Args:
        modules: a mapping of name -> module (or pairs), or None.
    """

    def __init__(self, modules: dict | None = None):
        super().__init__()
        if modules is not None:
            self.update(modules)

    def __getitem__(self, key: str) -> Module:
        if key not in self:
            raise KeyError(key)
        return getattr(self, key)

    def __setitem__(self, key: str, module: Module) -> None:
        self.add_module(key, module)

    def __delitem__(self, key: str) -> None:
        if key not in self:
            raise KeyError(key)
        delattr(self, key)

    def __contains__(self, key) -> bool:
        return any(key == name for name, _ in self.named_children())

    def __len__(self) -> int:
        return sum(1 for _ in self.children())

    def __iter__(self):
        return (k for k, _ in self.named_children())

    def keys(self):
        return list(iter(self))

    def items(self):
        return list(self.named_children())

    def values(self):
        return list(self.children())

    def update(self, modules) -> None:
        pairs = modules.items() if hasattr(modules, "items") else modules
        for key, module in pairs:
            self[key] = module

    def pop(self, key: str) -> Module:
        module = self[key]
        del self[key]
        return module

    def clear(self) -> None:
        for key in self.keys():
            del self[key]


class ParameterList(Module):
    """A list of parameters that belong to the parent (keys ``0``, ``1``, ...); a tensor appended
    becomes a ``Parameter``, as in PyTorch.

    Args:
        values: an iterable of tensors (each becomes a ``Parameter``), or None.
    """

    def __init__(self, values=None):
        super().__init__()
        for v in values or ():
            self.append(v)

    def _items(self) -> list:
        return list(self._own_parameters())

    def append(self, value) -> ParameterList:
        setattr(self, str(len(self)), _as_parameter(value, "ParameterList"))
        return self

    def extend(self, values) -> ParameterList:
        for v in values:
            self.append(v)
        return self

    def __getitem__(self, i):
        items = [p for _, p in self._items()]
        return ParameterList(items[i]) if isinstance(i, slice) else items[_index(i, len(items), "ParameterList")]

    def __setitem__(self, i: int, value) -> None:
        setattr(self, str(_index(i, len(self), "ParameterList")), _as_parameter(value, "ParameterList"))

    def __len__(self) -> int:
        return len(self._items())

    def __iter__(self):
        return iter([p for _, p in self._items()])

    def extra_repr(self) -> str:
        return ", ".join(f"({n}): Parameter {tuple(p.shape)}" for n, p in self._items())


class ParameterDict(Module):
    """A dict of parameters keyed by name, belonging to the parent; a tensor stored becomes a
    ``Parameter``, as in PyTorch.

    Args:
        parameters: a mapping of name -> tensor (or pairs), or None.
    """

    def __init__(self, parameters=None):
        super().__init__()
        if parameters is not None:
            self.update(parameters)

    def __getitem__(self, key: str):
        params = dict(self._own_parameters())
        if key not in params:
            raise KeyError(key)
        return params[key]

    def __setitem__(self, key: str, value) -> None:
        if not isinstance(key, str) or not key or "." in key:
            raise KeyError(f'parameter name must be a non-empty string without ".", got {key!r}')
        setattr(self, key, _as_parameter(value, "ParameterDict"))

    def __delitem__(self, key: str) -> None:
        self[key]  # noqa: B018 - KeyError when absent
        delattr(self, key)

    def __contains__(self, key) -> bool:
        return key in dict(self._own_parameters())

    def __len__(self) -> int:
        return len(dict(self._own_parameters()))

    def __iter__(self):
        return iter(dict(self._own_parameters()))

    def keys(self):
        return list(dict(self._own_parameters()))

    def items(self):
        return list(self._own_parameters())

    def values(self):
        return [p for _, p in self._own_parameters()]

    def update(self, parameters) -> None:
        pairs = parameters.items() if hasattr(parameters, "items") else parameters
        for key, value in pairs:
            self[key] = value


def _as_parameter(value, container: str) -> Parameter:
    """``value`` as a ``Parameter`` (a tensor wrapped, sharing its memory)."""
    if isinstance(value, Parameter):
        return value
    if isinstance(value, Tensor):
        return Parameter(value)
    raise TypeError(f"{container}: {_typename(value)} is not a Tensor or Parameter")


# numformer.save/load (serialization.pickled: PyTorch's checkpoint format, a lower layer that cannot
# import this one): Parameters save as torch.nn.Parameter and load on the host, then move as Module.to
# moves them; numformer's own Module classes load without add_safe_globals.
from numformer.serialization import pickled as _pickled  # noqa: E402


def _loaded_parameter(array, requires_grad: bool, device) -> Parameter:
    param = Parameter(array, requires_grad)
    param.array = to_device(param.array, device)
    return param


_pickled.register_tensor_type(Parameter, _loaded_parameter, parameter=True)
_pickled.register_module_type(Module)
