"""Model folders: the one format every saved numformer model uses.

A model folder holds ``config.json`` (the model's configuration, and whatever else its writer
keeps beside it), the weights in ``model.safetensors``, optionally ``tokenizer.json`` and other
files, and ``checksums.json``: each file's SHA-256, written last. Each file is written under a
temporary name and renamed into place, the manifest after all of them, so a crash never leaves
a half-written file under a real name and a damaged or swapped file is found when it loads.

Used by ``GPT.save``, ``BertModel.save_pretrained`` (Hugging Face's layout, with the manifest
beside it), the applications' models and the trainer's checkpoints.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from numformer.serialization.files import atomic_write, json_kind, read_json, sha256_file, write_json
from numformer.serialization.safetensors import load_arrays, save_arrays

MANIFEST = "checksums.json"
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
# the key, in a weights file's header, of its folder's config.json as it was saved: the weights
# vouch for their config, so a value edited by hand is named even in a folder without its
# manifest (the number of heads, which no tensor's shape shows, say)
VOUCHED = "numformer.config"


class ModelFolderError(ValueError):
    """A model folder that is missing a file, holds a damaged one, or does not fit its model."""


def write_model_folder(folder, config: dict | None, weights: dict | None, files: dict | None = None) -> Path:
    """Write a model folder.

    Args:
        folder: the folder (made if missing).
        config: written as ``config.json`` (None: no config file).
        weights: name -> array, written as ``model.safetensors`` (None: none).
        files: other files, name -> ``write(tmp_path)`` (a tokenizer's ``save``, say); a name
            may hold a subfolder (``co2/transformer.safetensors``).

    Returns:
        The folder.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    writers = {}
    if weights is not None:
        header = config_header(config) if config is not None else None
        writers[WEIGHTS] = lambda tmp: save_arrays(weights, tmp, metadata=header)
    if config is not None:
        writers[CONFIG] = lambda tmp: write_json(tmp, config)
    writers.update(files or {})
    digests = {}
    for name, write in writers.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        atomic_write(folder / name, write)
        digests[name] = sha256_file(folder / name)
    write_manifest(folder, digests)
    return folder


def config_header(config: dict) -> dict:
    """The metadata a weights file keeps of its folder's ``config`` (``VOUCHED``), with
    ``"format": "pt"``, which Hugging Face's loaders require of a header that has metadata."""
    return {"format": "pt", VOUCHED: json.dumps(config, sort_keys=True)}


def differences(saved, given, prefix: str = "") -> list[tuple[str, object, object]]:
    """``(dotted key, saved value, given value)`` for each value of two JSON objects that
    differs (``None`` for a missing one), nested objects compared key by key."""
    if isinstance(saved, dict) and isinstance(given, dict):
        found = []
        for key in sorted(set(saved) | set(given), key=str):
            found += differences(saved.get(key), given.get(key), f"{prefix}{key}.")
        return found
    return [] if saved == given else [(prefix.rstrip("."), saved, given)]


def check_vouched(folder, only=None) -> None:
    """``config.json`` of ``folder`` against the config each of its weights files was saved
    with (``VOUCHED`` in the file's header): a value edited by hand is named, also where the
    manifest is missing. Files written before numformer kept it, or whose header is damaged
    (``verify`` and the loader name those), are not compared.

    Args:
        folder: a model folder.
        only: compare just these weights files (names relative to the folder).

    Raises:
        ModelFolderError: naming config.json, the first key that differs, both values, and the
        weights file; or a config.json that is not a JSON object.
    """
    from numformer.serialization.safetensors import read_metadata

    folder = Path(folder)
    path = folder / CONFIG
    if not path.is_file():
        return  # verify and read_config name it
    config = read_config(folder)
    for weights in sorted(folder.rglob("*.safetensors")):
        name = weights.relative_to(folder).as_posix()
        if only is not None and name not in only:
            continue
        try:
            saved = json.loads((read_metadata(weights) or {})[VOUCHED])
        except (KeyError, ValueError):
            continue
        found = differences(saved, config)
        if found:
            key, theirs, mine = found[0]
            shown = "missing" if mine is None else repr(mine)[:60]
            more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
            raise ModelFolderError(f"{path}: {key} is {shown}, but {name} was saved with {repr(theirs)[:60]}{more}")


def write_manifest(folder, digests: dict) -> Path:
    """``checksums.json`` in ``folder``: ``{file name: SHA-256}``, atomically."""
    return write_json(Path(folder) / MANIFEST, digests)


def verify(folder, required: tuple = (), missing: str = "warn", only=None) -> None:
    """Check the files of ``folder`` against its ``checksums.json``.

    A folder written before numformer kept manifests loads with a warning naming the missing
    ``checksums.json`` (``missing="ignore"``: silently, for folders other programs write, such
    as Hugging Face's); a folder without ``config.json`` (missing, or no model folder at all)
    gets no warning: its reader names the missing file.

    Args:
        folder: a model folder.
        required: file names that must be present whatever the manifest says.
        missing: "warn" or "ignore" when there is no manifest.
        only: check just these files of the manifest (and ``config.json``): those a reader reads.

    Raises:
        FileNotFoundError: a required file is missing.
        ModelFolderError: the manifest is damaged, or a file it lists is missing or differs from
        its checksum (naming the file).
    """
    folder = Path(folder)
    for name in required:
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder / name} is missing: the model folder {folder} is incomplete")
    manifest = folder / MANIFEST
    if not manifest.exists():
        if missing == "ignore" or not (folder / CONFIG).is_file():
            return  # no config.json: not a model folder, which its reader says, not an unchecked one
        warnings.warn(
            f"{manifest} is missing: the folder's files are loaded unchecked (a folder saved before "
            "numformer kept checksums); save it again to add one",
            stacklevel=3,
        )
        return
    try:
        digests = read_json(manifest)
    except ValueError as err:
        raise ModelFolderError(str(err)) from None
    if not isinstance(digests, dict) or not all(isinstance(v, str) for v in digests.values()):
        raise ModelFolderError(f"{manifest}: expected an object of file checksums")
    for name, digest in digests.items():
        if only is not None and name not in (*only, CONFIG):
            continue
        parts = Path(str(name)).parts
        if not parts or Path(str(name)).is_absolute() or ".." in parts:
            raise ModelFolderError(f"{manifest}: {name!r} is not a file of the folder")
        path = folder.joinpath(*parts)
        if not path.is_file() or sha256_file(path) != digest:
            raise ModelFolderError(f"{path} is missing or damaged: it does not match its checksum in {MANIFEST}")


def read_config(folder) -> dict:
    """``config.json`` of a model folder, as a dict.

    Raises:
        FileNotFoundError: no config.json. ModelFolderError: not a JSON object."""
    path = Path(folder) / CONFIG
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing")
    try:
        data = read_json(path)
    except ValueError as err:
        raise ModelFolderError(str(err)) from None
    if not isinstance(data, dict):
        raise ModelFolderError(f"{path}: expected a JSON object, got {json_kind(data)}")
    return data


def read_weights(folder) -> dict:
    """The arrays of ``model.safetensors`` in a model folder.

    Raises:
        FileNotFoundError: no weights file. ModelFolderError: a damaged one."""
    try:
        return load_arrays(Path(folder) / WEIGHTS)
    except ValueError as err:
        raise ModelFolderError(str(err)) from None


def non_finite(arrays: dict) -> list[str]:
    """The names of the floating-point arrays in ``arrays`` holding a NaN or an infinity
    (damaged weights, which load without complaint and compute NaN)."""
    import numpy as np

    return [
        name
        for name, array in arrays.items()
        if np.asarray(array).dtype.kind in "fc" and not np.isfinite(np.asarray(array)).all()
    ]


def load_state(module, weights: dict, source) -> None:
    """Copy ``weights`` into ``module`` by name (every problem listed in one error).

    Raises:
        ModelFolderError: a missing, unexpected or mis-shaped tensor, naming ``source``."""
    try:
        module.load_state_dict(weights)
    except (ValueError, KeyError) as err:
        raise ModelFolderError(f"{source} does not fit the model: {err}") from None
