"""Files written whole or not at all, JSON read with errors that name the file, and checksums."""

from __future__ import annotations

import hashlib
import json
import os
import stat
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


def json_kind(value) -> str:
    """What a JSON value is, in JSON's words (``"an array"``, ``"a string"``...), for messages
    that name the kind a file holds against the one expected."""
    if isinstance(value, bool):
        return "true or false"
    kinds = ((dict, "an object"), (list, "an array"), (str, "a string"), ((int, float), "a number"))
    return next((name for kind, name in kinds if isinstance(value, kind)), "null")


def available_memory() -> int | None:
    """Bytes of memory this machine can still give a process (``MemAvailable`` of
    ``/proc/meminfo``), or None where that is not known (not Linux)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def check_memory(need: int, what: str) -> None:
    """Refuse work that needs more memory than this machine has available, before it starts
    (Linux hands out memory it does not have and then kills the process, with no message).

    Args:
        need: the bytes the work needs (an estimate).
        what: what needs them, for the message ("the embeddings of 1,000,000 lines").

    Raises:
        ValueError: ``need`` is more than ``available_memory()``, with both figures."""
    available = available_memory()
    if available is not None and need > available:
        raise ValueError(
            f"{what} need about {need / 2**30:,.1f} GiB of memory, more than the {available / 2**30:,.1f} GiB "
            "this machine has available"
        )


def is_regular_file(path) -> bool:
    """Whether ``path`` is a regular file (not a folder, pipe, socket or device)."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False


PIPE_WAIT = 10.0  # seconds a named pipe (FIFO) is given to have a writer before read_bytes gives up


def _open_for_reading(path: Path):
    """``open(path, "rb")``; a named pipe (FIFO) that no process writes to is an error after
    ``PIPE_WAIT`` seconds, not a wait for ever (opening one blocks until a writer opens it)."""
    try:
        is_fifo = stat.S_ISFIFO(os.stat(path).st_mode)
    except OSError:
        is_fifo = False
    if not is_fifo:
        return open(path, "rb")
    import threading

    opened: list = []
    failed: list = []

    def attempt():
        try:
            opened.append(open(path, "rb"))
        except OSError as err:
            failed.append(err)

    opener = threading.Thread(target=attempt, daemon=True)  # left blocked if no writer ever comes
    opener.start()
    opener.join(PIPE_WAIT)
    if failed:
        raise failed[0]
    if not opened:
        raise ValueError(
            f"{path} is a named pipe (FIFO) that no process writes to (waited {PIPE_WAIT:g} s): "
            f"start the writer first (cmd > {path} &), or give a regular file"
        )
    return opened[0]


def read_bytes(path, limit: int | None = None) -> bytes:
    """A file's bytes, read once: also a pipe or a process substitution (``<(cmd)``), which
    cannot be read twice; a named pipe with no writer is an error, not a wait for ever. Refuses
    more than ``limit`` bytes (default: half the memory this machine has available) rather
    than fail later with an unexplained MemoryError.

    Raises:
        FileNotFoundError: no such file. IsADirectoryError: a folder. ValueError: larger than
        ``limit`` (naming the file and both sizes), a named pipe that nothing writes to, or an
        empty file name (which ``Path`` would read as the current folder)."""
    if isinstance(path, str) and not path.strip():
        raise ValueError("the file name is empty")
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder, not a text file")
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    if limit is None:
        available = available_memory()
        limit = available // 2 if available else 1 << 62
    if is_regular_file(path) and path.stat().st_size > limit:
        raise ValueError(
            f"{path} holds {path.stat().st_size:,} bytes, more than the {limit:,} this machine can read in"
        )
    chunks, size = [], 0
    with _open_for_reading(path) as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            size += len(chunk)
            if size > limit:
                raise ValueError(f"{path} holds more than the {limit:,} bytes this machine can read in")
            chunks.append(chunk)
    return b"".join(chunks)
