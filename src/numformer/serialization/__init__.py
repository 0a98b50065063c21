"""What numformer saves, in one place: atomic file writes, typed configs, arrays in
safetensors files, model folders with their checksum manifest, run folders, and PyTorch's
checkpoint files.

- ``files``: ``atomic_write``, ``write_json``, ``read_json``, ``sha256_file``: every file
  numformer writes goes through ``atomic_write`` (a temporary name, flushed, renamed into
  place), so a crash never leaves a half-written file under a real name.
- ``safetensors``: arrays to and from ``.safetensors`` files (never pickle).
- ``pickled``: ``save``/``load`` (``numformer.save``/``numformer.load``), PyTorch's
  ``torch.save`` format, loaded without running code from the file; the globals a file may
  name beyond tensors and containers are allowed with ``add_safe_globals``/``safe_globals``
  (``get_safe_globals``, ``clear_safe_globals``), as in ``torch.serialization``.

Lower layers import nothing of numformer; everything that saves imports this unit.
"""

from numformer.serialization.pickled import (
    add_safe_globals,
    clear_safe_globals,
    get_safe_globals,
    safe_globals,
)

__all__ = ["add_safe_globals", "clear_safe_globals", "get_safe_globals", "safe_globals"]
