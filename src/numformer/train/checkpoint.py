"""Checkpoints: arrays in safetensors (never pickle), everything else in JSON beside them.

Layout under a checkpoint ``directory``::

    step-00000100/model.safetensors   weights (the model's state dict); a second save of the
                                      same step goes to step-00000100-1, never over a folder
    step-00000100/optim.safetensors   optimiser arrays (moments, momentum buffers)
    step-00000100/checksums.json      each array file's SHA-256 (a model folder's manifest)
    step-00000100/state.json          step, config, optimiser scalars and groups, scheduler,
                                      RNG state, extra (trainer) state
    latest.json                       {"checkpoint": "step-00000100"}
    best.json                         the same, for the best validation loss

A checkpoint is written into a temporary folder, flushed to disk and renamed into place; only
then is ``latest.json`` replaced (atomically) to point at it. A crash or Ctrl-C at any moment
leaves the previous checkpoint readable. Loading checks every file's SHA-256 first (a
checkpoint from before manifests loads with a warning).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np

from numformer import backend
from numformer.serialization import folders
from numformer.serialization.files import write_json
from numformer.serialization.safetensors import load_arrays, save_arrays

try:
    import safetensors  # noqa: F401 - checked here, used through numformer.serialization
except ImportError as err:  # pragma: no cover - the `train` extra is missing
    raise ImportError("numformer.train needs the 'train' extra: pip install 'numformer[train]'") from err


class CheckpointError(RuntimeError):
    """A checkpoint is missing, corrupted, or does not fit the model it is loaded into."""


def _split_optimizer_state(state_dict: dict) -> tuple[dict, dict]:
    """Optimiser state dict -> (arrays for safetensors, JSON-able rest)."""
    arrays, scalars = {}, {}
    for index, state in state_dict["state"].items():
        for key, value in state.items():
            if hasattr(value, "shape") and not isinstance(value, np.generic):  # an array, host or device
                arrays[f"{index}.{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    return arrays, {"scalars": scalars, "param_groups": state_dict["param_groups"]}


def _join_optimizer_state(arrays: dict, meta: dict) -> dict:
    state: dict[int, dict] = {}
    for key, value in arrays.items():
        index, name = key.split(".", 1)
        state.setdefault(int(index), {})[name] = value
    for index, values in meta["scalars"].items():
        state.setdefault(int(index), {}).update(values)
    return {"state": state, "param_groups": meta["param_groups"]}


def save_checkpoint(
    directory,
    model,
    optimizer=None,
    scheduler=None,
    step: int = 0,
    config: dict | None = None,
    extra: dict | None = None,
    tag: str = "latest",
    keep: int = 3,
) -> Path:
    """Write a checkpoint of ``model`` (and optimiser, scheduler, RNG) under ``directory``.

    ``tag`` names the pointer file updated last (``latest`` or ``best``); the ``keep`` newest
    step folders are kept, plus any that a pointer still names. Returns the checkpoint folder.

    Args:
        directory: the checkpoints folder (step folders and pointer files go in it).
        model: the module whose weights are saved.
        optimizer: its optimiser, whose state is saved (optional).
        scheduler: its learning-rate scheduler (optional).
        step: the step the checkpoint is of (the folder's name).
        config: the run's configuration, saved beside the weights.
        extra: more JSON-able state (the trainer's counters, the run id).
        tag: the pointer file written last (``"latest"`` or ``"best"``).
        keep: step folders to keep (3).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    remove_stale_saves(directory)
    name, n = f"step-{step:08d}", 1
    while (directory / name).exists():  # never overwrite: a pointer may name the old folder
        name, n = f"step-{step:08d}-{n}", n + 1
    final = directory / name
    tmp = Path(tempfile.mkdtemp(dir=directory, prefix=f".{name}."))
    try:
        state = {"step": step, "config": config or {}, "extra": extra or {}, "rng": backend.get_rng_state()}
        files = {}
        if optimizer is not None:
            arrays, state["optimizer"] = _split_optimizer_state(optimizer.state_dict())
            files["optim.safetensors"] = lambda path: save_arrays(arrays, path)
        if scheduler is not None:
            state["scheduler"] = scheduler.state_dict()
        folders.write_model_folder(tmp, None, model.state_dict(), files)  # the arrays and their manifest
        write_json(tmp / "state.json", state)  # last: a step folder without it is no checkpoint
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    write_json(directory / f"{tag}.json", {"checkpoint": name, "step": step})
    _prune(directory, keep)
    return final


def remove_stale_saves(directory) -> None:
    """Remove the temporary folders of saves that were killed (``.step-*``): never a valid
    checkpoint, as a save renames its folder into place only when it is complete."""
    for stale in Path(directory).glob(".step-*"):
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)


def point(directory, folder, tag: str = "latest", step: int | None = None) -> None:
    """Make ``<directory>/<tag>.json`` name ``folder`` (a step folder there), atomically."""
    directory = Path(directory)
    write_json(directory / f"{tag}.json", {"checkpoint": Path(folder).name, "step": step})


def _prune(directory: Path, keep: int) -> None:
    pinned = set()
    for pointer in directory.glob("*.json"):
        try:
            pinned.add(json.loads(pointer.read_text())["checkpoint"])
        except (ValueError, KeyError, TypeError):
            continue
    folders = sorted((p for p in directory.glob("step-*") if p.is_dir()), key=lambda p: p.stat().st_mtime_ns)
    for old in folders[:-keep] if keep > 0 else []:
        if old.name not in pinned:
            shutil.rmtree(old, ignore_errors=True)


def list_checkpoints(directory) -> list[Path]:
    """The step folders under ``directory`` that hold a ``state.json``, oldest step first.

    Args:
        directory: the checkpoints folder.
    """
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted((p for p in directory.glob("step-*") if (p / "state.json").is_file()), key=lambda p: p.name)


def _listing(directory: Path) -> str:
    found = [p.name for p in list_checkpoints(directory)]
    return f"checkpoints there: {', '.join(found)}" if found else "no checkpoint folders there"


def read_pointer(pointer: Path) -> Path:
    """The checkpoint folder a pointer file (``latest.json``, ``best.json``) names. The pointer
    must be a JSON object whose ``checkpoint`` names a step folder inside the pointer's own
    directory; anything else is a ``CheckpointError`` naming the file and listing the
    checkpoints that are there.

    Args:
        pointer: the pointer file.

    Raises:
        CheckpointError: as above.
    """
    pointer = Path(pointer)
    directory = pointer.parent
    try:
        data = json.loads(pointer.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as err:
        problem = "is empty" if pointer.exists() and not pointer.stat().st_size else f"is not valid JSON ({err})"
        raise CheckpointError(
            f"{pointer} {problem}; {_listing(directory)}; resume from one with --resume-from"
        ) from None
    name = data.get("checkpoint") if isinstance(data, dict) else None
    if not isinstance(name, str) or not name.startswith("step-") or Path(name).name != name:
        raise CheckpointError(
            f"{pointer} does not name a step folder of {directory} (got {data!r}); {_listing(directory)}; "
            "resume from one with --resume-from"
        )
    folder = directory / name
    if not (folder / "state.json").is_file():
        raise CheckpointError(f"{pointer} names {name}, which is not there; {_listing(directory)}")
    return folder


def resolve_checkpoint(path, tag: str = "latest") -> Path:
    """A step folder, or the one that ``<directory>/<tag>.json`` points to (``read_pointer``).

    Args:
        path: a step folder, or the checkpoints folder that holds the pointer.
        tag: which pointer (``"latest"`` or ``"best"``).

    Raises:
        CheckpointError: no such checkpoint (the ones there are listed).
    """
    path = Path(path)
    if (path / "state.json").exists():
        return path
    pointer = path / f"{tag}.json"
    if not pointer.exists():
        raise CheckpointError(
            f"no checkpoint found at {path}: expected a step folder or {pointer.name} ({_listing(path)}); "
            "train first or pass the right --out folder"
        )
    return read_pointer(pointer)


def load_checkpoint(
    path, model, optimizer=None, scheduler=None, tag: str = "latest", restore_rng: bool = True, world=None
) -> dict:
    """Restore ``model`` (and optimiser, scheduler, RNG) from a checkpoint; return its state.

    Args:
        path: a step folder, or a checkpoint directory whose ``<tag>.json`` names one.
        model, optimizer, scheduler: what to restore (the last two optional).
        tag: the pointer to follow when ``path`` is a directory.
        restore_rng: also restore numformer's random generator.
        world: a ``numformer.distributed.World`` of several ranks: rank 0 alone reads the files
            and sends what it read to the others, which need not see them (the run folder on
            rank 0's machine only); every rank restores the same state.

    Returns:
        The checkpoint's ``state.json`` (``step``, ``config``, ``extra``, ...).

    Raises:
        CheckpointError: a missing, truncated or corrupted checkpoint, or one of another
        architecture (every mismatched key listed); the model is left unchanged then. Under a
        ``world``, on every rank.
    """
    if world is not None and world.size > 1:
        arrays: dict = {}

        def read() -> dict:
            state, arrays["weights"], arrays["optim"] = _read_checkpoint(path, tag)
            return state

        state = world.on_main(read, errors=(CheckpointError,))
        weights = world.broadcast_arrays(arrays.get("weights"))
        optim_arrays = world.broadcast_arrays(arrays.get("optim"))
    else:
        state, weights, optim_arrays = _read_checkpoint(path, tag)
    folder = state.pop("folder")
    try:
        model.load_state_dict(weights)
    except ValueError as err:
        raise CheckpointError(f"checkpoint {folder} does not match this model (another architecture?): {err}") from None
    if optimizer is not None and "optimizer" in state:
        optimizer.load_state_dict(_join_optimizer_state(optim_arrays, state["optimizer"]))
    if scheduler is not None and "scheduler" in state:
        scheduler.load_state_dict(state["scheduler"])
    if restore_rng:
        backend.set_rng_state(state["rng"])
    return state


def checkpoint_state(folder) -> dict:
    """A step folder's ``state.json`` (step, config, extra state...), without its arrays.

    Raises:
        CheckpointError: missing, not JSON, not a JSON object, or a step that is not an
        integer >= 0 or not the step its folder is named by."""
    folder = Path(folder)
    try:
        state = json.loads((folder / "state.json").read_text())
    except (OSError, ValueError) as err:
        raise CheckpointError(f"checkpoint {folder}: state.json is missing or corrupted ({err})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"checkpoint {folder}: state.json is not a JSON object")
    step = state.get("step")
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:  # state.json is outside the manifest
        raise CheckpointError(f"checkpoint {folder}: state.json's step must be an integer >= 0, got {json.dumps(step)}")
    named = re.fullmatch(r"step-(\d+)(-\d+)?", folder.name)
    if named and int(named.group(1)) != step:  # an edit would resume from another step, rewriting metrics
        raise CheckpointError(
            f"checkpoint {folder}: state.json says step {step}, but the folder was saved at step "
            f"{int(named.group(1))}; resume from another checkpoint with --resume-from"
        )
    return state


def _read_checkpoint(path, tag: str) -> tuple[dict, dict, dict]:
    """(state with its ``folder``, weights, optimiser arrays) of a checkpoint, checksums checked."""
    folder = resolve_checkpoint(path, tag)
    state = checkpoint_state(folder)
    try:
        folders.verify(folder)
    except ValueError as err:
        raise CheckpointError(f"checkpoint {folder}: {err} (checksum mismatch); load an earlier checkpoint") from None
    try:
        weights = load_arrays(folder / "model.safetensors")
        optim_arrays = load_arrays(folder / "optim.safetensors") if "optimizer" in state else {}
    except (ValueError, OSError) as err:
        raise CheckpointError(f"checkpoint {folder}: cannot read tensors ({err})") from None
    state["folder"] = str(folder)
    return state, weights, optim_arrays
