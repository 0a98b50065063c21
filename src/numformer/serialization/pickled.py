"""``save`` and ``load``: PyTorch's checkpoint files (``torch.save``/``torch.load``), written and
read without torch, and read without ever running code from the file.

The format is PyTorch's zip serialization (its default since PyTorch 1.6), learned from
``torch/serialization.py``: a zip archive of uncompressed records under one folder
(``archive/``):

- ``data.pkl``: the saved object as a pickle (protocol 2 by default). A tensor is a call of
  ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks)``
  (a parameter wraps it in ``torch._utils._rebuild_parameter(tensor, requires_grad, hooks)``);
  a storage is a persistent id ``("storage", torch.FloatStorage, key, location, numel)``;
- ``data/<key>``: one storage's bytes, in the byte order of ``byteorder``, each aligned to 64
  bytes in the file (as PyTorch aligns them, so a file can be memory-mapped);
- ``byteorder``, ``version`` (``3``), ``.format_version`` and ``.storage_alignment``.

What loads where:

- **numformer -> PyTorch**: ``torch.load(f, weights_only=True)`` reads what ``save`` writes:
  numformer tensors come back as torch tensors (dtype, shape, values, ``requires_grad``),
  parameters as ``torch.nn.Parameter``, with dicts, ``OrderedDict``, lists, tuples, sets, ints,
  floats, complex, strings, bytes, bools and None. Two tensors whose arrays are views of one
  NumPy array share one storage, as in PyTorch. NumPy arrays, scalars and dtypes (an optimizer's
  state) are written as NumPy pickles them, which is also what ``torch.save`` writes for them:
  PyTorch reads those only once their globals are allowed
  (``torch.serialization.safe_globals([np._core.multiarray._reconstruct, np.ndarray, np.dtype,
  np.dtypes.Float32DType])``, one ``DType`` class per dtype), or with ``weights_only=False``.
  Whole numformer modules are numformer objects: torch does not rebuild them.
- **PyTorch -> numformer**: ``load`` reads zip files that ``torch.save`` wrote: tensors of
  every dtype NumPy has (bfloat16 through ``numformer.backend.bfloat16``, that is with
  ml_dtypes installed; otherwise an error naming the tensors), views and shared storages
  (offset and strides kept: tensors that share a storage in the file share memory after
  loading), ``torch.nn.Parameter`` (rebuilt as ``numformer.nn.Parameter``), ``torch.Size``
  (a tuple), torch dtypes (NumPy dtypes), ``torch.device`` (its name, ``"cuda:0"``) and the
  containers above, NumPy arrays and scalars; and the legacy (pre-1.6, non-zip) format.
  Sparse, quantized, nested and meta tensors, TorchScript archives and torch objects beyond
  these are refused, by name.

Loading never runs code from the file: there is no ``pickle.load`` here. ``Unpickler`` reads
the pickle's opcodes with ``pickletools.genops`` (a parser: it executes nothing) and carries
out each one itself, as PyTorch's weights-only unpickler does:

- a global (``GLOBAL``/``STACK_GLOBAL``) is looked up in an allow-list by name; no module is
  ever imported. The allow-list: numformer's own rebuilds for torch's tensor functions, storage
  types, dtypes and ``torch.Size``; ``collections.OrderedDict``, ``set``, ``frozenset``,
  ``complex``, ``bytearray`` and ``_codecs.encode`` (latin-1 only: protocol 2's bytes);
  NumPy's array, scalar and dtype reconstruction, carried out by numformer's code (NumPy's
  own ``__setstate__`` never sees the file's data); numformer's own ``nn.Module`` classes;
  and what the user allowed (``add_safe_globals``, ``safe_globals``). Anything else raises
  ``pickle.UnpicklingError`` naming the global and how to allow it. Globals of ``os``,
  ``sys``, ``posix``, ``nt``, ``subprocess`` and builtins' ``eval``/``exec``/... are refused
  even when allowed.
- ``REDUCE`` (a call) calls only those rebuilds and the callables the user allowed (as
  PyTorch, a user who allows a class or function lets a file call it with any arguments);
- ``NEWOBJ`` makes an instance of an allowed class with ``cls.__new__(cls, *args)``, without
  ``__init__``; ``BUILD`` then sets its ``__dict__`` from the file (a user-allowed class's own
  ``__setstate__`` runs, as in PyTorch);
- ``INST``/``OBJ`` (which call ``__init__``), the copyreg extension registry and out-of-band
  buffers are refused; lists, dicts and sets are filled only when they are exactly those types
  (or a user-allowed subclass).

Whole modules (``save(model, f)``) are saved as PyTorch saves them: the module object pickled
with its class by name and its ``__dict__`` as state. Loading one is safe enough because a
numformer module is a plain object: its behaviour is its class's code, which the file only
names; its state is data. Loading makes the object without ``__init__`` and sets attributes to
values the allow-list can build (tensors, numbers, strings, containers, other allowed objects);
no method of the module runs while loading. numformer's own module classes (subclasses of
``nn.Module`` defined in numformer, already imported) are allowed for this by default; a
user's model class must be allowed: ``add_safe_globals([MyModel])``. PyTorch's
``weights_only=True`` allows none of its ``torch.nn`` classes; numformer allows its own because
they define no ``__setstate__`` and are built only this way (never called).

Deliberate differences from PyTorch: ``load(..., weights_only=False)`` raises ``ValueError``
(PyTorch would run any code the file names; numformer never does: allow what the file needs
with ``add_safe_globals`` instead); ``pickle_module`` must be None (numformer writes and reads
its own pickles); a ``map_location`` callable receives each storage as a 1-D NumPy array and
must return None (default placement) or a NumPy array.
"""

from __future__ import annotations

import io
import mmap as _mmap
import os
import pickle
import pickletools
import struct
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np

from numformer.serialization.files import atomic_write

__all__ = [
    "Unpickler",
    "add_safe_globals",
    "clear_safe_globals",
    "get_safe_globals",
    "load",
    "register_dtype",
    "register_module_type",
    "register_tensor_type",
    "safe_globals",
    "save",
]

DEFAULT_PROTOCOL = 2  # torch.serialization's: the protocol its weights-only unpickler reads
_ALIGNMENT = 64  # bytes; PyTorch's storage alignment
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch.serialization.MAGIC_NUMBER (the legacy format)
_LEGACY_PROTOCOL = 1001  # torch.serialization.PROTOCOL_VERSION


# --- what upper layers register: tensor types, module types, dtypes -----------------------------
class _TensorType:
    def __init__(self, cls: type, rebuild, parameter: bool):
        self.cls, self.rebuild, self.parameter = cls, rebuild, parameter


_TENSOR_TYPES: dict[type, _TensorType] = {}
_MODULE_BASES: list[type] = []
_DTYPES: dict[str, object] = {}


def register_tensor_type(cls: type, rebuild, *, parameter: bool = False) -> None:
    """Save instances of ``cls`` as torch tensors, and load torch tensors as ``cls``.

    numformer's ``Tensor`` (``numformer/tensor.py``) and ``nn.Parameter``
    (``numformer/nn/module.py``) register themselves when imported; this layer imports neither.
    An instance is saved from its ``.array`` (NumPy, or a GPU array with ``.get()``) and its
    ``.requires_grad``.

    Args:
        cls: the tensor class; its subclasses are saved as it unless registered themselves.
        rebuild: ``rebuild(array, requires_grad, device) -> cls``: ``array`` is a NumPy array on
            the host, ``device`` where the tensor goes (``"cpu"``, ``"cuda:0"``).
        parameter: save as ``torch.nn.Parameter``; a loaded ``torch.nn.Parameter`` becomes
            this class.
    """
    _TENSOR_TYPES[cls] = _TensorType(cls, rebuild, parameter)


def register_module_type(base: type) -> None:
    """Allow loading (without ``add_safe_globals``) instances of ``base``'s subclasses that
    numformer itself defines (``__module__`` under ``numformer.``), built with ``__new__`` and
    given their saved ``__dict__``; ``numformer/nn/module.py`` registers ``Module``."""
    if base not in _MODULE_BASES:
        _MODULE_BASES.append(base)


def register_dtype(name: str, dtype) -> None:
    """The NumPy dtype for torch's dtype ``name`` that NumPy lacks (``"bfloat16"``: the backend
    registers ``numformer.backend.bfloat16``). ``dtype`` may be a stand-in that is not a NumPy
    dtype (the package is missing): loading such tensors then fails naming them and quoting
    its ``install`` hint."""
    _DTYPES[name] = dtype


def _tensor_type(obj) -> _TensorType | None:
    for cls in type(obj).__mro__:
        entry = _TENSOR_TYPES.get(cls)
        if entry is not None:
            return entry
    return None


# --- globals the user allows ------------------------------------------------------------------
_SAFE_GLOBALS: list = []


def _global_name(entry) -> str:
    """``module.qualname`` of an allowed global, or the name given with it (``(obj, name)``)."""
    if isinstance(entry, tuple):
        if len(entry) != 2 or not isinstance(entry[1], str):
            raise TypeError(f"safe globals: expected an object or (object, 'module.name'), got {entry!r}")
        return entry[1]
    module, qualname = getattr(entry, "__module__", None), getattr(entry, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str):
        raise TypeError(f"safe globals: {entry!r} has no __module__ and __qualname__; pass (object, 'module.name')")
    return f"{module}.{qualname}"


def add_safe_globals(safe_globals: list) -> None:
    """Allow ``load`` to rebuild these classes and functions when a file names them (PyTorch's
    ``torch.serialization.add_safe_globals``). An allowed class may be instantiated (without
    ``__init__``) and given state from the file; an allowed callable may be called with
    arguments from the file. Allow only what you trust with any arguments.

    Args:
        safe_globals: classes or functions, or ``(object, "module.name")`` pairs to allow an
            object under another name.

    Raises:
        TypeError: an entry that is neither (no ``__module__``/``__qualname__``).
    """
    for entry in safe_globals:
        _global_name(entry)  # check before adding any
    for entry in safe_globals:
        if not any(entry is known or entry == known for known in _SAFE_GLOBALS):
            _SAFE_GLOBALS.append(entry)


def get_safe_globals() -> list:
    """The globals the user allowed (``add_safe_globals``, inside ``safe_globals``)."""
    return list(_SAFE_GLOBALS)


def clear_safe_globals() -> None:
    """Forget every global the user allowed."""
    _SAFE_GLOBALS.clear()


class safe_globals:  # noqa: N801 - PyTorch's name (a context manager class)
    """``with safe_globals([MyModel]): load(f)``: allow these globals inside the block only
    (PyTorch's ``torch.serialization.safe_globals``); those that were allowed before stay."""

    def __init__(self, safe_globals: list):
        self.safe_globals = list(safe_globals)
        self._added: list = []

    def __enter__(self):
        before = get_safe_globals()
        add_safe_globals(self.safe_globals)
        self._added = [g for g in _SAFE_GLOBALS if not any(g is b for b in before)]
        return self

    def __exit__(self, *exc) -> None:
        _SAFE_GLOBALS[:] = [g for g in _SAFE_GLOBALS if not any(g is a for a in self._added)]


# --- dtypes: torch's names and storage classes ---------------------------------------------------
# torch dtype name -> NumPy dtype (bfloat16: registered by the backend)
_NUMPY_OF_TORCH = {
    "float32": "float32", "float": "float32", "float64": "float64", "double": "float64",
    "float16": "float16", "half": "float16", "int64": "int64", "long": "int64",
    "int32": "int32", "int": "int32", "int16": "int16", "short": "int16", "int8": "int8",
    "uint8": "uint8", "uint16": "uint16", "uint32": "uint32", "uint64": "uint64", "bool": "bool",
    "complex64": "complex64", "cfloat": "complex64", "complex128": "complex128", "cdouble": "complex128",
    "bfloat16": "bfloat16",
}  # fmt: skip
# torch's storage classes (what _rebuild_tensor_v2's storages name) -> dtype name
_STORAGE_DTYPES = {
    "FloatStorage": "float32", "DoubleStorage": "float64", "HalfStorage": "float16",
    "BFloat16Storage": "bfloat16", "LongStorage": "int64", "IntStorage": "int32",
    "ShortStorage": "int16", "CharStorage": "int8", "ByteStorage": "uint8", "BoolStorage": "bool",
    "ComplexFloatStorage": "complex64", "ComplexDoubleStorage": "complex128",
}  # fmt: skip
_STORAGE_OF_DTYPE = {dtype: storage for storage, dtype in _STORAGE_DTYPES.items()}
_UNTYPED_DTYPES = ("uint16", "uint32", "uint64")  # saved as torch saves them: UntypedStorage + dtype


def _numpy_dtype(name: str):
    """The NumPy dtype of a torch dtype name, or the registered stand-in (bfloat16)."""
    if name == "bfloat16":
        return _DTYPES.get("bfloat16")
    return np.dtype(_NUMPY_OF_TORCH[name])


def _dtype_name(dtype: np.dtype) -> str | None:
    """torch's name for a NumPy dtype, or None when torch has no such dtype."""
    bf16 = _DTYPES.get("bfloat16")
    if isinstance(bf16, np.dtype) and dtype == bf16:
        return "bfloat16"
    if dtype.kind in "biufc" and dtype.fields is None and dtype.subdtype is None:
        name = dtype.newbyteorder("=").name
        return name if name in _NUMPY_OF_TORCH else None
    return None


# --- writing --------------------------------------------------------------------------------------
_P = pickle  # opcodes (bytes constants of the pickle module)


class _Pickler:
    """Writes ``obj`` as a pickle of PyTorch's checkpoint structure, with the opcodes of protocol
    2 that ``torch.load(weights_only=True)`` reads (bytes as ``BINBYTES`` from protocol 3 on).
    Tensors become ``_rebuild_tensor_v2`` calls on persistent storages (collected in
    ``storages``); everything else is pickled as Python pickles it, through ``__reduce_ex__``."""

    def __init__(self, protocol: int):
        self.protocol = protocol
        self.out = io.BytesIO()
        self.memo: dict[int, int] = {}  # id(obj) -> memo index
        self.globals: dict[tuple, int] = {}  # (module, name) -> memo index
        self.alive: list = []  # memoized objects, kept alive so that their ids stay theirs
        self.storages: dict[int, tuple[str, np.ndarray]] = {}  # id(root array) -> (key, flat array)
        self.busy: set[int] = set()  # tuples being written (a tuple containing itself)
        self.count = 0  # memo entries written

    def dump(self, obj) -> bytes:
        self.out.write(_P.PROTO + bytes([self.protocol]))
        self.save(obj, "obj")
        self.out.write(_P.STOP)
        return self.out.getvalue()

    # memo
    def _memoize(self) -> int:
        """Store the top of the stack in the next memo entry (``BINPUT``); its index."""
        index, self.count = self.count, self.count + 1
        self.out.write(_P.BINPUT + bytes([index]) if index < 256 else _P.LONG_BINPUT + struct.pack("<I", index))
        return index

    def _put(self, obj) -> None:
        self.memo[id(obj)] = self._memoize()
        self.alive.append(obj)

    def _get(self, index: int) -> None:
        self.out.write(_P.BINGET + bytes([index]) if index < 256 else _P.LONG_BINGET + struct.pack("<I", index))

    # atoms
    def _int(self, n: int) -> None:
        if 0 <= n < 256:
            self.out.write(_P.BININT1 + bytes([n]))
        elif 0 <= n < 65536:
            self.out.write(_P.BININT2 + struct.pack("<H", n))
        elif -(2**31) <= n < 2**31:
            self.out.write(_P.BININT + struct.pack("<i", n))
        else:
            data = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
            op = _P.LONG1 + bytes([len(data)]) if len(data) < 256 else _P.LONG4 + struct.pack("<i", len(data))
            self.out.write(op + data)

    def _str(self, s: str) -> None:
        data = s.encode("utf-8", "surrogatepass")
        self.out.write(_P.BINUNICODE + struct.pack("<I", len(data)) + data)

    def _bytes(self, b: bytes) -> None:
        if self.protocol >= 3:
            op = _P.SHORT_BINBYTES + bytes([len(b)]) if len(b) < 256 else _P.BINBYTES + struct.pack("<I", len(b))
            self.out.write(op + b)
        else:  # protocol 2 has no bytes: _codecs.encode(latin-1 text, "latin1"), as CPython writes it
            self._global("_codecs", "encode")
            self._str(b.decode("latin-1"))
            self._str("latin1")
            self.out.write(_P.TUPLE2 + _P.REDUCE)

    def _global(self, module: str, name: str) -> None:
        if (module, name) in self.globals:
            return self._get(self.globals[module, name])
        self.out.write(_P.GLOBAL + f"{module}\n{name}\n".encode())
        self.globals[module, name] = self._memoize()

    def _tuple(self, items, path: str) -> None:
        if not items:
            self.out.write(_P.EMPTY_TUPLE)
            return
        if len(items) <= 3:
            for i, item in enumerate(items):
                self.save(item, f"{path}[{i}]")
            self.out.write((_P.TUPLE1, _P.TUPLE2, _P.TUPLE3)[len(items) - 1])
        else:
            self.out.write(_P.MARK)
            for i, item in enumerate(items):
                self.save(item, f"{path}[{i}]")
            self.out.write(_P.TUPLE)

    def _appends(self, items, path: str) -> None:
        items = list(items)
        for start in range(0, len(items), 1000):
            self.out.write(_P.MARK)
            for i, item in enumerate(items[start : start + 1000], start):
                self.save(item, f"{path}[{i}]")
            self.out.write(_P.APPENDS)

    def _setitems(self, pairs, path: str) -> None:
        pairs = list(pairs)
        for start in range(0, len(pairs), 1000):
            self.out.write(_P.MARK)
            for key, value in pairs[start : start + 1000]:
                self.save(key, f"{path} (a key)")
                self.save(value, f"{path}[{key!r}]")
            self.out.write(_P.SETITEMS)

    # objects
    def save(self, obj, path: str) -> None:
        kind = type(obj)
        if obj is None:
            self.out.write(_P.NONE)
        elif kind is bool:
            self.out.write(_P.NEWTRUE if obj else _P.NEWFALSE)
        elif kind is int:
            self._int(obj)
        elif kind is float:
            self.out.write(_P.BINFLOAT + struct.pack(">d", obj))
        elif id(obj) in self.memo:
            self._get(self.memo[id(obj)])
        elif kind is str:
            self._str(obj)
            self._put(obj)
        elif kind is bytes:
            self._bytes(obj)
            self._put(obj)
        elif kind is tuple:
            if id(obj) in self.busy:
                raise ValueError(f"numformer.save: the tuple at {path} contains itself")
            self.busy.add(id(obj))
            self._tuple(obj, path)
            self.busy.discard(id(obj))
            self._put(obj)
        elif kind is list:
            self.out.write(_P.EMPTY_LIST)
            self._put(obj)
            self._appends(obj, path)
        elif kind is dict:
            self.out.write(_P.EMPTY_DICT)
            self._put(obj)
            self._setitems(obj.items(), path)
        elif _tensor_type(obj) is not None:
            self._tensor(obj, _tensor_type(obj), path)
        elif isinstance(obj, type) or callable(obj) and hasattr(obj, "__qualname__") and not hasattr(obj, "__self__"):
            self._reference(obj, path)
        else:
            self._object(obj, path)

    def _reference(self, obj, path: str) -> None:
        """A class or function, by name (``GLOBAL module qualname``), as pickle saves them."""
        module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", "")
        found = sys.modules.get(module) if isinstance(module, str) else None
        for part in qualname.split("."):
            found = getattr(found, part, None)
        if found is not obj or "<" in qualname:
            raise TypeError(
                f"numformer.save: cannot save {obj!r} at {path}: only classes and functions reachable "
                f"by their module and name are saved (by name), not lambdas or local ones"
            )
        self._global(module, qualname)

    def _object(self, obj, path: str) -> None:
        """Any other object, as pickle saves it: the ``__reduce_ex__`` protocol."""
        if isinstance(obj, np.ndarray | np.generic) and obj.dtype.hasobject:
            raise TypeError(f"numformer.save: cannot save the NumPy array of Python objects at {path} (dtype object)")
        if isinstance(obj, np.ndarray) and type(obj) is not np.ndarray:  # np.memmap and the like
            obj = np.asarray(obj)
        try:
            reduced = obj.__reduce_ex__(2)  # protocol 2's forms (no out-of-band buffers), whatever the header says
        except Exception as err:
            raise TypeError(f"numformer.save: cannot save {type(obj).__name__} at {path}: {err}") from None
        if isinstance(reduced, str):  # a global's name
            return self._reference(obj, path)
        func, args, state, items, pairs = (tuple(reduced) + (None,) * 5)[:5]
        if getattr(func, "__name__", "") == "__newobj__":  # copyreg.__newobj__(cls, *args): NEWOBJ
            self.save(args[0], f"{path} (its class)")
            self._tuple(args[1:], f"{path} (its arguments)")
            self.out.write(_P.NEWOBJ)
        else:
            if getattr(func, "__name__", "") == "__newobj_ex__":
                raise TypeError(f"numformer.save: {type(obj).__name__} at {path} needs keyword arguments to build")
            self.save(func, f"{path} (how to build it)")
            self._tuple(tuple(args), f"{path} (its arguments)")
            self.out.write(_P.REDUCE)
        self._put(obj)
        if items is not None:
            self._appends(items, path)
        if pairs is not None:
            self._setitems(pairs, path)
        if state is not None:
            self.save(state, f"{path} (its state)")
            self.out.write(_P.BUILD)

    def _tensor(self, obj, entry: _TensorType, path: str) -> None:
        array = obj.array
        host = array if isinstance(array, np.ndarray) else array.get()  # a GPU array: to the host
        location = "cpu" if host is array else "cuda:0"
        if entry.parameter:  # torch._utils._rebuild_parameter(data, requires_grad, hooks)
            self._global("torch._utils", "_rebuild_parameter")
            self._tensor_v2(host, location, False, path)
            self.out.write(_P.NEWTRUE if obj.requires_grad else _P.NEWFALSE)
            self._empty_hooks()
            self.out.write(_P.TUPLE3 + _P.REDUCE)
        else:
            self._tensor_v2(host, location, bool(obj.requires_grad), path)
        self._put(obj)

    def _empty_hooks(self) -> None:
        self._global("collections", "OrderedDict")
        self.out.write(_P.EMPTY_TUPLE + _P.REDUCE)

    def _tensor_v2(self, array: np.ndarray, location: str, requires_grad: bool, path: str) -> None:
        """``_rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks)`` (``_v3``
        with a dtype for uint16/32/64, which have no storage class, as PyTorch writes them)."""
        name = _dtype_name(array.dtype)
        if name is None:
            raise TypeError(f"numformer.save: the tensor at {path} has dtype {array.dtype}, which PyTorch has not")
        untyped = name in _UNTYPED_DTYPES
        key, offset, strides, numel = self._storage(array)
        self._global("torch._utils", "_rebuild_tensor_v3" if untyped else "_rebuild_tensor_v2")
        self.out.write(_P.MARK + _P.MARK)
        self._str("storage")
        self._global("torch.storage", "UntypedStorage") if untyped else self._global("torch", _STORAGE_OF_DTYPE[name])
        self._str(key)
        self._str(location)
        self._int(numel * array.dtype.itemsize if untyped else numel)
        self.out.write(_P.TUPLE + _P.BINPERSID)
        self._int(offset)
        self._tuple(tuple(int(n) for n in array.shape), path)
        self._tuple(strides, path)
        self.out.write(_P.NEWTRUE if requires_grad else _P.NEWFALSE)
        self._empty_hooks()
        if untyped:
            self._global("torch", name)
        self.out.write(_P.TUPLE + _P.REDUCE)

    def _storage(self, array: np.ndarray) -> tuple[str, int, tuple, int]:
        """The storage an array is saved in: (key, offset, strides, storage numel), in elements.
        A view of a contiguous NumPy array that other tensors view too is saved once, as
        PyTorch saves a storage once; anything else gets a contiguous copy of its own."""
        itemsize = array.dtype.itemsize
        root = array
        while isinstance(root.base, np.ndarray):
            root = root.base
        if (
            array.size
            and array.dtype.isnative
            and root.dtype == array.dtype
            and (root.flags.c_contiguous or root.flags.f_contiguous)
            and all(s >= 0 and s % itemsize == 0 for s in array.strides)
        ):
            delta = array.__array_interface__["data"][0] - root.__array_interface__["data"][0]
            offset, strides = delta // itemsize, tuple(s // itemsize for s in array.strides)
            last = offset + sum((n - 1) * s for n, s in zip(array.shape, strides, strict=True))
            if delta >= 0 and delta % itemsize == 0 and last < root.size:
                flat = root.reshape(-1) if root.flags.c_contiguous else root.T.reshape(-1)
                key = self.storages.setdefault(id(root), (str(len(self.storages)), flat))[0]
                self.alive.append(root)
                return key, offset, strides, root.size
        own = np.array(array, dtype=array.dtype.newbyteorder("="), order="C", copy=True)  # 0-d stays 0-d
        self.storages[id(own)] = (str(len(self.storages)), own.reshape(-1))
        self.alive.append(own)
        return self.storages[id(own)][0], 0, tuple(s // itemsize for s in own.strides), own.size


def _write_record(zf: zipfile.ZipFile, out, name: str, payload) -> None:
    """One uncompressed record whose data starts at a multiple of 64 bytes in the stream (the
    local header's extra field pads it, as PyTorch's writer does)."""
    data = memoryview(payload).cast("B") if not isinstance(payload, bytes) else payload
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.compress_type, info.file_size = zipfile.ZIP_STORED, len(data)
    big = len(data) > 2**30  # zip64 then, decided here so the header's size is known
    header = 30 + len(name.encode()) + (20 if big else 0)
    pad = -(out.tell() + header) % _ALIGNMENT
    if 0 < pad < 4:  # an extra field is at least its 4-byte head
        pad += _ALIGNMENT
    info.extra = struct.pack("<HH", 0x4246, pad - 4) + b"Z" * (pad - 4) if pad else b""  # "FB", as PyTorch's
    with zf.open(info, "w", force_zip64=big) as dest:
        dest.write(data)


def _write_archive(out, pickled: bytes, storages: dict) -> None:
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
        _write_record(zf, out, "archive/data.pkl", pickled)
        _write_record(zf, out, "archive/.format_version", b"1")
        _write_record(zf, out, "archive/.storage_alignment", str(_ALIGNMENT).encode())
        _write_record(zf, out, "archive/byteorder", sys.byteorder.encode())
        for key, flat in storages.values():
            _write_record(zf, out, f"archive/data/{key}", flat.view(np.uint8))
        _write_record(zf, out, "archive/version", b"3\n")


def save(obj, f, pickle_module=None, pickle_protocol: int = DEFAULT_PROTOCOL, _use_new_zipfile_serialization=True):
    """Save ``obj`` in PyTorch's checkpoint format (``torch.save``): a file that
    ``torch.load(f, weights_only=True)`` and ``numformer.load`` read.

    ``obj`` may nest dicts, ``OrderedDict``, lists, tuples, sets, numbers, strings, bytes,
    None, numformer tensors and parameters (as torch tensors and ``torch.nn.Parameter``),
    NumPy arrays, scalars and dtypes (as NumPy pickles them: numformer reads them, torch only
    with NumPy's globals allowed), classes and functions (by name), and other objects pickled
    through ``__reduce_ex__`` (whole modules: their class by name and their ``__dict__``).
    Tensors whose arrays view one NumPy array share one storage in the file. Nothing is
    written unless the whole object can be; a path is written atomically.

    Args:
        obj: what to save.
        f: a path (``str``/``os.PathLike``) or a binary file object with ``write``.
        pickle_module: must be None (or the ``pickle`` module): numformer writes its own pickle.
        pickle_protocol: 2 (PyTorch's default, the one ``torch.load(weights_only=True)`` reads)
            to 5.
        _use_new_zipfile_serialization: must be True: numformer writes only the zip format.

    Raises:
        TypeError: an object that cannot be saved (named with its place in ``obj``), such as a
            lambda, or a tensor of a dtype PyTorch has not.
        ValueError: a protocol outside 2..5, another pickle module or the legacy format.
        FileNotFoundError: the folder of ``f`` does not exist.

    Source: PyTorch's ``torch/serialization.py`` (``_save``) and ``torch/_tensor.py``
    (``__reduce_ex__``), read for the format.
    """
    if pickle_module not in (None, pickle):
        raise ValueError("numformer.save: pickle_module must be None: numformer writes its own pickle")
    if not _use_new_zipfile_serialization:
        raise ValueError("numformer.save: numformer writes only PyTorch's zip format (_use_new_zipfile_serialization)")
    if not isinstance(pickle_protocol, int) or not 2 <= pickle_protocol <= 5:
        raise ValueError(f"numformer.save: pickle_protocol must be 2 to 5, got {pickle_protocol!r}")
    pickler = _Pickler(pickle_protocol)
    pickled = pickler.dump(obj)
    if isinstance(f, str | os.PathLike):

        def write(tmp: Path) -> None:
            with open(tmp, "wb") as out:
                _write_archive(out, pickled, pickler.storages)

        atomic_write(Path(f), write)
    elif hasattr(f, "write"):
        if getattr(f, "seekable", lambda: False)():
            _write_archive(f, pickled, pickler.storages)
        else:  # the zip is written whole in memory, then to the stream
            buffer = io.BytesIO()
            _write_archive(buffer, pickled, pickler.storages)
            f.write(buffer.getvalue())
    else:
        raise TypeError(f"numformer.save: f must be a path or a binary file object, got {type(f).__name__}")


# --- reading --------------------------------------------------------------------------------------
class _Marker:
    """A torch object a file names that numformer knows only by its name (``torch.Tensor``, a
    storage class): a value rebuilds check for, never called."""

    def __init__(self, name: str, dtype: str | None = None):
        self.name, self.dtype = name, dtype

    def __repr__(self) -> str:
        return self.name


_TORCH_TENSOR, _TORCH_PARAMETER = _Marker("torch.Tensor"), _Marker("torch.nn.Parameter")
_STORAGE_TYPES = {f"torch.{name}": _Marker(f"torch.{name}", dtype) for name, dtype in _STORAGE_DTYPES.items()}
_STORAGE_TYPES["torch.UntypedStorage"] = _STORAGE_TYPES["torch.storage.UntypedStorage"] = _Marker(
    "torch.UntypedStorage", "uint8"
)
_BLOCKED_MODULES = {"os", "sys", "posix", "nt", "subprocess", "shutil", "importlib", "runpy", "pickle"}
_BLOCKED_BUILTINS = {"eval", "exec", "compile", "__import__", "open", "getattr", "setattr", "delattr", "globals"}
_OLD_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}  # protocol 2's Python 2 names
_RECONSTRUCT = ("numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct")
_SCALAR = ("numpy.core.multiarray.scalar", "numpy._core.multiarray.scalar")


class _Storage:
    """A storage a persistent id names: its bytes are read when a tensor first uses it."""

    def __init__(self, key: str, dtype: str, location: str, numel: int):
        self.key, self.dtype, self.location, self.numel = key, dtype, location, numel


class _PendingArray:
    """What NumPy's ``_reconstruct`` returns until ``BUILD`` gives it its state."""


def _check_dtype(dtype) -> np.dtype:
    """``dtype`` if a NumPy array of it holds only numbers (no Python objects, no records)."""
    if isinstance(dtype, np.dtype) and (_dtype_name(dtype) is not None or dtype.kind in "biufc" and not dtype.fields):
        return dtype
    raise pickle.UnpicklingError(f"NumPy dtype {dtype!r} is not allowed: only numbers and bools load")


class Unpickler:
    """Reads a pickle without running code from it (see the module's docstring for the rules):
    PyTorch's ``torch._weights_only_unpickler.Unpickler``, written for numformer.

    Args:
        file: a binary file object holding the pickle.
        encoding: how protocol-0/2 ``str`` of Python 2 decode (``"bytes"`` keeps them bytes).
        storage: ``storage(record: _Storage, dtype: np.dtype) -> np.ndarray``: a storage's
            elements (1-D) when a tensor uses it; None: a file with tensors is refused.
        device: ``device(record, array) -> (array, device name)``: where the tensor goes.

    Raises (from ``load``):
        pickle.UnpicklingError: a global, opcode or construction the rules refuse, naming it.
    """

    def __init__(self, file, *, encoding: str = "utf-8", storage=None, device=None):
        self.file, self.encoding = file, encoding
        self._storage, self._device = storage, device
        self.memo: dict[int, object] = {}
        self._records: dict[str, _Storage] = {}
        self._built: dict[int, tuple] = {}  # id(tensor) -> (tensor, host array, device)
        self._missing: dict[int, object] = {}  # tensors whose dtype numformer cannot make (bfloat16)
        self._memo_keys: dict[int, list] = {}  # id(pending object) -> its memo keys, for BUILD
        own = {
            "collections.OrderedDict": OrderedDict,
            "builtins.set": set,
            "builtins.frozenset": frozenset,
            "builtins.complex": complex,
            "builtins.bytearray": bytearray,
            "_codecs.encode": _encode,
            "torch._utils._rebuild_tensor": self._rebuild_tensor,
            "torch._utils._rebuild_tensor_v2": self._rebuild_tensor_v2,
            "torch._utils._rebuild_tensor_v3": self._rebuild_tensor_v3,
            "torch._utils._rebuild_parameter": self._rebuild_parameter,
            "torch._utils._rebuild_parameter_with_state": self._rebuild_parameter,
            "torch._tensor._rebuild_from_type_v2": self._rebuild_from_type_v2,
            "torch.Size": _size,
            "torch.device": _device_name,
            "copyreg._reconstructor": self._reconstructor,
            **dict.fromkeys(_RECONSTRUCT, _reconstruct),
            **dict.fromkeys(_SCALAR, _scalar),
            "numpy.dtype": _numpy_dtype_of,
        }
        self._callables = {id(f) for f in own.values()}
        self._globals = {
            **own,
            **_STORAGE_TYPES,
            "torch.Tensor": _TORCH_TENSOR,
            "torch.nn.parameter.Parameter": _TORCH_PARAMETER,
            "torch.nn.Parameter": _TORCH_PARAMETER,
            "numpy.ndarray": np.ndarray,
            **{f"torch.{name}": _torch_dtype(name) for name in _NUMPY_OF_TORCH},
        }
        bf16 = _DTYPES.get("bfloat16")
        if isinstance(bf16, np.dtype):
            self._globals["ml_dtypes.bfloat16"] = bf16.type  # how NumPy pickles a bfloat16 dtype
        self._classes = {id(c) for c in (OrderedDict, set, frozenset, complex, bytearray, dict, list, tuple)}
        self._numformer: dict[str, type] = {}
        for base in _MODULE_BASES:
            todo = [base]
            while todo:
                cls = todo.pop()
                todo.extend(cls.__subclasses__())
                if cls.__module__ == "numformer" or cls.__module__.startswith("numformer."):
                    self._numformer[f"{cls.__module__}.{cls.__qualname__}"] = cls
        self._user = {_global_name(g): (g[0] if isinstance(g, tuple) else g) for g in _SAFE_GLOBALS}

    # --- globals ------------------------------------------------------------------------------------
    def find_class(self, module: str, name: str):
        """The object a global names, from the allow-list; never imports anything.

        Raises:
            pickle.UnpicklingError: not allowed (the message says how to allow it)."""
        module = _OLD_MODULES.get(module, module)
        full = f"{module}.{name}"
        if module.split(".")[0] in _BLOCKED_MODULES or module == "builtins" and name in _BLOCKED_BUILTINS:
            raise pickle.UnpicklingError(
                f"weights-only load refused GLOBAL {full}: numformer never loads globals of module "
                f"{module.split('.')[0]} or builtins that run code, even when allowed"
            )
        if full in self._user:
            return self._user[full]
        if full in self._globals:
            return self._globals[full]
        if full in self._numformer:
            return self._numformer[full]
        raise pickle.UnpicklingError(
            f"weights-only load refused GLOBAL {full}: it is not an allowed global. If you trust this "
            f"file and {full}, allow it with numformer.serialization.add_safe_globals([{name}]) or "
            f"inside `with numformer.serialization.safe_globals([{name}]):`"
            + (". numformer has no such torch object" if module.split(".")[0] == "torch" else "")
        )

    def _is_user_allowed(self, obj) -> bool:
        return any(obj is g for g in self._user.values())

    def _may_new(self, cls) -> bool:
        return isinstance(cls, type) and (
            id(cls) in self._classes or self._is_user_allowed(cls) or cls in self._numformer.values()
        )

    # --- persistent ids: storages -------------------------------------------------------------------
    def persistent_load(self, pid) -> _Storage:
        """``("storage", storage class, key, location, numel)`` (the legacy format adds a view
        that must be None) -> the storage's record."""
        if not isinstance(pid, tuple) or len(pid) not in (5, 6) or _ascii(pid[0]) != "storage":
            raise pickle.UnpicklingError(f"only persistent ids of storages are allowed, got {pid!r}")
        kind, key, location, numel = pid[1], _ascii(pid[2]), _ascii(pid[3]), pid[4]
        if not isinstance(kind, _Marker) or kind.dtype is None or not isinstance(key, str):
            raise pickle.UnpicklingError(f"a storage of unknown type {kind!r}")
        if not isinstance(location, str) or type(numel) is not int or numel < 0:
            raise pickle.UnpicklingError(f"storage {key}: bad location {location!r} or size {numel!r}")
        if len(pid) == 6 and pid[5] is not None:
            raise pickle.UnpicklingError(f"storage {key}: views of storages (pre-0.4 PyTorch) are not supported")
        record = self._records.setdefault(key, _Storage(key, kind.dtype, location, numel))
        if (record.dtype, record.numel) != (kind.dtype, numel):
            raise pickle.UnpicklingError(f"storage {key} is named with two types or sizes")
        return record

    # --- tensors ------------------------------------------------------------------------------------
    def _rebuild_tensor(self, storage, offset, size, stride):
        return self._tensor(storage, offset, size, stride, False, None, None)

    def _rebuild_tensor_v2(self, storage, offset, size, stride, requires_grad, hooks, metadata=None):
        return self._tensor(storage, offset, size, stride, requires_grad, metadata, None)

    def _rebuild_tensor_v3(self, storage, offset, size, stride, requires_grad, hooks, dtype, metadata=None):
        name = _name_of_dtype(dtype)
        if name is None:
            raise pickle.UnpicklingError(f"_rebuild_tensor_v3: expected a torch dtype, got {dtype!r}")
        return self._tensor(storage, offset, size, stride, requires_grad, metadata, name)

    def _tensor(self, storage, offset, size, stride, requires_grad, metadata, dtype_name):
        """A tensor viewing ``storage`` at ``offset`` with ``size`` and ``stride`` (in elements),
        checked to stay inside the storage; views of one storage share its memory."""
        if not isinstance(storage, _Storage):
            raise pickle.UnpicklingError(
                f"a tensor's storage must be a persistent storage, got {type(storage).__name__}"
            )
        if self._storage is None:
            raise pickle.UnpicklingError("this pickle has tensors but no storages to read them from")
        size, stride = tuple(size), tuple(stride)
        if not all(type(v) is int and v >= 0 for v in (offset, *size, *stride)) or len(size) != len(stride):
            raise pickle.UnpicklingError(f"storage {storage.key}: bad view offset={offset} size={size} stride={stride}")
        name = dtype_name or storage.dtype
        wanted = _numpy_dtype(name) if name in _NUMPY_OF_TORCH else None
        if name not in _NUMPY_OF_TORCH:
            raise pickle.UnpicklingError(f"storage {storage.key}: unknown dtype {name}")
        missing = not isinstance(wanted, np.dtype)
        dtype = np.dtype(np.uint16) if missing else wanted  # bfloat16's bits, until the error below
        elements = self._storage(storage, dtype)
        if any(n == 0 for n in size):
            array = np.empty(size, dtype)
        else:
            last = offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
            if last >= len(elements):
                raise pickle.UnpicklingError(
                    f"storage {storage.key}: a view reaches element {last} of a storage of {len(elements)}"
                )
            array = np.lib.stride_tricks.as_strided(
                elements[offset:], shape=size, strides=[s * dtype.itemsize for s in stride]
            )
            if not _non_overlapping(size, stride):
                array.flags.writeable = False  # an expanded view: reading is all that is well defined
        if metadata:
            if not isinstance(metadata, dict) or set(metadata) - {"conj", "neg"}:
                raise pickle.UnpicklingError(f"storage {storage.key}: unknown tensor metadata {metadata!r}")
            if metadata.get("conj"):
                array = np.conj(array)
            if metadata.get("neg"):
                array = np.negative(array)
        host, device = self._device(storage, array)
        entry = _TENSOR_TYPES.get(_base_tensor_type())
        if entry is None:
            raise pickle.UnpicklingError("no tensor type is registered (import numformer first)")
        tensor = self._call_rebuild(entry, host, False if missing else bool(requires_grad), device, storage)
        self._built[id(tensor)] = (tensor, host, device)
        if missing:
            self._missing[id(tensor)] = (tensor, wanted)
        return tensor

    def _call_rebuild(self, entry: _TensorType, array, requires_grad: bool, device: str, storage: _Storage):
        try:
            return entry.rebuild(array, requires_grad, device)
        except TypeError as err:  # requires_grad on integers, say
            raise pickle.UnpicklingError(f"storage {storage.key}: {err}") from None
        except (RuntimeError, ValueError) as err:
            raise RuntimeError(
                f"a tensor saved on {storage.location} cannot be restored on {device} ({err}); "
                f"load it on the CPU with map_location='cpu'"
            ) from None

    def _rebuild_parameter(self, data, requires_grad, hooks, state=None):
        if id(data) not in self._built or state:
            raise pickle.UnpicklingError("_rebuild_parameter: expected a tensor of this file and no extra state")
        _, host, device = self._built[id(data)]
        entry = next((e for e in _TENSOR_TYPES.values() if e.parameter), None)
        if entry is None:
            raise pickle.UnpicklingError("no parameter type is registered (import numformer.nn first)")
        missing = id(data) in self._missing
        param = self._call_rebuild(
            entry, host, False if missing else bool(requires_grad), device, _Storage("", "", device, 0)
        )
        self._built[id(param)] = (param, host, device)
        if missing:
            self._missing[id(param)] = self._missing[id(data)]
        return param

    def _rebuild_from_type_v2(self, func, new_type, args, state):
        """torch's wrapper for tensor subclasses and tensors with attributes: only plain tensors
        and parameters, without attributes, load."""
        if new_type not in (_TORCH_TENSOR, _TORCH_PARAMETER) or state or id(func) not in self._callables:
            raise pickle.UnpicklingError(f"tensor subclass {new_type!r} (or a tensor with attributes) is not supported")
        tensor = func(*args)
        if id(tensor) not in self._built:
            raise pickle.UnpicklingError(f"_rebuild_from_type_v2: {func!r} did not make a tensor")
        return self._rebuild_parameter(tensor, tensor.requires_grad, None) if new_type is _TORCH_PARAMETER else tensor

    def _reconstructor(self, cls, base, state):
        """copyreg's protocol 0/1 object maker: ``object.__new__(cls)`` for allowed classes."""
        if base is not object or state is not None or not self._may_new(cls):
            raise pickle.UnpicklingError(f"copyreg._reconstructor of {cls!r} is not allowed")
        return object.__new__(cls)

    # --- the opcodes --------------------------------------------------------------------------------
    def load(self):
        """The object the pickle holds: the pickle's opcodes run on a stack, each family in its
        method (containers, memo, objects), every opcode that could run code refused.

        Raises:
            pickle.UnpicklingError: refused by the rules, or not a valid pickle."""
        stack: list = []
        marks: list[list] = []
        try:
            for op, arg in _opcodes(self.file):
                name = op.name
                if name in _PUSH:
                    stack.append(_PUSH[name](arg) if _PUSH[name] else arg)
                elif name in ("STRING", "BINSTRING", "SHORT_BINSTRING"):  # Python 2 str
                    raw = arg.encode("latin-1")
                    stack.append(raw if self.encoding == "bytes" else raw.decode(self.encoding))
                elif name in _CONTAINER_OPS:
                    stack = self._container_op(name, stack, marks)
                elif name in _MEMO_OPS:
                    self._memo_op(name, arg, stack)
                elif name in _OBJECT_OPS:
                    self._object_op(name, arg, stack)
                elif name in ("PROTO", "FRAME"):
                    pass
                elif name == "STOP":
                    if len(stack) != 1 or marks:
                        raise pickle.UnpicklingError("the pickle ends with a malformed stack")
                    return stack.pop()
                else:  # INST, OBJ, EXT1/2/4, NEXT_BUFFER, READONLY_BUFFER
                    raise pickle.UnpicklingError(f"opcode {name} is not allowed: it can run code or needs outside data")
        except (IndexError, KeyError) as err:  # an empty stack, a missing mark
            raise pickle.UnpicklingError(f"the pickle is malformed ({type(err).__name__}: {err})") from None
        raise pickle.UnpicklingError("the pickle ended before STOP")

    def _container_op(self, name: str, stack: list, marks: list[list]) -> list:
        """Marks, tuples, lists, dicts and sets; returns the stack (a mark starts a new one)."""
        if name == "MARK":
            marks.append(stack)
            return []
        if name in ("TUPLE", "LIST", "DICT", "FROZENSET", "POP_MARK"):
            items, stack = stack, marks.pop()
            if name == "TUPLE":
                stack.append(tuple(items))
            elif name == "LIST":
                stack.append(items)
            elif name == "DICT":
                stack.append(dict(zip(items[::2], items[1::2], strict=True)))
            elif name == "FROZENSET":
                stack.append(frozenset(items))
        elif name in ("TUPLE1", "TUPLE2", "TUPLE3"):
            n = int(name[-1])
            stack[-n:] = [tuple(stack[-n:])]
        elif name == "POP":
            if not stack:
                return marks.pop()
            stack.pop()
        elif name == "DUP":
            stack.append(stack[-1])
        elif name in ("APPEND", "APPENDS"):
            items = [stack.pop()] if name == "APPEND" else stack
            if name == "APPENDS":
                stack = marks.pop()
            self._check_target(stack[-1], list, name)
            stack[-1].extend(items)
        elif name in ("SETITEM", "SETITEMS"):
            if name == "SETITEM":
                value, key = stack.pop(), stack.pop()
                items = [key, value]
            else:
                items, stack = stack, marks.pop()
            self._check_target(stack[-1], dict, name)
            for i in range(0, len(items), 2):
                stack[-1][items[i]] = items[i + 1]
        elif name == "ADDITEMS":
            items, stack = stack, marks.pop()
            self._check_target(stack[-1], set, name)
            stack[-1].update(items)
        return stack

    def _memo_op(self, name: str, arg, stack: list) -> None:
        memo = self.memo
        if name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
            key = len(memo) if name == "MEMOIZE" else arg
            memo[key] = stack[-1]
            if isinstance(stack[-1], _PendingArray | np.dtype):
                self._memo_keys.setdefault(id(stack[-1]), []).append(key)
        else:  # GET, BINGET, LONG_BINGET
            if arg not in memo:
                raise pickle.UnpicklingError(f"memo key {arg} is not defined")
            stack.append(memo[arg])

    def _object_op(self, name: str, arg, stack: list) -> None:
        """Classes found by name, calls, instances, their state and persistent ids (the tensors'
        storages), each checked against the allow-list."""
        if name == "GLOBAL":
            module, _, qualname = arg.partition(" ")
            stack.append(self.find_class(module, qualname))
        elif name == "STACK_GLOBAL":
            qualname, module = stack.pop(), stack.pop()
            if type(module) is not str or type(qualname) is not str:
                raise pickle.UnpicklingError("STACK_GLOBAL: module and name must be strings")
            stack.append(self.find_class(module, qualname))
        elif name == "REDUCE":
            args = stack.pop()
            func = stack[-1]
            if id(func) not in self._callables and not self._is_user_allowed(func):
                raise pickle.UnpicklingError(f"calling {func!r} is not allowed (add_safe_globals allows it)")
            stack[-1] = func(*args)
        elif name in ("NEWOBJ", "NEWOBJ_EX"):
            kwargs = stack.pop() if name == "NEWOBJ_EX" else {}
            args, cls = stack.pop(), stack.pop()
            stack.append(self._new_object(cls, args, kwargs))
        elif name == "BUILD":
            state = stack.pop()
            self._build(stack, state)
        else:  # PERSID, BINPERSID
            stack.append(self.persistent_load(arg if name == "PERSID" else stack.pop()))

    def _new_object(self, cls, args, kwargs):
        if cls is _TORCH_PARAMETER:
            return self._rebuild_parameter(*args[:1], args[1] if len(args) > 1 else True, None)
        if not self._may_new(cls):
            raise pickle.UnpicklingError(
                f"making an instance of {cls!r} is not allowed: only numformer's modules and "
                f"classes allowed with numformer.serialization.add_safe_globals"
            )
        if cls in self._numformer.values() and (args or kwargs):
            raise pickle.UnpicklingError(f"{cls.__qualname__} is built without arguments")
        return cls.__new__(cls, *args, **kwargs)

    def _check_target(self, target, kind: type, op: str) -> None:
        if type(target) not in (kind, OrderedDict if kind is dict else kind) and not (
            isinstance(target, kind) and self._is_user_allowed(type(target))
        ):
            raise pickle.UnpicklingError(f"{op} on a {type(target).__name__} is not allowed (only {kind.__name__})")

    def _build(self, stack: list, state) -> None:
        """``BUILD``: give an object its state: NumPy's arrays and dtypes by numformer's code,
        instances of allowed classes their ``__dict__``."""
        inst = stack[-1]
        if isinstance(inst, _PendingArray | np.dtype):
            new = _array_from_state(state) if isinstance(inst, _PendingArray) else _dtype_with_state(inst, state)
            stack[-1] = new
            for key in self._memo_keys.pop(id(inst), ()):
                self.memo[key] = new
            return
        cls = type(inst)
        user = self._is_user_allowed(cls)
        if not user and cls not in self._numformer.values() and cls is not OrderedDict:
            raise pickle.UnpicklingError(f"setting the state of a {cls.__qualname__} is not allowed")
        if user and getattr(cls, "__setstate__", None) is not None:
            inst.__setstate__(state)
            return
        slots = None
        if isinstance(state, tuple) and len(state) == 2:
            state, slots = state
        if state:
            if not isinstance(state, dict) or not all(type(k) is str for k in state):
                raise pickle.UnpicklingError(f"the state of a {cls.__qualname__} must be a dict of names")
            if getattr(cls, "__setstate__", None) is not None:
                raise pickle.UnpicklingError(f"{cls.__qualname__} has a __setstate__; allow it with add_safe_globals")
            inst.__dict__.update(state)
        if slots:
            if not user:
                raise pickle.UnpicklingError(f"slot state for {cls.__qualname__} is not allowed")
            for key, value in slots.items():
                setattr(inst, key, value)


def _opcodes(file):
    """``(opcode, argument)`` pairs of the pickle in ``file`` up to ``STOP``, parsed (never run) by
    ``pickletools.genops``; a truncated or invalid pickle raises ``pickle.UnpicklingError``."""
    ops = pickletools.genops(file)
    while True:
        try:
            op, arg, _ = next(ops)
        except StopIteration:
            return
        except ValueError as err:
            raise pickle.UnpicklingError(f"the pickle is truncated or invalid ({err})") from None
        yield op, arg


def _base_tensor_type():
    """The registered class torch tensors load as: the one that is not a parameter."""
    return next((cls for cls, e in _TENSOR_TYPES.items() if not e.parameter), None)


def _torch_dtype(name: str):
    """``torch.float32`` and the like: the NumPy dtype (bfloat16: the registered one, or its
    stand-in naming the package it needs)."""
    dtype = _numpy_dtype(name)
    return _Marker("torch.bfloat16", "bfloat16") if dtype is None else dtype


def _name_of_dtype(dtype) -> str | None:
    """torch's name of a dtype a file gave (a NumPy dtype or bfloat16's stand-in)."""
    if isinstance(dtype, np.dtype):
        return _dtype_name(dtype)
    name = getattr(dtype, "dtype", None) if isinstance(dtype, _Marker) else getattr(dtype, "name", None)
    return name if name == "bfloat16" else None


def _non_overlapping(size: tuple, stride: tuple) -> bool:
    """Whether no two elements of a view share memory (sorted by stride, each dimension's step
    clears the whole extent of the smaller ones)."""
    extent = 1
    for s, n in sorted((s, n) for n, s in zip(size, stride, strict=True) if n > 1):
        if s < extent:
            return False
        extent = s * n
    return True


def _ascii(value):
    return value.decode("ascii") if isinstance(value, bytes) else value


def _encode(text, encoding="latin1"):
    """``_codecs.encode``, as protocol 2 writes bytes: latin-1 only."""
    if type(text) is not str or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"_codecs.encode is allowed for latin-1 text only, got {encoding!r}")
    return text.encode("latin-1")


def _size(dims=()):
    """``torch.Size(dims)``: a tuple of ints (numformer's shapes are tuples)."""
    dims = tuple(dims)
    if not all(type(d) is int for d in dims):
        raise pickle.UnpicklingError(f"torch.Size of non-integers {dims!r}")
    return dims


def _device_name(kind, index=None) -> str:
    """``torch.device(...)`` as numformer names devices: ``"cpu"``, ``"cuda:0"``."""
    if not isinstance(kind, str) or index is not None and type(index) is not int:
        raise pickle.UnpicklingError(f"torch.device({kind!r}, {index!r}) is not a device")
    return kind if index is None else f"{kind}:{index}"


def _numpy_dtype_of(spec, align=False, copy=False) -> np.dtype:
    """``numpy.dtype(spec, align, copy)`` for numbers and bools only (a fresh object: ``BUILD``
    may give it another byte order)."""
    if not (isinstance(spec, str) and len(spec) <= 16 or isinstance(spec, type) and issubclass(spec, np.generic)):
        raise pickle.UnpicklingError(f"numpy.dtype({spec!r}) is not allowed")
    try:
        dtype = np.dtype(spec, align=bool(align), copy=True)
    except TypeError as err:
        raise pickle.UnpicklingError(f"numpy.dtype({spec!r}): {err}") from None
    return _check_dtype(dtype)


def _dtype_with_state(dtype: np.dtype, state) -> np.dtype:
    """A dtype given the state NumPy pickles (version, byte order, ...): only the byte order is
    used; records and sub-arrays are refused."""
    if not isinstance(state, tuple) or len(state) < 5 or state[2:5] != (None, None, None):
        raise pickle.UnpicklingError(f"NumPy dtype state {state!r} is not allowed (records and sub-arrays)")
    order = state[1]
    if order not in ("<", ">", "|", "="):
        raise pickle.UnpicklingError(f"NumPy dtype byte order {order!r}")
    return dtype.newbyteorder(order) if order in "<>" else dtype


def _reconstruct(subtype, shape, typecode):
    """NumPy's ``_reconstruct(ndarray, (0,), b'b')``: an array to be built by ``BUILD``."""
    if subtype is not np.ndarray:
        raise pickle.UnpicklingError(f"numpy _reconstruct of {subtype!r} is not allowed (only numpy.ndarray)")
    return _PendingArray()


def _array_from_state(state) -> np.ndarray:
    """An array from the state NumPy pickles: ``(version, shape, dtype, fortran, raw bytes)``."""
    if isinstance(state, tuple) and len(state) == 5:
        state = state[1:]
    if not isinstance(state, tuple) or len(state) != 4:
        raise pickle.UnpicklingError("NumPy array state must be (version, shape, dtype, is_fortran, data)")
    shape, dtype, fortran, raw = state
    dtype = _check_dtype(dtype)
    if isinstance(raw, str):  # a Python 2 pickle read with encoding='latin1'
        raw = raw.encode("latin-1")
    if not isinstance(shape, tuple) or not all(type(n) is int and n >= 0 for n in shape):
        raise pickle.UnpicklingError(f"NumPy array shape {shape!r}")
    if not isinstance(raw, bytes | bytearray) or len(raw) != int(np.prod(shape)) * dtype.itemsize:
        raise pickle.UnpicklingError(f"NumPy array data does not hold {shape} of {dtype}")
    return np.frombuffer(bytearray(raw), dtype).reshape(shape, order="F" if fortran else "C")


def _scalar(dtype, data):
    """NumPy's ``scalar(dtype, bytes)``: a NumPy scalar of a number dtype."""
    dtype = _check_dtype(dtype)
    if isinstance(data, str):
        data = data.encode("latin-1")
    if not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise pickle.UnpicklingError(f"NumPy scalar data does not hold one {dtype}")
    return np.frombuffer(data, dtype)[0]


# opcodes that push their argument (converted) onto the stack
_PUSH = {
    "INT": None, "BININT": None, "BININT1": None, "BININT2": None, "LONG": None, "LONG1": None,
    "LONG4": None, "FLOAT": None, "BINFLOAT": None, "UNICODE": None, "SHORT_BINUNICODE": None,
    "BINUNICODE": None, "BINUNICODE8": None, "BINBYTES": None, "SHORT_BINBYTES": None,
    "BINBYTES8": None, "BYTEARRAY8": bytearray,
    "NONE": None, "NEWTRUE": lambda _: True, "NEWFALSE": lambda _: False,
    "EMPTY_TUPLE": lambda _: (), "EMPTY_LIST": lambda _: [], "EMPTY_DICT": lambda _: {},
    "EMPTY_SET": lambda _: set(),
}  # fmt: skip
_CONTAINER_OPS = frozenset(
    "MARK TUPLE LIST DICT FROZENSET POP_MARK TUPLE1 TUPLE2 TUPLE3 POP DUP APPEND APPENDS SETITEM "
    "SETITEMS ADDITEMS".split()
)
_MEMO_OPS = frozenset("PUT BINPUT LONG_BINPUT MEMOIZE GET BINGET LONG_BINGET".split())
_OBJECT_OPS = frozenset("GLOBAL STACK_GLOBAL REDUCE NEWOBJ NEWOBJ_EX BUILD PERSID BINPERSID".split())


# --- files: where storages come from and where tensors go -----------------------------------------
def _itemsize(dtype_name: str) -> int:
    return 2 if dtype_name == "bfloat16" else np.dtype(_NUMPY_OF_TORCH[dtype_name]).itemsize


def _device_of(spec) -> str:
    """A device as ``map_location`` may give it: a name, bytes, or a device object (numformer's
    or torch's: anything with ``.type`` whose ``str`` is its name)."""
    if isinstance(spec, bytes):
        spec = spec.decode("ascii")
    if isinstance(spec, str) or hasattr(spec, "type"):
        return str(spec)
    raise TypeError(f"map_location: expected a device name, a device, a dict or a callable, got {spec!r}")


class _Storages:
    """A file's storages for ``Unpickler``: read once per key (``read(key, nbytes)`` gives the
    bytes as a uint8 array), viewed with their dtype, byte-swapped when the file's byte order is
    not this machine's, and placed by ``map_location`` as ``torch.load`` places them."""

    def __init__(self, read, byteorder: str, map_location):
        self.read, self.swap = read, byteorder != sys.byteorder
        self.map_location = map_location
        self.raw: dict[str, np.ndarray] = {}
        self.typed: dict[tuple, np.ndarray] = {}
        self.devices: dict[str, str] = {}
        self.swapped: set[str] = set()
        self.dtypes: dict[str, str] = {}  # key -> the storage's dtype name

    def storage(self, record: _Storage, dtype: np.dtype) -> np.ndarray:
        key = (record.key, dtype.str)
        if key in self.typed:
            return self.typed[key]
        if record.key not in self.raw:
            self.dtypes[record.key] = record.dtype
            self.raw[record.key] = self.read(record.key, record.numel * _itemsize(record.dtype))
        raw = self.raw[record.key]
        if raw.size % dtype.itemsize:
            raise pickle.UnpicklingError(f"storage {record.key} of {raw.size} bytes viewed as {dtype}")
        elements = raw.view(dtype)
        if self.swap and dtype.itemsize > 1:
            if record.key in self.swapped:
                raise pickle.UnpicklingError(
                    f"storage {record.key}: viewed as two dtypes in a file of the other byte order"
                )
            elements.byteswap(inplace=True)
            self.swapped.add(record.key)
        self.typed[key] = elements = self._place(record, elements)
        return elements

    def _place(self, record: _Storage, elements: np.ndarray) -> np.ndarray:
        saved, where = record.location, self.map_location
        if where is None:
            device = saved
        elif isinstance(where, dict):
            device = _device_of(where.get(saved, saved))
        elif isinstance(where, str | bytes) or hasattr(where, "type"):
            device = _device_of(where)
        elif callable(where):
            result = where(elements, saved)
            if result is None:
                device = saved
            elif isinstance(result, np.ndarray) and result.dtype == elements.dtype and result.shape == elements.shape:
                elements, device = result, "cpu"
            else:
                raise TypeError(
                    f"map_location callable: expected None or a NumPy array like the storage "
                    f"({elements.dtype}, {elements.shape}), got {type(result).__name__}"
                )
        else:
            device = _device_of(where)
        self.devices.setdefault(record.key, device)
        return elements

    def device(self, record: _Storage, array: np.ndarray) -> tuple[np.ndarray, str]:
        return array, self.devices[record.key]


def _paths(obj, targets: dict, path: str = "", seen: set | None = None) -> list[str]:
    """Where the objects in ``targets`` (by id) sit inside ``obj``: ``['model']['w']``, ``.attr``."""
    seen = set() if seen is None else seen
    if id(obj) in targets:
        return [path or "(the loaded object)"]
    if id(obj) in seen:
        return []
    seen.add(id(obj))
    if isinstance(obj, dict):
        children = [(f"{path}[{k!r}]", v) for k, v in obj.items()]
    elif isinstance(obj, list | tuple):
        children = [(f"{path}[{i}]", v) for i, v in enumerate(obj)]
    elif hasattr(obj, "__dict__") and not isinstance(obj, type):
        children = [(f"{path}.{k}", v) for k, v in vars(obj).items()]
    else:
        children = []
    return [p for child_path, child in children for p in _paths(child, targets, child_path, seen)]


def _unpickle(data, name: str, storages: _Storages | None, encoding: str):
    """Run ``Unpickler`` on ``data`` (a file object), naming the file in its errors, and check
    that every tensor's dtype could be made."""
    unpickler = Unpickler(
        data,
        encoding=encoding,
        storage=None if storages is None else storages.storage,
        device=None if storages is None else storages.device,
    )
    try:
        result = unpickler.load()
    except pickle.UnpicklingError as err:
        raise pickle.UnpicklingError(f"{name}: {err}") from None
    if unpickler._missing:
        paths = _paths(result, unpickler._missing)
        stand_in = next(iter(unpickler._missing.values()))[1]
        install = getattr(stand_in, "install", "the ml_dtypes package (pip install ml_dtypes)")
        raise TypeError(
            f"{name}: tensors {', '.join(paths) or '(unreachable)'} are bfloat16; numformer reads them with {install}"
        )
    return result


def _load_zip(opened, name: str, path: str | None, map_location, mmap: bool, encoding: str):
    try:
        zf = zipfile.ZipFile(opened)
    except (zipfile.BadZipFile, OSError, EOFError) as err:
        raise RuntimeError(f"{name}: truncated or not a PyTorch archive ({err})") from None
    with zf:
        names = zf.namelist()
        pkls = [n for n in names if n.endswith("/data.pkl") and n.count("/") == 1]
        if not pkls:
            raise RuntimeError(f"{name}: not a torch.save archive (no data.pkl in a top folder)")
        prefix = pkls[0][: -len("data.pkl")]
        if f"{prefix}constants.pkl" in names:
            raise RuntimeError(f"{name} is a TorchScript archive (torch.jit.save): numformer does not load TorchScript")
        byteorder = "little"  # PyTorch's assumption when a file has no byteorder record
        if f"{prefix}byteorder" in names:
            byteorder = zf.read(f"{prefix}byteorder").decode("ascii", "replace")
            if byteorder not in ("little", "big"):
                raise RuntimeError(f"{name}: unknown byte order {byteorder!r}")
        mapped = None
        if mmap:
            with open(path, "rb") as file:
                mapped = _mmap.mmap(file.fileno(), 0, access=_mmap.ACCESS_COPY)

        def read(key: str, nbytes: int) -> np.ndarray:
            try:
                info = zf.getinfo(f"{prefix}data/{key}")
            except KeyError:
                raise pickle.UnpicklingError(f"storage {key}: record data/{key} is missing") from None
            if info.file_size != nbytes:
                raise pickle.UnpicklingError(f"storage {key}: data/{key} holds {info.file_size} bytes, not {nbytes}")
            if mapped is not None and info.compress_type == zipfile.ZIP_STORED:
                opened.seek(info.header_offset)
                head = opened.read(30)
                if head[:4] != b"PK\x03\x04":
                    raise pickle.UnpicklingError(f"storage {key}: bad local header")
                start = info.header_offset + 30 + sum(struct.unpack("<HH", head[26:30]))
                if start + nbytes > len(mapped):
                    raise pickle.UnpicklingError(f"storage {key}: data/{key} runs past the end of the file")
                return np.frombuffer(mapped, np.uint8, nbytes, start)
            out = np.empty(nbytes, np.uint8)
            view, done = memoryview(out), 0
            with zf.open(info) as record:
                while done < nbytes:
                    n = record.readinto(view[done:])
                    if not n:
                        raise pickle.UnpicklingError(f"storage {key}: data/{key} is truncated")
                    done += n
            return out

        try:
            data = io.BytesIO(zf.read(f"{prefix}data.pkl"))
            return _unpickle(data, name, _Storages(read, byteorder, map_location), encoding)
        except (zipfile.BadZipFile, EOFError, OSError) as err:
            raise RuntimeError(f"{name}: truncated or corrupt archive ({err})") from None


def _load_legacy(opened, name: str, map_location, encoding: str):
    """PyTorch's format before 1.6 (``_use_new_zipfile_serialization=False``): pickles of the
    magic number, the protocol version and the system's info, then the object, then the list of
    storage keys, then each storage (its element count as int64, then its bytes). The storages
    come after the object and their sizes in bytes are known only from it, so the object is
    read twice: once (on the CPU, over zeros) to learn each storage's dtype, then over the
    storages' bytes."""
    header = [_unpickle(opened, name, None, encoding) for _ in range(3)]
    if header[0] != _LEGACY_MAGIC or header[1] != _LEGACY_PROTOCOL:
        raise RuntimeError(f"{name}: not a PyTorch file (bad magic number or protocol version)")
    info = header[2] if isinstance(header[2], dict) else {}
    if not info.get("little_endian", True):
        raise RuntimeError(f"{name}: a big-endian legacy file; numformer reads legacy files written little-endian")
    start = opened.tell()
    probe = _Storages(lambda key, nbytes: np.zeros(nbytes, np.uint8), "little", "cpu")
    _unpickle(opened, name, probe, encoding)
    keys = _unpickle(opened, name, None, encoding)
    if not isinstance(keys, list) or set(keys) != set(probe.dtypes):
        raise RuntimeError(f"{name}: the legacy file's storage list does not match its tensors")
    raw: dict[str, np.ndarray] = {}
    for key in keys:
        count = opened.read(8)
        itemsize = _itemsize(probe.dtypes[key])
        nbytes = probe.raw[key].size
        if len(count) != 8 or int.from_bytes(count, "little") * itemsize != nbytes:
            raise RuntimeError(f"{name}: storage {key} is truncated or of the wrong size")
        raw[key] = np.empty(nbytes, np.uint8)
        if opened.readinto(memoryview(raw[key])) != nbytes:
            raise RuntimeError(f"{name}: storage {key} is truncated")
    end = opened.tell()
    opened.seek(start)
    result = _unpickle(opened, name, _Storages(lambda key, nbytes: raw[key], "little", map_location), encoding)
    opened.seek(end)
    return result


def _source(f):
    """(name for errors, binary file object, path or None, whether we opened it)."""
    if isinstance(f, str | os.PathLike):
        path = os.fspath(f)
        if os.path.isdir(path):
            raise IsADirectoryError(f"numformer.load: {path} is a folder, not a file")
        if not os.path.exists(path):
            raise FileNotFoundError(f"numformer.load: no such file: {path}")
        return path, open(path, "rb"), path, True
    if all(hasattr(f, a) for a in ("read", "seek", "tell")):
        return str(getattr(f, "name", f"<{type(f).__name__}>")), f, None, False
    raise TypeError(f"numformer.load: f must be a path or a binary file object with read, seek and tell, got {f!r}")


def load(f, map_location=None, pickle_module=None, *, weights_only: bool | None = True, mmap=None, **pickle_load_args):
    """Load what ``torch.save`` or ``numformer.save`` wrote (``torch.load``), never running code
    from the file: tensors come back as numformer tensors, ``torch.nn.Parameter`` as
    ``numformer.nn.Parameter``, the rest as the module's docstring lists.

    Args:
        f: a path or a binary file object (``read``, ``seek``, ``tell``).
        map_location: where tensors go, as in ``torch.load``: None (where they were saved:
            ``"cpu"``, ``"cuda:0"``), a device name or device (``"cpu"``, ``numformer.device``,
            ``torch.device``), a dict from saved location to device, or a callable
            ``fn(storage, location)`` given each storage as a 1-D NumPy array and returning None
            (default placement) or a NumPy array to use. ``"cuda"`` needs numformer's GPU
            backend (CuPy).
        pickle_module: must be None: numformer reads with its own unpickler.
        weights_only: True (PyTorch's default since 2.6); None means True. False is refused.
        mmap: map the file's storages instead of reading them (copy-on-write; ``f`` must be
            a path).
        **pickle_load_args: ``encoding`` only (how Python 2 strings decode; ``"utf-8"``).

    Returns:
        The saved object.

    Raises:
        pickle.UnpicklingError: the file names a global that is not allowed (the message says
            how to allow it), or an opcode that could run code; a malformed pickle.
        ValueError: ``weights_only=False`` (numformer never runs code from a file: allow what
            it needs with ``numformer.serialization.add_safe_globals``), ``mmap`` without a path.
        RuntimeError: a truncated or corrupt file, not a PyTorch file, a TorchScript archive, a
            device that is not available (naming the file); ``pickle_module`` given.
        TypeError: bfloat16 tensors without ml_dtypes (naming them); unknown keyword arguments.
        FileNotFoundError: no such file.

    Source: PyTorch's ``torch/serialization.py`` (``load``, ``_load``, ``_legacy_load``) and
    ``torch/_weights_only_unpickler.py``, read for the format and the rules.
    """
    if weights_only is False:
        raise ValueError(
            "numformer.load(weights_only=False): numformer never runs code from a file, so it has no "
            "unrestricted mode. Load with weights_only=True and allow the classes and functions the file "
            "needs, if you trust them: numformer.serialization.add_safe_globals([...]) or "
            "`with numformer.serialization.safe_globals([...]):`"
        )
    if pickle_module is not None:
        raise RuntimeError("Can not safely load weights when explicit pickle_module is specified")
    unknown = set(pickle_load_args) - {"encoding"}
    if unknown:
        raise TypeError(f"numformer.load: unexpected keyword arguments {sorted(unknown)}; only encoding is used")
    encoding = pickle_load_args.get("encoding", "utf-8")
    if not (map_location is None or isinstance(map_location, dict) or callable(map_location)):
        _device_of(map_location)  # a name or a device, else TypeError
    name, opened, path, ours = _source(f)
    try:
        if mmap and path is None:
            raise ValueError("f must be a file path in order to use the mmap argument")
        start = opened.tell()
        head = opened.read(16)
        opened.seek(start)
        if head[:4] == b"PK\x03\x04":
            return _load_zip(opened, name, path, map_location, bool(mmap), encoding)
        if head[:4] == b"\x80\x02\x8a\x0a":  # protocol 2, then the magic number as a 10-byte LONG1
            if mmap:
                raise RuntimeError(f"{name}: mmap works only with the zip format, not the legacy one")
            return _load_legacy(opened, name, map_location, encoding)
        raise RuntimeError(
            f"{name} is not a file torch.save or numformer.save wrote "
            f"({'empty' if not head else 'neither a zip archive nor the legacy format'})"
        )
    finally:
        if ours:
            opened.close()
