"""File helpers shared by model folders and checkpoints: content hashes and atomic writes."""

from __future__ import annotations

import hashlib
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


def _default_mode() -> int:
    return 0o666 & ~_UMASK


def replace_atomic(tmp, path) -> None:
    """Flush ``tmp`` to disk and rename it to ``path`` in one step (never a half-written file).
    The file gets the mode a new file gets under the process's umask (some writers, such as
    safetensors', create their files 0600)."""
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.chmod(tmp, _default_mode())
    os.replace(tmp, Path(path))
