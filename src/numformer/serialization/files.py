"""Files written whole or not at all, JSON read with errors that name the file, and checksums."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path


def sha256_file(path) -> str:
    """The SHA-256 of a file's bytes, as hex (read in 1 MiB blocks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once, at import: umask(0) for a moment is not thread-safe


def atomic_write(path, write) -> Path:
    """Write a file whole or not at all: ``write(tmp)`` fills a temporary file beside ``path``,
    which is flushed to disk (fsync) and renamed over ``path`` in one step. The file gets the
    mode a new file gets under the process's umask (some writers, such as safetensors', create
    theirs 0600). On any error the temporary file is removed and ``path`` is as it was.

    Args:
        path: the file to write.
        write: ``write(tmp: Path)``, which creates the file ``tmp``.

    Returns:
        ``path`` as a ``Path``.

    Raises:
        FileNotFoundError: ``path``'s folder does not exist. IsADirectoryError: ``path`` is a folder.
    """
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"no such folder for {path}: {path.parent}")
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not a file name")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def write_text(path, text: str) -> Path:
    """``text`` (UTF-8) at ``path``, atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path, data) -> Path:
    """``data`` as indented JSON at ``path``, atomically (its folder is made if missing)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_text(path, json.dumps(data, indent=1) + "\n")


def read_json(path):
    """The JSON value in the file ``path``.

    Raises:
        FileNotFoundError: no such file. ValueError: a folder, not UTF-8, or not valid JSON
        (naming the file)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder, not a JSON file")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err})") from None
