"""One typed-config loader for every configuration dataclass numformer saves and reads.

A config is a dataclass whose fields are annotated ``int``, ``float``, ``bool``, ``str``,
``list``, another config, or any of them ``| None``. ``Config.from_dict`` builds one from a
mapping (a ``config.json``, a TOML table, a run's settings) with one rule set:

- a value must be of its field's type: ``true`` is not an int, ``"16"`` is not an int, ``1`` is
  a float (and becomes ``1.0``), ``null`` only where the annotation admits ``None``;
- a key that is no field is an error (``unknown_keys = "ignore"`` on the class, for files other
  programs write, such as Hugging Face's ``config.json``);
- the dataclass's own ``__post_init__`` then checks the values' ranges.

Every error is a ``ValueError`` naming the source (a file, "the command line") and the field.
"""

from __future__ import annotations

import dataclasses
import numbers
import types
import typing


def _is_int(value) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


_CHECKS = {
    int: (_is_int, "an integer"),
    float: (_is_real, "a number"),
    bool: (lambda v: isinstance(v, bool), "true or false"),
    str: (lambda v: isinstance(v, str), "a string"),
    list: (lambda v: isinstance(v, (list, tuple)), "a list"),
    tuple: (lambda v: isinstance(v, (list, tuple)), "a list"),
}


def _options(hint) -> tuple[list, bool]:
    """The types a hint admits, and whether it admits None (``int | None``, ``Optional[int]``)."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        return [a for a in args if a is not type(None)], type(None) in args
    return [typing.get_origin(hint) or hint], False


def describe(hint) -> str:
    """A field's type in words: ``int | None`` -> "an integer or null"."""
    kinds, nullable = _options(hint)
    words = [_CHECKS[k][1] if k in _CHECKS else f"a {getattr(k, '__name__', k)} object" for k in kinds]
    return " or ".join(words + (["null"] if nullable else []))


def check_value(name: str, value, hint, source: str):
    """``value`` for a field annotated ``hint``: as it is, an int made a float for a float
    field, or a mapping made the nested config it describes.

    Raises:
        ValueError: a value of another type, naming ``source`` and ``name``."""
    kinds, nullable = _options(hint)
    if value is None and nullable:
        return None
    for kind in kinds:
        if dataclasses.is_dataclass(kind) and isinstance(value, dict):
            return from_dict(kind, value, f"{source}: {name}")
        if dataclasses.is_dataclass(kind) and isinstance(value, kind):
            return value
        check = _CHECKS.get(kind)
        if check is not None and check[0](value):
            return float(value) if kind is float else list(value) if kind is list else value
    raise ValueError(f"{source}: {name} must be {describe(hint)}, got {type(value).__name__} {value!r}")


def field_types(cls) -> dict:
    """``{field name: annotation}`` of a config dataclass, annotations resolved."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init}


def check_fields(config) -> None:
    """Check every field of a config dataclass against its annotation, in place: an int in a
    float field becomes a float, a mapping in a nested config's field becomes that config.

    Raises:
        ValueError: a value of another type, naming the class and the field."""
    name = type(config).__name__
    for field, hint in field_types(type(config)).items():
        value = getattr(config, field)
        checked = check_value(field, value, hint, name)
        if checked is not value:
            object.__setattr__(config, field, checked)


def from_dict(cls, data, source: str | None = None, unknown_keys: str | None = None):
    """``cls(**data)``: a config dataclass from a mapping, every value checked against its
    field's annotation (``check_fields``) and range (the class's ``__post_init__``).

    Args:
        cls: a config dataclass.
        data: the mapping read from a file or given on the command line.
        source: what the errors name (a file's path); default: the class's name.
        unknown_keys: "error" or "ignore" for keys that are no field; default: the class's
            ``unknown_keys`` attribute, else "error".

    Returns:
        An instance of ``cls``.

    Raises:
        ValueError: ``data`` is not a mapping, holds an unknown key, a value of the wrong type,
        or one ``cls`` refuses (each naming ``source`` and the field).
    """
    source = source or cls.__name__
    if not isinstance(data, dict):
        raise ValueError(f"{source}: expected an object of {cls.__name__} fields, got {type(data).__name__}")
    types_ = field_types(cls)
    policy = unknown_keys or getattr(cls, "unknown_keys", "error")
    unknown = sorted(set(data) - set(types_))
    if unknown and policy == "error":
        raise ValueError(f"{source}: unknown field(s) {unknown}; known: {sorted(types_)}")
    kept = {name: check_value(name, value, types_[name], source) for name, value in data.items() if name in types_}
    try:
        return cls(**kept)
    except (TypeError, ValueError, ArithmeticError) as err:
        raise ValueError(f"{source}: {err}") from None


class Config:
    """Base of numformer's configuration dataclasses: every field's type is checked when one
    is made (``check_fields``, in ``__post_init__``: a subclass's own ``__post_init__`` calls
    ``super().__post_init__()`` first, then checks ranges), ``from_dict`` reads one from a
    mapping with the one rule set above, ``to_dict`` gives plain JSON values. Set
    ``unknown_keys = "ignore"`` where the file is another program's."""

    unknown_keys: typing.ClassVar[str] = "error"

    def __post_init__(self):
        check_fields(self)

    @classmethod
    def from_dict(cls, data, source: str | None = None):
        """A config from a mapping (a parsed ``config.json``): see ``from_dict`` in this module.

        Raises:
            ValueError: an unknown key, a value of the wrong type or out of range, naming
            ``source`` and the field."""
        return from_dict(cls, data, source)

    def to_dict(self) -> dict:
        """The fields as a dict of plain JSON values (nested configs as dicts)."""
        return dataclasses.asdict(self)
