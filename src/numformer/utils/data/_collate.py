"""``default_collate`` and ``default_convert``: PyTorch's rules for turning samples into
batches, producing numformer tensors.

The rules, by the type of the batch's first sample (as PyTorch's ``torch.utils.data._utils.collate``):

- a tensor: ``stack`` (a new first dimension; in the graph, as ``torch.stack``);
- a NumPy array: made a tensor (its dtype kept), then stacked; arrays of strings or objects are
  refused;
- a NumPy scalar: one tensor of the batch's values (its dtype); a Python float: a float64
  tensor; an int: an int64 tensor (bools: a bool tensor); strings and bytes: the list as it is;
- a mapping: the same kind of mapping, collated key by key; a namedtuple: the same namedtuple,
  field by field; any other sequence: collated position by position into a list (a tuple gives
  a list, as in PyTorch) or, for a mutable sequence, a copy of its type.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, MutableMapping, MutableSequence, Sequence

import numpy as np

from numformer.creation import as_tensor, tensor
from numformer.tensor import Tensor, stack

_ERROR = "default_collate: batch must contain tensors, numpy arrays, numbers, dicts or lists; found {}"


def _strings_or_objects(array: np.ndarray) -> bool:
    return array.dtype.kind in "SUO"


def _is_namedtuple(value) -> bool:
    return isinstance(value, tuple) and hasattr(value, "_fields")


def _mapping_like(template, values: dict):
    """``values`` in a mapping of ``template``'s kind (a copy of it, when mutable), else a dict."""
    try:
        if isinstance(template, MutableMapping):
            clone = copy.copy(template)
            clone.update(values)
            return clone
        return type(template)(values)
    except TypeError:
        return values


def _sequence_like(template, values: list):
    """``values`` in a sequence of ``template``'s kind (a copy of it, when mutable), else a list."""
    try:
        if isinstance(template, MutableSequence):
            clone = copy.copy(template)
            for i, value in enumerate(values):
                clone[i] = value
            return clone
        return type(template)(values)
    except TypeError:
        return values


def default_collate(batch):
    """Collate a list of samples into a batch by PyTorch's rules (the module's docstring).

    Args:
        batch: a non-empty list of samples of one structure.

    Returns:
        The batch: tensors with a new first dimension ``(B, *)`` in the samples' structure.

    Shape: samples of shape ``(*)`` give ``(B, *)``; numbers give ``(B,)``.

    Raises:
        TypeError: a sample of a type it cannot batch (or an array of strings or objects).
        RuntimeError: sequences of different lengths, or tensors of different shapes.
    """
    elem = batch[0]
    if isinstance(elem, Tensor):
        return stack(list(batch))
    if isinstance(elem, np.ndarray):
        if _strings_or_objects(elem):
            raise TypeError(_ERROR.format(elem.dtype))
        return default_collate([as_tensor(b) for b in batch])
    if isinstance(elem, (np.bool_, np.number, np.object_)):
        return as_tensor(np.asarray(batch))
    if isinstance(elem, float):
        return tensor(batch, dtype=np.float64)
    if isinstance(elem, int):
        return tensor(batch)
    if isinstance(elem, (str, bytes)):
        return batch
    if isinstance(elem, Mapping):
        return _mapping_like(elem, {key: default_collate([sample[key] for sample in batch]) for key in elem})
    if _is_namedtuple(elem):
        return type(elem)(*(default_collate(list(fields)) for fields in zip(*batch)))
    if isinstance(elem, Sequence):
        if any(len(sample) != len(elem) for sample in batch):
            raise RuntimeError("each element in list of batch should be of equal size")
        columns = [default_collate(list(fields)) for fields in zip(*batch)]
        return columns if isinstance(elem, tuple) else _sequence_like(elem, columns)
    raise TypeError(_ERROR.format(type(elem)))


def default_convert(data):
    """Make the NumPy arrays and scalars in ``data`` tensors, keeping its structure (PyTorch's
    ``default_convert``: the ``DataLoader``'s collate function when ``batch_size=None``).

    Tensors, strings, arrays of strings or objects and anything unknown pass unchanged; a tuple
    becomes a list (as in PyTorch).

    Args:
        data: a sample: arrays, numbers, tensors, or lists, tuples and dicts of them.

    Returns:
        The same structure with arrays and NumPy scalars as tensors.
    """
    if isinstance(data, Tensor):
        return data
    if type(data).__module__ == "numpy" and not isinstance(data, (np.str_, np.bytes_)):
        if isinstance(data, np.ndarray) and _strings_or_objects(data):
            return data
        return as_tensor(data)
    if isinstance(data, Mapping):
        return _mapping_like(data, {key: default_convert(data[key]) for key in data})
    if _is_namedtuple(data):
        return type(data)(*(default_convert(d) for d in data))
    if isinstance(data, tuple):
        return [default_convert(d) for d in data]
    if isinstance(data, Sequence) and not isinstance(data, (str, bytes)):
        return _sequence_like(data, [default_convert(d) for d in data])
    return data
